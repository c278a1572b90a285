"""The public API as a client sees it, on SQLite and PostgreSQL, over real HTTP (uvicorn)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from consultas.models import Channel, Consulta, Outbox
from routing.answer import send_answer
from tests.web_support import AFTER_HOURS_BEFORE_FIESTAS, VALID_RUC, WRONG_RUC, serving, submission, web_app
from web.context import STATUS_LOOKUPS_PER_HOUR

pytestmark = pytest.mark.slow

CREATED_KEYS = {"number", "status", "presented", "due", "status_url"}
STATUS_KEYS = {"number", "status", "presented", "due", "organo", "answered_on", "answer"}


def test_temas_lists_the_red_organos_and_the_administrative_topic(db_url: str, tmp_path: Path) -> None:
    with web_app(db_url, tmp_path) as (app, _, _), serving(app) as base:
        temas = httpx.get(f"{base}/api/v1/temas").json()
    codes = [t["code"] for t in temas]
    assert {"DGPMI", "DGTP", "ADMINISTRATIVA"} <= set(codes)
    assert all(set(t) == {"code", "name"} and t["name"] for t in temas)


def test_a_valid_submission_is_admitted_as_formulario_and_the_chosen_tema_wins(
    db_url: str, tmp_path: Path
) -> None:
    # The text speaks of the Treasury's accounts, the citizen chose DGPMI: the choice wins.
    question = "¿Cómo se abre una cuenta en la Cuenta Única del Tesoro para una tesorería municipal?"
    with web_app(db_url, tmp_path, at=AFTER_HOURS_BEFORE_FIESTAS) as (app, ctx, _), serving(app) as base:
        response = httpx.post(f"{base}/api/v1/consultas", json=submission(tema="DGPMI", question=question))
        assert response.status_code == 201, response.text
        body = response.json()
        with ctx.sessions() as session:
            consulta = session.scalars(select(Consulta)).one()
            confirmations = session.scalar(
                select(func.count(Outbox.id)).where(Outbox.template == "consulta_recibida")
            )
            confirmation = session.scalars(select(Outbox).where(Outbox.template == "consulta_recibida")).one()
            mail_text = confirmation.message.body_text or ""
    assert set(body) == CREATED_KEYS
    assert body["number"] == consulta.number == "CONS-2024-000001"
    # Friday 26 July 2024 17:00: presented Tuesday 30 July (weekend + two holidays); due 10 working
    # days later (6 August is a holiday too).
    assert (body["presented"], body["due"]) == ("2024-07-30", "2024-08-14")
    assert body["status"] == "asignada"
    assert body["status_url"] == "http://127.0.0.1:8080/estado?numero=CONS-2024-000001"
    assert consulta.channel == Channel.FORMULARIO and consulta.organo_code == "DGPMI"
    assert consulta.full_name == "Rosa María Quispe Huamán"
    assert confirmations == 1
    assert body["status_url"] in mail_text
    assert "Día de la Gran Parada Militar" in mail_text  # the skipped days, explained


def test_422_names_missing_and_invalid_keys_with_a_spanish_message_each(db_url: str, tmp_path: Path) -> None:
    bad = submission(
        represents_entity=True, entity_ruc=WRONG_RUC, document_number="1234567", email="rosa@", names=None,
        tema="NO-EXISTE", phone=None,
    )  # fmt: skip
    with web_app(db_url, tmp_path) as (app, ctx, _), serving(app) as base:
        response = httpx.post(f"{base}/api/v1/consultas", json=bad)
        not_json = httpx.post(
            f"{base}/api/v1/consultas", content=b"[1, 2]", headers={"content-type": "application/json"}
        )
        # A form post from another site (no preflight) is not JSON: refused before anything is read.
        as_text = httpx.post(
            f"{base}/api/v1/consultas", content=b'{"names": "x"}', headers={"content-type": "text/plain"}
        )
        with ctx.sessions() as session:
            stored = session.scalar(select(func.count(Consulta.id)))
    assert response.status_code == 422
    problems = response.json()
    assert set(problems) == {"missing", "invalid", "errors"}
    assert problems["missing"] == ["names", "phone"]
    assert problems["invalid"] == ["document_number", "email", "entity_ruc", "tema"]
    assert set(problems["errors"]) == {*problems["missing"], *problems["invalid"]}
    assert problems["errors"]["document_number"] == "El DNI debe tener 8 dígitos."
    assert "RUC" in problems["errors"]["entity_ruc"]
    assert not_json.status_code == 422 and not_json.json()["invalid"] == ["body"]
    assert as_text.status_code == 415
    assert stored == 0


def test_an_entity_consulta_with_a_valid_ruc_is_admitted(db_url: str, tmp_path: Path) -> None:
    body = submission(
        represents_entity=True, entity_ruc=VALID_RUC, entity_name="Ministerio de Economía y Finanzas"
    )
    with web_app(db_url, tmp_path) as (app, ctx, _), serving(app) as base:
        response = httpx.post(f"{base}/api/v1/consultas", json=body)
        with ctx.sessions() as session:
            consulta = session.scalars(select(Consulta)).one()
    assert response.status_code == 201, response.text
    assert (consulta.entity_ruc, consulta.represents_entity) == (VALID_RUC, True)


def test_an_idempotency_key_makes_repeats_and_concurrent_repeats_one_consulta(
    db_url: str, tmp_path: Path
) -> None:
    with web_app(db_url, tmp_path) as (app, ctx, _), serving(app) as base:

        def post(key: str) -> httpx.Response:
            return httpx.post(f"{base}/api/v1/consultas", json=submission(), headers={"Idempotency-Key": key})

        first, again = post("pedido-1"), post("pedido-1")
        with ThreadPoolExecutor(8) as pool:
            racing = list(pool.map(post, ["pedido-2"] * 8))
        without_key = httpx.post(f"{base}/api/v1/consultas", json=submission())
        with ctx.sessions() as session:
            numbers = set(session.scalars(select(Consulta.number)))
            confirmations = session.scalar(
                select(func.count(Outbox.id)).where(Outbox.template == "consulta_recibida")
            )
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert {r.json()["number"] for r in racing} == {racing[0].json()["number"]}
    assert racing[0].json()["number"] != first.json()["number"]
    assert without_key.json()["number"] not in {first.json()["number"], racing[0].json()["number"]}
    assert len(numbers) == 3 and confirmations == 3


def test_the_status_lookup_answers_the_right_document_and_one_404_for_the_rest(
    db_url: str, tmp_path: Path
) -> None:
    with web_app(db_url, tmp_path) as (app, _, _), serving(app) as base:
        number = httpx.post(f"{base}/api/v1/consultas", json=submission()).json()["number"]
        found = httpx.get(f"{base}/api/v1/consultas/{number}", params={"document_number": "45.678.912"})
        wrong_document = httpx.get(
            f"{base}/api/v1/consultas/{number}", params={"document_number": "45678913"}
        )
        unknown = httpx.get(
            f"{base}/api/v1/consultas/CONS-2025-999999", params={"document_number": "45678912"}
        )
        no_document = httpx.get(f"{base}/api/v1/consultas/{number}")
    assert found.status_code == 200
    status = found.json()
    assert set(status) == STATUS_KEYS
    assert status["organo"] == "Dirección General de Programación Multianual de Inversiones"
    assert (status["answered_on"], status["answer"]) == (None, None)
    assert wrong_document.status_code == unknown.status_code == no_document.status_code == 404
    assert wrong_document.content == unknown.content == no_document.content


def test_too_many_submissions_from_one_address_or_for_one_email_get_429(db_url: str, tmp_path: Path) -> None:
    with web_app(db_url, tmp_path, web_rate_limit=2) as (app, _, _), serving(app) as base:
        url = f"{base}/api/v1/consultas"
        codes = [httpx.post(url, json=submission(email=f"c{i}@example.pe")).status_code for i in range(3)]
        limited = httpx.post(url, json=submission(email="otro@example.pe"))
    assert codes == [201, 201, 429]
    assert limited.status_code == 429
    assert 0 < int(limited.headers["Retry-After"]) <= 3600
    behind_proxy = web_app(db_url, tmp_path, web_rate_limit=2, red=False, trusted_proxies="127.0.0.1")
    with behind_proxy as (app, _, _), serving(app) as base:
        url = f"{base}/api/v1/consultas"

        def from_address(address: str, email: str) -> int:
            headers = {"X-Forwarded-For": address}
            return httpx.post(url, json=submission(email=email), headers=headers).status_code

        # Behind a trusted proxy each client address counts on its own; one email is limited across them.
        by_email = [from_address(f"198.51.100.{i}", "misma@example.pe") for i in range(3)]
    assert by_email == [201, 201, 429]


def test_x_forwarded_for_from_an_untrusted_peer_is_not_believed(db_url: str, tmp_path: Path) -> None:
    with web_app(db_url, tmp_path, web_rate_limit=1) as (app, _, _), serving(app) as base:
        url = f"{base}/api/v1/consultas"
        first = httpx.post(
            url, json=submission(email="a@example.pe"), headers={"X-Forwarded-For": "198.51.100.1"}
        )
        spoofed = httpx.post(
            url, json=submission(email="b@example.pe"), headers={"X-Forwarded-For": "198.51.100.2"}
        )
    assert (first.status_code, spoofed.status_code) == (201, 429)


def test_openapi_describes_the_three_operations_and_no_cdn_page(db_url: str, tmp_path: Path) -> None:
    with web_app(db_url, tmp_path, red=False) as (app, _, _), serving(app) as base:
        spec = httpx.get(f"{base}/api/v1/openapi.json").json()
        docs = httpx.get(f"{base}/api/v1/docs")
    assert {("/temas", "get"), ("/consultas", "post"), ("/consultas/{number}", "get")} <= {
        (path, method) for path, item in spec["paths"].items() for method in item
    }
    assert spec["servers"] == [{"url": "/api/v1"}]
    body_schema = spec["paths"]["/consultas"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(body_schema["properties"]) == set(submission())
    assert docs.status_code == 404


def test_every_response_carries_the_security_headers(db_url: str, tmp_path: Path) -> None:
    frame = "'self' https://www.mef.gob.pe"
    with web_app(db_url, tmp_path, red=False, web_frame_ancestors=frame) as (app, _, _), serving(app) as base:
        responses = [
            httpx.get(f"{base}{path}") for path in ("/", "/estado", "/api/v1/temas", "/static/style.css")
        ]
        too_big = httpx.post(
            f"{base}/api/v1/consultas",
            content=b"{" + b" " * 70_000 + b"}",
            headers={"content-type": "application/json"},
        )
    for response in responses:
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert f"frame-ancestors {frame}" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "x-frame-options" not in response.headers  # framing is allowed for the portal
    assert too_big.status_code == 413


def test_an_answered_consulta_shows_the_answer_date_and_text(db_url: str, tmp_path: Path) -> None:
    with web_app(db_url, tmp_path) as (app, ctx, clock), serving(app) as base:
        number = httpx.post(f"{base}/api/v1/consultas", json=submission()).json()["number"]
        clock.advance(timedelta(days=2))
        with ctx.sessions.begin() as session:
            consulta = session.scalars(select(Consulta).where(Consulta.number == number)).one()
            send_answer(
                session, consulta, body="Debe registrar el formato en el aplicativo del Banco.",
                attachments=(), answered_by="DGPMI", config=ctx.config, now=clock.now(),
            )  # fmt: skip
        status = httpx.get(f"{base}/api/v1/consultas/{number}", params={"document_number": "45678912"}).json()
    assert status["status"] == "respondida"
    assert status["answered_on"] == "2025-03-14"
    assert "Debe registrar el formato en el aplicativo del Banco." in status["answer"]
    assert status["organo"] == "Dirección General de Programación Multianual de Inversiones"


def test_status_lookups_are_rate_limited_per_address(db_url: str, tmp_path: Path) -> None:
    with web_app(db_url, tmp_path, red=False) as (app, _, _), serving(app) as base, httpx.Client() as client:
        url = f"{base}/api/v1/consultas/CONS-2025-000001"
        codes = [client.get(url, params={"document_number": f"4567{i:04d}"}).status_code for i in range(31)]
    assert codes == [404] * STATUS_LOOKUPS_PER_HOUR + [429]


def test_with_the_redis_broker_two_web_processes_share_the_limits(
    db_url: str, tmp_path: Path, redis_url: str
) -> None:
    one = web_app(db_url, tmp_path, web_rate_limit=1, broker_url=redis_url)
    other = web_app(db_url, tmp_path, web_rate_limit=1, broker_url=redis_url, red=False)
    with one as (app_a, _, _), other as (app_b, _, _), serving(app_a) as a, serving(app_b) as b:
        first = httpx.post(f"{a}/api/v1/consultas", json=submission(email="a@example.pe"))
        second = httpx.post(f"{b}/api/v1/consultas", json=submission(email="b@example.pe"))
    assert (first.status_code, second.status_code) == (201, 429)

"""The web's pure parts: a submission's checks, the entity search, tokens, addresses, rate limits."""

from __future__ import annotations

from pathlib import Path

from consultas.validators import MAX_QUESTION
from tests.web_support import VALID_RUC, WRONG_RUC, submission
from web.entities import EntityDirectory
from web.fields import check_submission
from web.ratelimit import RateLimiter, RedisRateLimiter
from web.security import check_token, client_address, issue_token, parse_networks

TEMAS = {"DGPMI": "Dirección General de Programación Multianual de Inversiones", "ADMINISTRATIVA": "Trámites"}


def test_a_valid_submission_gives_the_normalised_requisitos() -> None:
    checked = check_submission(submission(phone="987 654 321", document_number="45.678.912"), temas=TEMAS)
    assert checked.valid, checked.errors
    req = checked.requisitos()
    assert (req.full_name, req.document_number, req.phone) == (
        "Rosa María Quispe Huamán",
        "45678912",
        "+51987654321",
    )
    assert (req.represents_entity, req.entity_ruc) == (False, None)


def test_the_form_answers_si_no_and_an_entity_needs_its_ruc() -> None:
    checked = check_submission(submission(represents_entity="si"), temas=TEMAS)
    assert checked.missing == ["entity_ruc"]
    ignored = check_submission(submission(represents_entity="no", entity_ruc=WRONG_RUC), temas=TEMAS)
    assert ignored.valid  # a RUC given while not representing an entity is not checked nor kept
    assert ignored.requisitos().entity_ruc is None


def test_each_problem_is_named_once_in_form_order_with_the_shared_validators_message() -> None:
    checked = check_submission(
        submission(
            represents_entity=True, entity_ruc=WRONG_RUC, document_type="CE", document_number="12345",
            names="R0sa", question="ayuda", tema="XYZ", email=None,
        ),
        temas=TEMAS,
    )  # fmt: skip
    assert list(checked.errors) == ["document_number", "names", "email", "entity_ruc", "tema", "question"]
    assert checked.errors["document_number"] == "El carné de extranjería debe tener 9 dígitos."
    assert checked.errors["names"] == "Escriba solo letras (sin números ni símbolos)."
    assert checked.errors["entity_ruc"] == "El RUC no es válido: revise el número (dígito verificador)."
    assert checked.missing == ["email"]


def test_every_field_has_a_size_limit_and_must_be_text() -> None:
    checked = check_submission(
        submission(question="a " * MAX_QUESTION, names=["Rosa"], phone=987654321), temas=TEMAS
    )
    assert checked.invalid == ["names", "phone", "question"]
    assert "demasiado largo" in checked.errors["question"]
    assert checked.errors["names"] == "Escriba este dato como texto."


def test_the_entity_file_completes_the_other_half(tmp_path: Path) -> None:
    path = tmp_path / "entidades.csv"
    path.write_text(
        f"ruc,razon_social\n{VALID_RUC},Ministerio de Economía y Finanzas\n"
        "20100047218,Banco de Crédito del Perú\n20100130204,Banco Continental\n12345678901,RUC malo\n",
        encoding="utf-8",
    )
    entities = EntityDirectory.from_csv(path)
    assert len(entities) == 3
    by_ruc = check_submission(
        submission(represents_entity=True, entity_ruc=VALID_RUC), temas=TEMAS, entities=entities
    )
    assert by_ruc.requisitos().entity_name == "Ministerio de Economía y Finanzas"
    by_name = check_submission(
        submission(represents_entity=True, entity_name="ministerio de economia"),
        temas=TEMAS,
        entities=entities,
    )
    assert by_name.valid and by_name.requisitos().entity_ruc == VALID_RUC
    ambiguous = check_submission(
        submission(represents_entity=True, entity_name="Banco"), temas=TEMAS, entities=entities
    )
    assert ambiguous.invalid == ["entity_ruc"] and len(ambiguous.entity_matches) == 2


def test_a_form_token_is_for_one_browser_and_expires() -> None:
    key = b"k" * 32
    token = issue_token(key, "browser-a", now=1_000_000)
    form_id = check_token(key, token, "browser-a", now=1_000_100)
    assert form_id is not None and token.startswith(form_id)
    assert check_token(key, token, "browser-b", now=1_000_100) is None
    assert check_token(key, token, None, now=1_000_100) is None
    assert check_token(key, token, "browser-a", now=1_000_000 + 7 * 3600) is None
    assert check_token(b"x" * 32, token, "browser-a", now=1_000_100) is None
    tampered = token[:-1] + ("1" if token.endswith("0") else "0")
    assert check_token(key, tampered, "browser-a", now=1_000_100) is None


def test_x_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    proxies = parse_networks(["10.0.0.0/8", "192.0.2.1"])
    assert client_address("203.0.113.9", "198.51.100.7", proxies) == "203.0.113.9"
    assert client_address("10.1.1.1", "198.51.100.7", proxies) == "198.51.100.7"
    # The client may write anything to the left; the rightmost untrusted hop is the client.
    assert client_address("10.1.1.1", "6.6.6.6, 198.51.100.7, 192.0.2.1", proxies) == "198.51.100.7"
    assert client_address("10.1.1.1", "not-an-ip", proxies) == "10.1.1.1"
    assert client_address("10.1.1.1", None, proxies) == "10.1.1.1"


def test_the_rate_limit_counts_per_key_in_a_sliding_hour() -> None:
    now = [0.0]
    limiter = RateLimiter(2, 3600, now=lambda: now[0])
    assert [limiter.hit("a"), limiter.hit("a"), limiter.hit("b")] == [None, None, None]
    now[0] = 600
    assert limiter.hit("a") == 3000  # the first hit leaves the window at 3600
    now[0] = 3600.5
    assert limiter.hit("a") is None


def test_the_redis_rate_limit_is_shared_by_every_process_and_lets_through_when_redis_is_down(
    redis_url: str,
) -> None:
    import redis

    now = [1_000_000.0]
    clients = [redis.Redis.from_url(redis_url) for _ in range(2)]
    try:
        first, second = (RedisRateLimiter(c, "t:", 2, 3600, now=lambda: now[0]) for c in clients)
        assert [first.hit("a"), second.hit("a")] == [None, None]  # two processes, one count
        now[0] += 600
        assert second.hit("a") == 3000 and first.hit("a") == 3000
        assert first.hit("b") is None
        now[0] += 3001
        assert second.hit("a") is None
    finally:
        for client in clients:
            client.close()
    unreachable = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    assert RedisRateLimiter(unreachable, "t:", 1, 3600, now=lambda: now[0]).hit("a") is None

"""The form's protections over real HTTP: the one-time token, the cookie, the honeypot, the limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from consultas.models import Consulta
from tests.web_support import form_token, serving, web_app

pytestmark = pytest.mark.slow

FORM = {
    "represents_entity": "no",
    "document_type": "DNI",
    "document_number": "45678912",
    "names": "Rosa María",
    "paternal_surname": "Quispe",
    "maternal_surname": "",
    "email": "rosa.quispe@example.pe",
    "phone": "987654321",
    "tema": "DGPMI",
    "question": "¿Cómo registro el formato 12-B de una IOARR en el Banco de Inversiones?",
}


def _consultas(ctx: Any) -> int:
    with ctx.sessions() as session:
        return int(session.scalar(select(func.count(Consulta.id))) or 0)


def test_a_double_submit_of_one_form_shows_the_same_consulta(db_url: str, tmp_path: Path) -> None:
    with (
        web_app(db_url, tmp_path) as (app, ctx, _),
        serving(app) as base,
        httpx.Client(base_url=base) as browser,
    ):
        token = form_token(browser.get("/").text)
        first = browser.post("/", data={**FORM, "token": token})
        second = browser.post("/", data={**FORM, "token": token})
        another_form = browser.post("/", data={**FORM, "token": form_token(browser.get("/").text)})
        stored = _consultas(ctx)
    assert first.status_code == second.status_code == 200
    assert "Su consulta ha sido registrada" in first.text
    number = first.text.split("Número de consulta: <strong>")[1].split("<")[0]
    assert number in second.text and number not in another_form.text
    assert "ya había sido enviado" in second.text and "ya había sido enviado" not in first.text
    assert stored == 2


def test_a_token_without_its_cookie_or_a_filled_honeypot_registers_nothing(
    db_url: str, tmp_path: Path
) -> None:
    with web_app(db_url, tmp_path) as (app, ctx, _), serving(app) as base:
        with httpx.Client(base_url=base) as browser:
            token = form_token(browser.get("/").text)
            bot = browser.post("/", data={**FORM, "token": token, "sitio_web": "http://spam.example"})
        # Another site's page posting a token it fetched itself: the victim's browser has another cookie.
        cross_site = httpx.post(f"{base}/", data={**FORM, "token": token})
        stored = _consultas(ctx)
    assert bot.status_code == 400 and "No se pudo registrar" in bot.text
    assert cross_site.status_code == 400 and "caducó" in cross_site.text
    assert 'value="Rosa María"' in cross_site.text  # the input is kept for a new try
    assert stored == 0


def test_errors_are_shown_beside_the_fields_and_in_the_summary_with_the_input_kept(
    db_url: str, tmp_path: Path
) -> None:
    with (
        web_app(db_url, tmp_path) as (app, _, _),
        serving(app) as base,
        httpx.Client(base_url=base) as browser,
    ):
        token = form_token(browser.get("/").text)
        page = browser.post("/", data={**FORM, "token": token, "document_number": "123", "phone": ""})
    assert page.status_code == 422
    assert 'id="document_number-error"' in page.text and "El DNI debe tener 8 dígitos." in page.text
    assert 'aria-describedby="document_number-error" aria-invalid="true"' in page.text
    assert (
        '<a href="#phone">Celular/ Teléfono fijo: Escriba un número de celular o teléfono fijo.</a>'
        in page.text
    )
    assert 'value="123"' in page.text and "Banco de Inversiones?</textarea>" in page.text


def test_too_many_submissions_get_a_spanish_429_page_with_retry_after(db_url: str, tmp_path: Path) -> None:
    limited = web_app(db_url, tmp_path, web_rate_limit=1)
    with limited as (app, _, _), serving(app) as base, httpx.Client(base_url=base) as browser:
        codes = []
        for _ in range(2):
            token = form_token(browser.get("/").text)
            last = browser.post("/", data={**FORM, "token": token, "document_number": "1"})
            codes.append(last.status_code)
    assert codes == [422, 429]
    assert "Demasiadas solicitudes" in last.text and int(last.headers["Retry-After"]) > 0

"""A citizen in a real browser (Debian chromium + Playwright), keyboard only, against `consultas serve`.

The service runs as a newcomer starts it (``consultas db upgrade`` then ``consultas serve``) with
the example Red and the test SMTP server; axe-core checks every page for WCAG 2.1 A/AA.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers._net import free_port, wait_for_port
from tests.servers.smtp_sink import SmtpSink
from tests.web_support import EXAMPLE_RED, VALID_RUC, WRONG_RUC

pytestmark = pytest.mark.slow

WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
DNI = "45678912"
NUMBER_RE = re.compile(r"CONS-\d{4}-\d{6}")


@pytest.fixture
def served_web(tmp_path: Path, smtp_sink: SmtpSink) -> Iterator[str]:
    """`consultas serve` with its web app on a free port, mail to the SMTP sink; yields the base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSULTAS_")}
    env.update(
        PYTHONPATH=str(Path(__file__).resolve().parents[1]),
        CONSULTAS_VAR_DIR=str(tmp_path / "var"),
        CONSULTAS_RED_FILE=str(EXAMPLE_RED),
        CONSULTAS_WEB_PORT=str(port),
        CONSULTAS_PUBLIC_URL=base,
        CONSULTAS_SMTP_HOST=smtp_sink.host,
        CONSULTAS_SMTP_PORT=str(smtp_sink.port),
        CONSULTAS_SMTP_STARTTLS="false",
    )
    command = [sys.executable, "-m", "app.cli"]
    upgrade = subprocess.run(
        [*command, "db", "upgrade"], env=env, capture_output=True, text=True, check=False
    )
    assert upgrade.returncode == 0, upgrade.stderr
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [*command, "serve"], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for_port("127.0.0.1", port, timeout_s=60)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(30)
        log.close()
        output = (tmp_path / "serve.log").read_text(errors="replace")
        assert returncode == 0, output[-3000:]
        assert DNI not in output  # no personal data in the logs


def axe_violations(page: Any) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    result = Axe().run(page, options={"runOnly": {"type": "tag", "values": WCAG}})
    return [f"{v['id']}: {v['help']}" for v in result.response["violations"]]


def tab_to(page: Any, element_id: str, *, limit: int = 60) -> None:
    """Press Tab (only) until the element with ``element_id`` has the focus."""
    for _ in range(limit):
        if page.evaluate("document.activeElement && document.activeElement.id") == element_id:
            return
        page.keyboard.press("Tab")
    pytest.fail(f"Tab never reached #{element_id}")


def choose(page: Any, element_id: str, value: str) -> None:
    """Focus a <select> with Tab and move through its options with the arrow key until ``value``."""
    tab_to(page, element_id)
    for _ in range(40):
        if page.eval_on_selector(f"#{element_id}", "e => e.value") == value:
            return
        page.keyboard.press("ArrowDown")
    pytest.fail(f"option {value!r} not reached in #{element_id}")


def type_into(page: Any, element_id: str, text: str) -> None:
    tab_to(page, element_id)
    page.keyboard.press("Control+A")
    page.keyboard.type(text)


def press_enter_and_load(page: Any) -> None:
    """Enter sends the form; wait for the page the server answers with."""
    with page.expect_navigation():
        page.keyboard.press("Enter")


def test_a_citizen_registers_with_the_keyboard_corrects_errors_and_follows_the_status(
    chromium: Any, served_web: str, smtp_sink: SmtpSink
) -> None:
    page = chromium.new_page()
    page.goto(served_web + "/")
    assert page.title().startswith("Formulario Electrónico de Registro de Consultas")
    assert axe_violations(page) == []
    labels = page.locator("form label, form legend").all_inner_texts()
    expected = [
        "¿Realiza la consulta en representación de una Entidad?", "Documento de Identidad", "Nombres",
        "Apellido Paterno", "Apellido Materno", "Correo electrónico", "Buscar entidad por:", "RUC",
        "Razón social", "Celular/ Teléfono fijo", "Tema de Consulta", "Consulta",
    ]  # fmt: skip
    shown = [text.replace("*", "").strip() for text in labels]
    assert [label for label in shown if label in expected] == expected  # the Anexo's order

    # Keyboard only: Tab to each field, Space on "Sí", arrows in the lists, type, Enter to send.
    tab_to(page, "represents_entity-si")
    page.keyboard.press("Space")
    choose(page, "document_type", "DNI")
    type_into(page, "document_number", "4567891")  # seven digits: wrong
    type_into(page, "names", "Rosa María")
    type_into(page, "paternal_surname", "Quispe")
    type_into(page, "maternal_surname", "Huamán")
    type_into(page, "email", "rosa.quispe@example.pe")
    type_into(page, "entity_ruc", WRONG_RUC)  # the check digit is wrong
    type_into(page, "entity_name", "Ministerio de Economía y Finanzas")
    type_into(page, "phone", "987 654 321")
    choose(page, "tema", "DGPMI")
    type_into(page, "question", "¿Cómo registro el formato 12-B de una IOARR en el Banco de Inversiones?")
    tab_to(page, "question")
    page.keyboard.press("Tab")  # past the honeypot (not focusable) to the button
    assert page.evaluate("document.activeElement.textContent") == "Registrar consulta"
    press_enter_and_load(page)

    # The errors: beside each field (described by it, marked invalid) and in the summary at the top.
    assert page.title().startswith("Error:")
    for field, words in (("document_number", "8 dígitos"), ("entity_ruc", "RUC")):
        error = page.locator(f"#{field}-error")
        assert words in error.inner_text()
        assert page.get_attribute(f"#{field}", "aria-invalid") == "true"
        assert f"{field}-error" in (page.get_attribute(f"#{field}", "aria-describedby") or "")
        assert page.locator(f'.error-summary a[href="#{field}"]').count() == 1
    assert page.locator(".error-summary li").count() == 2
    assert page.input_value("#names") == "Rosa María"  # the input is kept
    assert page.input_value("#question").startswith("¿Cómo registro")
    assert axe_violations(page) == []

    # Correct both (the summary's links lead to the fields) and send again.
    type_into(page, "document_number", DNI)
    type_into(page, "entity_ruc", VALID_RUC)
    press_enter_and_load(page)
    heading = page.locator("h1").inner_text()
    assert heading == "Su consulta ha sido registrada", page.content()[:2000]
    number = NUMBER_RE.search(page.locator(".number").inner_text())
    assert number is not None
    assert "Fecha de presentación" in page.content() and "Cómo se contó el plazo" in page.content()
    assert axe_violations(page) == []

    # The confirmation mail reaches the SMTP server with the status link.
    [confirmation] = [
        m for m in smtp_sink.wait_for(2, timeout=30) if "Su consulta ha sido registrada" in m.subject
    ]
    assert number.group(0) in confirmation.subject and confirmation.rcpt_tos == ["rosa.quispe@example.pe"]
    text_part = confirmation.message.get_body(preferencelist=("plain",))
    assert text_part is not None
    link = f"{served_web}/estado?numero={number.group(0)}"
    assert link in text_part.get_content()

    # The status page from the mail's link, with the document number typed by keyboard.
    page.goto(link)
    assert axe_violations(page) == []
    assert page.input_value("#numero") == number.group(0)
    type_into(page, "documento", DNI)
    press_enter_and_load(page)
    assert page.locator("#resultado-estado").inner_text() == f"Consulta {number.group(0)}"
    assert "En atención" in page.locator(".status").inner_text()
    assert "Dirección General de Programación Multianual de Inversiones" in page.content()
    assert axe_violations(page) == []
    page.close()


def test_the_status_page_gives_one_answer_for_an_unknown_number_and_a_wrong_document(
    chromium: Any, served_web: str
) -> None:
    page = chromium.new_page()
    answers = []
    for number, document in (("CONS-2030-000001", DNI), ("CONS-2030-000002", "11111111")):
        page.goto(f"{served_web}/estado")
        type_into(page, "numero", number)
        type_into(page, "documento", document)
        press_enter_and_load(page)
        answers.append(page.locator(".notice").inner_text())
    assert answers[0] == answers[1] and "No encontramos" in answers[0]
    assert axe_violations(page) == []
    page.close()

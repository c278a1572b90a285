"""Logs (CONSULTAS_LOG_FORMAT): a full intake, routing and answer through `consultas serve`, then grep."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from consultas.logs import configure_logging, redact
from tests.e2e_routing_support import RED_YAML, red_reply, text_of, wait_mails
from tests.intake_imap_support import MAILBOX, serve_env, serving
from tests.ops_support import CITIZENS, citizen_mail
from tests.routing_support import DGPMI_TITULAR, OGDAU_EMAIL
from tests.servers.dovecot import DovecotServer
from tests.servers.smtp_sink import SmtpSink

CITIZEN = CITIZENS[0]
PERSONAL = (CITIZEN.name, CITIZEN.dni, CITIZEN.phone, CITIZEN.email, "Huamán", "987 123 456")


@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["json", "text"])
def test_the_logs_of_a_full_intake_routing_and_answer_hold_no_personal_data(
    log_format: str, db_url: str, dovecot: DovecotServer, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    red_file = tmp_path / "red.yaml"
    red_file.write_text(RED_YAML, encoding="utf-8")
    env = serve_env(
        db_url,
        dovecot,
        smtp_sink,
        tmp_path / "var",
        CONSULTAS_OGDAU_EMAIL=OGDAU_EMAIL,
        CONSULTAS_RED_FILE=str(red_file),
        CONSULTAS_LOG_FORMAT=log_format,
        CONSULTAS_LOG_LEVEL="DEBUG",
    )
    with serving(env, tmp_path):
        dovecot.deliver(citizen_mail(CITIZEN), MAILBOX)
        [routed] = wait_mails(smtp_sink, DGPMI_TITULAR, 1, "the routed mail")
        assert CITIZEN.dni in text_of(routed)  # the data went through the service
        dovecot.deliver(red_reply(routed, sender=DGPMI_TITULAR, answer="Regístrelo en la OPMI."), MAILBOX)
        wait_mails(smtp_sink, CITIZEN.email, 2, "the confirmation and the answer")
    log = (tmp_path / "serve.log").read_text(encoding="utf-8")
    number = text_of(routed).split("CONS-", 1)[1][:11]
    assert f"CONS-{number}" in log and "routed to DGPMI" in log  # the log has content
    assert [value for value in PERSONAL if value in log] == []
    if log_format == "json":
        entries = [json.loads(line) for line in log.splitlines() if line.strip()]
        assert all(
            {"time", "level", "logger", "message", "consulta", "message_id"} <= set(e) for e in entries
        )
        assert {e["consulta"] for e in entries} >= {f"CONS-{number}"}
        assert any(e["message_id"] for e in entries)


def test_text_from_elsewhere_is_redacted_in_both_formats() -> None:
    logger = logging.getLogger("tests.ops_logs")
    root = logging.getLogger()
    kept_handlers, kept_level = list(root.handlers), root.level
    for log_format in ("text", "json"):
        stream = io.StringIO()
        configure_logging("INFO", log_format, stream)
        try:
            logger.warning(
                "outbox 12 (%s) will be retried: 450 %s mailbox full; DNI %s, cel. %s",
                "<abc.123@consultas.mef.gob.pe>", CITIZEN.email, CITIZEN.dni, "+51 987 123 456",
            )  # fmt: skip
            try:
                raise ValueError(f"bad row for {CITIZEN.email}")
            except ValueError:
                logger.exception("consulta CONS-2025-000007 failed")
        finally:
            for handler in list(root.handlers):
                root.removeHandler(handler)
            for handler in kept_handlers:
                root.addHandler(handler)
            root.setLevel(kept_level)
        out = stream.getvalue()
        assert CITIZEN.email not in out and CITIZEN.dni not in out and "987 123 456" not in out
        assert "<abc.123@consultas.mef.gob.pe>" in out and "[correo]" in out and "[documento]" in out
        if log_format == "json":
            first, second = (json.loads(line) for line in out.splitlines() if line.startswith("{"))
            assert first["message_id"] == "<abc.123@consultas.mef.gob.pe>" and first["level"] == "WARNING"
            assert second["consulta"] == "CONS-2025-000007" and "ValueError" in second["exc"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("DNI 40817263 y CE 001234567", "DNI [documento] y CE [documento]"),
        ("llame al 987654321 o +51 987-654-321", "llame al [telefono] o [telefono]"),
        ("consulta CONS-2025-000123 de rosa@correo.pe", "consulta CONS-2025-000123 de [correo]"),
        (
            "<179641061813.15579.15706934925326244663@mef.gob.pe>",
            "<179641061813.15579.15706934925326244663@mef.gob.pe>",
        ),
        ("outbox 12 sent at 2025-03-12T10:00:00", "outbox 12 sent at 2025-03-12T10:00:00"),
    ],
)
def test_redaction_table(text: str, expected: str) -> None:
    assert redact(text) == expected

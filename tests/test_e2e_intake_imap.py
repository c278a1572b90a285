"""Black-box acceptance: `consultas db upgrade` then `consultas serve` against Dovecot and an SMTP sink.

Only CONSULTAS_* settings; the service is a subprocess stopped with SIGTERM. What the citizen
notices is asserted: the mails in the SMTP sink, and the folders of the consultas mailbox.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.intake_imap_support import (
    BROKEN_MAIL,
    MAILBOX,
    append_raw,
    citizen_mail,
    serve_env,
    serving,
    wait_until,
)
from tests.servers.dovecot import DovecotServer
from tests.servers.smtp_sink import Captured, SmtpSink

NUMBER = re.compile(r"\[(CONS-\d{4}-\d{6})\]")
WITHIN_S = 20.0


@pytest.fixture
def served(
    db_url: str, dovecot: DovecotServer, smtp_sink: SmtpSink, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with serving(serve_env(db_url, dovecot, smtp_sink, tmp_path / "var"), tmp_path) as process:
        yield process


def _to(smtp_sink: SmtpSink, address: str) -> list[Captured]:
    return [mail for mail in smtp_sink.messages if address in mail.rcpt_tos]


def _wait_mails(smtp_sink: SmtpSink, address: str, count: int, what: str) -> list[Captured]:
    wait_until(lambda: len(_to(smtp_sink, address)) >= count, timeout_s=WITHIN_S, what=what)
    return _to(smtp_sink, address)


def test_mail_intake_through_imap_and_smtp_as_a_citizen_sees_it(
    served: subprocess.Popen[bytes], dovecot: DovecotServer, smtp_sink: SmtpSink
) -> None:
    # A complete mail gets its numbered confirmation within seconds
    dovecot.deliver(citizen_mail(1), MAILBOX)
    [confirmation] = _wait_mails(smtp_sink, "ciudadano1@example.pe", 1, "the confirmation")
    number = NUMBER.search(confirmation.subject)
    assert number is not None, confirmation.subject
    assert number.group(1) in confirmation.message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]

    # The same mail delivered again gives no second consulta (no second confirmation)
    dovecot.deliver(citizen_mail(1), MAILBOX)
    # The citizen's out-of-office answer to the confirmation gets nothing
    out_of_office = citizen_mail(
        1,
        subject=f"Respuesta automática: {confirmation.subject}",
        message_id="<ooo-1@example.pe>",
        in_reply_to=str(confirmation.message["Message-ID"]),
        extra_headers={"Auto-Submitted": "auto-replied", "X-Autoreply": "yes"},
    )
    dovecot.deliver(out_of_office, MAILBOX)

    # An incomplete mail gets a subsanación; the citizen's reply completing it gets the number
    dovecot.deliver(citizen_mail(2, dni=None), MAILBOX)
    [subsanacion] = _wait_mails(smtp_sink, "ciudadano2@example.pe", 1, "the subsanación")
    assert NUMBER.search(subsanacion.subject) is None
    assert "DNI" in subsanacion.message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    reply = citizen_mail(
        2,
        subject=f"RE: {subsanacion.subject}",
        message_id="<respuesta-2@example.pe>",
        in_reply_to=str(subsanacion.message["Message-ID"]),
    )
    dovecot.deliver(reply, MAILBOX)
    mails_2 = _wait_mails(smtp_sink, "ciudadano2@example.pe", 2, "the number after the subsanación")
    assert NUMBER.search(mails_2[1].subject) is not None

    # A broken mail is quarantined and the next mail is still confirmed
    append_raw(dovecot, BROKEN_MAIL)
    dovecot.deliver(citizen_mail(3), MAILBOX)
    [confirmation_3] = _wait_mails(
        smtp_sink, "ciudadano3@example.pe", 1, "the confirmation after a broken mail"
    )
    assert NUMBER.search(confirmation_3.subject) is not None
    wait_until(
        lambda: dovecot.message_count(MAILBOX, "Cuarentena") == 1, what="the broken mail in Cuarentena"
    )

    # Everything else ended in Procesados, and citizen 1 got exactly one mail
    wait_until(lambda: dovecot.message_count(MAILBOX, "INBOX") == 0, what="an empty INBOX")
    assert dovecot.message_count(MAILBOX, "Procesados") == 6
    assert len(_to(smtp_sink, "ciudadano1@example.pe")) == 1

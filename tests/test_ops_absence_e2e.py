"""Out-of-office hand-over end to end: `consultas serve` on the test Dovecot and the SMTP sink.

The titular's Exchange out-of-office reply sends the consulta to the alterno alone at once and
keeps the titular out of routing; the alterno's RFC 3834 auto-reply tells OGDAU, and with nobody
left the consulta goes to OGDAU; the titular answering a consulta brings them back.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from consultas.models import Consulta, Event
from tests.e2e_routing_support import (
    TECNICA,
    citizen_mail,
    header_addresses,
    mails_to,
    number_of,
    red_reply,
    serving_with_red,
    wait_mails,
)
from tests.intake_imap_support import MAILBOX
from tests.routing_support import DGPMI_ALTERNO, DGPMI_TITULAR, OGDAU_EMAIL
from tests.servers.dovecot import DovecotServer
from tests.servers.smtp_sink import Captured, SmtpSink


@pytest.fixture
def served(
    db_url: str, dovecot: DovecotServer, smtp_sink: SmtpSink, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with serving_with_red(db_url, dovecot, smtp_sink, tmp_path, CONSULTAS_ABSENCE_DAYS="5") as process:
        yield process


def exchange_out_of_office(routed: Captured, sender: str) -> bytes:
    """What Exchange sends back while its user is away: no In-Reply-To, our subject kept."""
    mail = EmailMessage()
    mail["From"] = formataddr(("Giovanna Rengifo Salas", sender))
    mail["To"] = str(routed.message["Reply-To"])
    mail["Subject"] = f"Respuesta automática: {routed.subject}"
    mail["Message-ID"] = make_msgid(domain="mef.gob.pe")
    mail["Date"] = formatdate(localtime=True)
    mail["Auto-Submitted"] = "auto-generated"
    mail["X-Auto-Response-Suppress"] = "All"
    mail.set_content("Estaré fuera de la oficina hasta el lunes. Para temas urgentes escriba a mi alterno.")
    return mail.as_bytes()


def rfc3834_auto_reply(routed: Captured, sender: str) -> bytes:
    """A vacation responder's reply (RFC 3834): Auto-Submitted: auto-replied, threaded."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = str(routed.message["Reply-To"])
    mail["Subject"] = f"Auto: {routed.subject}"
    mail["Message-ID"] = make_msgid(domain="mef.gob.pe")
    mail["Date"] = formatdate(localtime=True)
    mail["In-Reply-To"] = str(routed.message["Message-ID"])
    mail["Auto-Submitted"] = "auto-replied"
    mail.set_content("Me encuentro de vacaciones.")
    return mail.as_bytes()


def routed_with(smtp_sink: SmtpSink, address: str, number: str) -> list[Captured]:
    return mails_to(smtp_sink, address, lambda m: number in m.subject and "Respuesta" not in m.subject)


@pytest.mark.slow
def test_out_of_office_replies_hand_consultas_over_and_the_titular_comes_back_by_answering(
    served: subprocess.Popen[bytes],
    dovecot: DovecotServer,
    smtp_sink: SmtpSink,
    sessions: sessionmaker[Session],
) -> None:
    # Consulta 1 goes to the titular with the alterno in copy
    dovecot.deliver(citizen_mail(1, *TECNICA), MAILBOX)
    [routed_1] = wait_mails(smtp_sink, DGPMI_TITULAR, 1, "consulta 1 routed")
    number_1 = number_of(routed_1)

    # The titular's out-of-office: the alterno alone gets it again, at once; the citizen nothing
    dovecot.deliver(exchange_out_of_office(routed_1, DGPMI_TITULAR), MAILBOX)
    [_, handed] = wait_mails(smtp_sink, DGPMI_ALTERNO, 2, "consulta 1 handed to the alterno")
    assert handed.rcpt_tos == [DGPMI_ALTERNO] and number_of(handed) == number_1
    assert header_addresses(handed, "To") == [DGPMI_ALTERNO] and not handed.message.get_all("Cc")
    assert len(mails_to(smtp_sink, "ciudadano1@example.pe")) == 1  # the confirmation only
    assert not mails_to(smtp_sink, OGDAU_EMAIL)

    # While away, a new consulta goes to the alterno alone
    dovecot.deliver(citizen_mail(2, *TECNICA), MAILBOX)
    wait_mails(smtp_sink, "ciudadano2@example.pe", 1, "consulta 2 confirmed")
    [confirm_2] = mails_to(smtp_sink, "ciudadano2@example.pe")
    number_2 = number_of(confirm_2)
    [routed_2] = wait_mails(smtp_sink, DGPMI_ALTERNO, 1, "consulta 2 routed", lambda m: number_2 in m.subject)
    assert routed_2.rcpt_tos == [DGPMI_ALTERNO]
    assert not routed_with(smtp_sink, DGPMI_TITULAR, number_2)

    # The alterno's vacation reply: OGDAU is told, and with nobody left the consulta goes to OGDAU
    dovecot.deliver(rfc3834_auto_reply(routed_2, DGPMI_ALTERNO), MAILBOX)
    ogdau = wait_mails(smtp_sink, OGDAU_EMAIL, 2, "OGDAU told and given consulta 2")
    subjects = " | ".join(m.subject for m in ogdau)
    assert "fuera de la oficina" in subjects and all(number_2 in m.subject for m in ogdau)

    # The titular is back: answering consulta 1 reaches the citizen and brings them back to routing
    dovecot.deliver(red_reply(handed, sender=DGPMI_TITULAR, answer="Use el formato 12-B vigente."), MAILBOX)
    wait_mails(smtp_sink, "ciudadano1@example.pe", 2, "the answer to citizen 1")
    dovecot.deliver(citizen_mail(3, *TECNICA), MAILBOX)
    wait_mails(smtp_sink, "ciudadano3@example.pe", 1, "consulta 3 confirmed")
    number_3 = number_of(mails_to(smtp_sink, "ciudadano3@example.pe")[0])
    [routed_3] = wait_mails(smtp_sink, DGPMI_TITULAR, 1, "consulta 3 routed", lambda m: number_3 in m.subject)
    assert routed_3.rcpt_tos == [DGPMI_TITULAR]  # the alterno is still away

    with sessions() as session:
        trail = session.execute(
            select(Consulta.number, Event.kind, Event.actor)
            .join(Event, Event.consulta_id == Consulta.id)
            .where(Event.kind.in_(("red_absent", "rerouted_absence", "red_back")))
            .order_by(Event.id)
        ).all()
    assert [tuple(row) for row in trail] == [
        (number_1, "red_absent", DGPMI_TITULAR),
        (number_1, "rerouted_absence", DGPMI_TITULAR),
        (number_2, "red_absent", DGPMI_ALTERNO),
        (number_2, "rerouted_absence", DGPMI_ALTERNO),
        (number_1, "red_back", DGPMI_TITULAR),
    ]

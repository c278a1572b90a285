"""Helpers for the intake tests: a citizen's mail as bytes (complete or not), processed as intake does."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid

from sqlalchemy.orm import Session, sessionmaker

from intake.pipeline import InboundOutcome, process_inbound_mail
from tests.routing_support import CITIZEN, CONFIG, MAILBOX, NOW

COMPLETE_BODY = (
    "Nombres y apellidos: José Pérez Quispe\nDNI: 45678912\n"
    f"Correo: {CITIZEN}\nTeléfono: 987654321\n\n"
    "Consulta: ¿Cómo registro el formato 12-B de una IOARR en Invierte.pe?\n"
)
INCOMPLETE_BODY = "Buenos días:\n\n¿Cómo registro el formato 12-B de una IOARR en el Banco de Inversiones?\n"


def citizen_mail(
    body: str = COMPLETE_BODY,
    *,
    subject: str = "Formato 12-B",
    sender: str = CITIZEN,
    in_reply_to: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    mail = EmailMessage()
    mail["From"] = f"José Pérez Quispe <{sender}>"
    mail["To"] = MAILBOX
    mail["Subject"] = subject
    mail["Message-ID"] = make_msgid(domain="example.pe")
    mail["Date"] = "Wed, 12 Mar 2025 10:00:00 -0500"
    if in_reply_to:
        mail["In-Reply-To"] = in_reply_to
        mail["References"] = in_reply_to
    for name, value in (headers or {}).items():
        mail[name] = value
    mail.set_content(body)
    return mail.as_bytes()


def process(sessions: sessionmaker[Session], raw: bytes, **kwargs: object) -> InboundOutcome:
    with sessions.begin() as session:
        return process_inbound_mail(session, raw, mailbox=MAILBOX, config=CONFIG, now=NOW, **kwargs)  # type: ignore[arg-type]

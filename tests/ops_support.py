"""Helpers for the operations tests: citizens with distinct personal data, taken in, routed and answered."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import formataddr, make_msgid

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from consultas.context import ServiceConfig
from consultas.models import Consulta, Outbox
from intake.pipeline import process_inbound_mail
from tests.routing_support import CONFIG, DGPMI_TITULAR, MAILBOX, NOW, queued_mails, red_reply


@dataclass(frozen=True)
class Citizen:
    name: str
    dni: str
    phone: str
    email: str


CITIZENS = (
    Citizen("Rosa Elvira Huamán Ccori", "40817263", "987123456", "rosa.huaman@correo.pe"),
    Citizen("Teodoro Quispe Mamani", "41928374", "986234567", "tquispe.mamani@example.pe"),
    Citizen("Maribel Soncco Apaza", "42039485", "985345678", "maribel.soncco@example.com.pe"),
)


def citizen_mail(citizen: Citizen) -> bytes:
    mail = EmailMessage()
    mail["From"] = formataddr((citizen.name, citizen.email))
    mail["To"] = MAILBOX
    mail["Subject"] = "Registro del formato 12-B en el Banco de Inversiones"
    mail["Message-ID"] = make_msgid(domain="example.pe")
    mail["Date"] = "Wed, 12 Mar 2025 10:00:00 -0500"
    mail.set_content(
        f"Nombres y apellidos: {citizen.name}\nDNI: {citizen.dni}\nCorreo: {citizen.email}\n"
        f"Teléfono: {citizen.phone}\n\n"
        "Consulta: ¿Cómo registro el formato 12-B de una IOARR en el Banco de Inversiones de Invierte.pe?\n"
    )
    return mail.as_bytes()


def take_in(
    sessions: sessionmaker[Session], citizen: Citizen, *, config: ServiceConfig = CONFIG, now: datetime = NOW
) -> str:
    """Process the citizen's mail; return the consulta's number."""
    with sessions.begin() as session:
        process_inbound_mail(session, citizen_mail(citizen), mailbox=MAILBOX, config=config, now=now)
    with sessions() as session:
        number = session.scalar(select(Consulta.number).where(Consulta.document_number == citizen.dni))
    assert number is not None
    return number


def answer(
    sessions: sessionmaker[Session],
    number: str,
    *,
    sender: str = DGPMI_TITULAR,
    config: ServiceConfig = CONFIG,
    now: datetime = NOW,
    text: str = "Debe registrarlo con el usuario de la OPMI.",
) -> None:
    """The titular replies to the consulta's routed mail, quoting it as mail clients do."""
    with sessions() as session:
        routed = [m for m in queued_mails(session) if m.template == "derivacion_red" and number in m.subject]
    assert routed, number
    quoted = "\n".join(f"> {line}" for line in routed[-1].text.splitlines())
    raw = red_reply(
        sender=sender,
        to=routed[-1].reply_to,
        subject=f"RE: {routed[-1].subject}",
        body=f"{text}\n\nEl mié, 12 mar 2025 a las 10:00, Consultas MEF escribió:\n{quoted}\n",
    )
    with sessions.begin() as session:
        process_inbound_mail(session, raw, mailbox=MAILBOX, config=config, now=now)


def templates_sent(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as session:
        return list(session.scalars(select(Outbox.template).order_by(Outbox.id)))

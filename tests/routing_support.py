"""Helpers for the routing tests: a config, the example Red, consultas in the DB, Red replies as bytes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from consultas.calendar import WorkingCalendar
from consultas.context import ServiceConfig
from consultas.mime import ParsedMail, parse_mail
from consultas.models import (
    Attachment,
    Channel,
    Consulta,
    ConsultaStatus,
    Direction,
    Event,
    Message,
    MessageKind,
    Outbox,
)
from consultas.outbox import MailIdentity
from routing.red_registry import apply_registry
from routing.red_registry_file import parse_registry
from routing.reply_address import make_reply_address

EXAMPLE_RED = Path(__file__).resolve().parents[1] / "docs" / "red.example.yaml"
#: Wednesday 12 March 2025, 10:00 in Lima: a working day in office hours.
NOW = datetime(2025, 3, 12, 15, 0, tzinfo=UTC)
MAILBOX = "consultas@mef.gob.pe"
OGDAU_EMAIL = "ogdau@mef.gob.pe"
SECRET = b"routing-test-secret"
CONFIG = ServiceConfig(
    identity=MailIdentity(address=MAILBOX, name="Consultas MEF"),
    calendar=WorkingCalendar(),
    number_prefix="CONS",
    due_working_days=10,
    ogdau_email=OGDAU_EMAIL,
    ogsu_email="ogsu@mef.gob.pe",
    secret_key=SECRET,
    auto_reply_cap=5,
    max_attachment_bytes=10 * 1024 * 1024,
    reminder_offsets=(3, 0),
    subsanacion_expiry_working_days=10,
)
CITIZEN = "jose.perez@example.pe"
ORIGIN_ID = "<origen-123@example.pe>"
# From docs/red.example.yaml
DGPMI_TITULAR = "grengifo@mef.gob.pe"
DGPMI_ALTERNO = "mllerena@mef.gob.pe"
DGTP_TITULAR = "fcastaneda@mef.gob.pe"
DGTP_ALTERNO = "jbarrientos@mef.gob.pe"


def load_example_red(session: Session, now: datetime = NOW) -> None:
    content = EXAMPLE_RED.read_text(encoding="utf-8")
    apply_registry(session, parse_registry(content), source=str(EXAMPLE_RED), content=content, now=now)


def make_consulta(
    session: Session,
    *,
    number: str = "CONS-2025-000123",
    subject: str = "Registro del formato 12-B en el Banco de Inversiones",
    question: str = "¿Cómo registro el formato 12-B de una IOARR en el Banco de Inversiones de Invierte.pe?",
    attachments: tuple[tuple[str, str, bytes], ...] = (),
    **overrides: Any,
) -> Consulta:
    """A numbered, admitted consulta with its first inbound mail (and attachments)."""
    fields: dict[str, Any] = {
        "number": number,
        "channel": Channel.EMAIL,
        "status": ConsultaStatus.ADMITIDA,
        "full_name": "José Pérez Quispe",
        "document_type": "DNI",
        "document_number": "45678912",
        "email": CITIZEN,
        "phone": "+51987654321",
        "question": question,
        "subject": subject,
        "origin_message_id": ORIGIN_ID,
        "received_at": NOW,
        "admitted_at": NOW,
        "presented_on": date(2025, 3, 12),
        "due_on": date(2025, 3, 26),
        "created_at": NOW,
        "updated_at": NOW,
    }
    fields.update(overrides)
    consulta = Consulta(**fields)
    session.add(consulta)
    session.flush()
    message = Message(
        consulta_id=consulta.id,
        direction=Direction.INBOUND,
        channel=Channel.EMAIL,
        kind=MessageKind.CITIZEN,
        mailbox=MAILBOX,
        message_id=f"<origen-{consulta.id}@example.pe>",
        sender=CITIZEN,
        subject=subject,
        received_at=NOW,
    )
    session.add(message)
    session.flush()
    for filename, content_type, content in attachments:
        session.add(
            Attachment(
                message_pk=message.id,
                filename=filename,
                content_type=content_type,
                size=len(content),
                content=content,
            )
        )
    session.flush()
    return consulta


def reply_address(number: str = "CONS-2025-000123", secret: bytes = SECRET) -> str:
    return make_reply_address(MAILBOX, number, secret)


def red_reply(
    *,
    sender: str,
    body: str,
    to: str | None = None,
    subject: str = "RE: [CONS-2025-000123] Consulta técnica asignada",
    in_reply_to: str | None = None,
    attachments: tuple[tuple[str, str, bytes], ...] = (),
    sender_name: str = "Giovanna Rengifo",
) -> bytes:
    """A Red member's reply as real mail bytes (plain text, optional attachments)."""
    mail = EmailMessage()
    mail["From"] = formataddr((sender_name, sender))
    mail["To"] = to if to is not None else reply_address()
    mail["Subject"] = subject
    mail["Message-ID"] = make_msgid(domain="mef.gob.pe")
    mail["Date"] = "Wed, 12 Mar 2025 11:00:00 -0500"
    if in_reply_to:
        mail["In-Reply-To"] = in_reply_to
        mail["References"] = in_reply_to
    mail.set_content(body)
    for filename, content_type, content in attachments:
        maintype, _, subtype = content_type.partition("/")
        mail.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return mail.as_bytes()


def store_inbound(session: Session, raw: bytes) -> tuple[ParsedMail, Message]:
    """Parse ``raw`` and store it as the intake pipeline does (Message row + Attachment rows)."""
    mail = parse_mail(raw)
    message = Message(
        direction=Direction.INBOUND,
        channel=Channel.EMAIL,
        kind=MessageKind.CITIZEN,
        mailbox=MAILBOX,
        message_id=mail.message_id,
        in_reply_to=mail.in_reply_to,
        references=list(mail.references),
        sender=mail.sender,
        recipients=[*mail.to, *mail.cc],
        subject=mail.subject,
        body_text=mail.text,
        raw=raw,
        received_at=NOW,
    )
    session.add(message)
    session.flush()
    for part in mail.attachments:
        message.attachments.append(
            Attachment(
                filename=part.filename or "adjunto",
                content_type=part.content_type,
                size=part.size,
                content=part.content,
            )
        )
    session.flush()
    return mail, message


@dataclass(frozen=True)
class QueuedMail:
    """An outbox row and its MIME mail, as a recipient would read it."""

    template: str
    to: list[str]
    cc: list[str]
    subject: str
    reply_to: str | None
    text: str
    mail: EmailMessage

    def attachment_names(self) -> list[str]:
        return [part.get_filename() or "" for part in self.mail.iter_attachments()]


def queued_mails(session: Session) -> list[QueuedMail]:
    """Every queued outbound mail, oldest first."""
    found = []
    for row in session.scalars(select(Outbox).order_by(Outbox.id)):
        if row.message.raw is None:
            continue
        mail = message_from_bytes(row.message.raw, policy=policy.default)
        assert isinstance(mail, EmailMessage)
        body = mail.get_body(("plain",))
        found.append(
            QueuedMail(
                template=row.template,
                to=[a.strip() for a in str(mail["To"] or "").split(",") if a.strip()],
                cc=[a.strip() for a in str(mail["Cc"] or "").split(",") if a.strip()],
                subject=str(mail["Subject"]),
                reply_to=str(mail["Reply-To"]) if mail["Reply-To"] else None,
                text=body.get_content().replace("\r\n", "\n") if isinstance(body, EmailMessage) else "",
                mail=mail,
            )
        )
    return found


def event_kinds(session: Session, consulta: Consulta | None = None) -> list[str]:
    query = select(Event.kind).order_by(Event.id)
    if consulta is not None:
        query = query.where(Event.consulta_id == consulta.id)
    return list(session.scalars(query))


def events_of(session: Session, kind: str) -> list[Event]:
    return list(session.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)))

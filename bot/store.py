"""The bot's database work, synchronous (the handlers run it with ``asyncio.to_thread``).

Owns the unit of work of the bot's use cases: admitting a confirmed form exactly once per flow
(``admit_flow``), the tema buttons (``temas``) and the ``/estado`` look-up (``estado``).
Admission itself is ``routing.admission.admit_structured``, the same door as mail's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from consultas.context import ServiceConfig
from consultas.models import (
    Channel,
    Consulta,
    ConsultaStatus,
    Direction,
    Message,
    MessageKind,
    Outbox,
    OutboxStatus,
)
from consultas.requisitos import Requisitos
from consultas.validators import same_document


@dataclass(frozen=True)
class Admitted:
    """What the chat is told after confirmation."""

    number: str
    presented_on: date | None
    due_on: date | None
    email: str | None
    already: bool  # this flow had been admitted before (a double tap, a retry)
    outbox_ids: tuple[int, ...] = ()  # mails the admission queued (none when ``already``)


@dataclass(frozen=True)
class Estado:
    """What ``/estado`` shows: no personal data, only the consulta's progress."""

    number: str
    status: ConsultaStatus
    presented_on: date | None
    due_on: date | None
    answered_on: date | None
    working_days_left: int | None


def temas(sessions: sessionmaker[Session]) -> list[tuple[str, str]]:
    """(code, name) of every active organo of the Red registry, for the tema buttons."""
    from routing.red_registry import organo_topics

    with sessions() as session:
        return [(organo.code, organo.name) for organo in organo_topics(session)]


def _flow_key(flow_id: str) -> str:
    return f"telegram-flow:{flow_id}"


def _admitted(consulta: Consulta, *, already: bool) -> Admitted:
    return Admitted(
        number=consulta.number or "",
        presented_on=consulta.presented_on,
        due_on=consulta.due_on,
        email=consulta.email,
        already=already,
    )


def _previous(session: Session, mailbox: str, key: str) -> Consulta | None:
    message = session.scalar(
        select(Message).where(
            Message.mailbox == mailbox, Message.direction == Direction.INBOUND, Message.message_id == key
        )
    )
    if message is None or message.consulta_id is None:
        return None
    return session.get(Consulta, message.consulta_id)


def admit_flow(
    sessions: sessionmaker[Session],
    requisitos: Requisitos,
    *,
    flow_id: str,
    chat_id: int,
    tema: str | None,
    config: ServiceConfig,
    now: datetime,
) -> Admitted:
    """Admit the confirmed form of flow ``flow_id`` once: a second call returns the first consulta.

    The flow is recorded as an inbound Telegram ``Message`` (unique per mailbox and Message-ID)
    in the admission's transaction, as a mail's Message-ID is: the database, not luck, makes a
    double confirmation (or two bot processes) create one consulta.
    """
    from routing.admission import admit_structured

    mailbox, key = f"telegram:{chat_id}", _flow_key(flow_id)
    try:
        with sessions.begin() as session:
            previous = _previous(session, mailbox, key)
            if previous is not None:
                return _admitted(previous, already=True)
            message = Message(
                direction=Direction.INBOUND,
                channel=Channel.TELEGRAM,
                kind=MessageKind.CITIZEN,
                mailbox=mailbox,
                message_id=key,
                subject="Formulario de registro de consultas (Telegram)",
                body_text=requisitos.question,
                received_at=now,
            )
            session.add(message)
            session.flush()
            consulta = admit_structured(
                session,
                requisitos,
                channel=Channel.TELEGRAM,
                config=config,
                now=now,
                tema=tema,
                telegram_chat_id=chat_id,
            )
            message.consulta_id = consulta.id
            pending = (Outbox.consulta_id == consulta.id) & (Outbox.status == OutboxStatus.PENDING)
            queued = session.scalars(select(Outbox.id).where(pending))
            return dataclasses.replace(_admitted(consulta, already=False), outbox_ids=tuple(queued))
    except IntegrityError:
        # A concurrent confirmation of the same flow won the unique constraint: report its consulta.
        with sessions() as session:
            previous = _previous(session, mailbox, key)
            if previous is None:
                raise
            return _admitted(previous, already=True)


def document_matches(consulta: Consulta, given: str) -> bool:
    """Tell whether ``given`` is the consulta's identity document number."""
    return same_document(consulta.document_type, consulta.document_number, given)


def estado(
    sessions: sessionmaker[Session],
    number: str,
    *,
    chat_id: int,
    document: str | None,
    config: ServiceConfig,
    now: datetime,
) -> Estado | None:
    """The status of consulta ``number`` if this chat may see it, else None (whether or not it exists).

    A chat may see the consultas it created; another chat only with the right document number.
    """
    with sessions() as session:
        consulta = session.scalar(select(Consulta).where(Consulta.number == number.upper()))
        if consulta is None:
            return None
        owner = consulta.telegram_chat_id is not None and consulta.telegram_chat_id == chat_id
        if not owner and (document is None or not document_matches(consulta, document)):
            return None
        today = config.calendar.local(now).date()
        left = None
        if consulta.due_on is not None and consulta.status != ConsultaStatus.RESPONDIDA:
            left = config.calendar.working_days_between(today, consulta.due_on)
        return Estado(
            number=consulta.number or number,
            status=consulta.status,
            presented_on=consulta.presented_on,
            due_on=consulta.due_on,
            answered_on=consulta.answered_on,
            working_days_left=left,
        )


def is_owner(sessions: sessionmaker[Session], number: str, *, chat_id: int) -> bool:
    """Tell whether consulta ``number`` was created from ``chat_id``."""
    with sessions() as session:
        found = session.scalar(
            select(Consulta.id).where(Consulta.number == number.upper(), Consulta.telegram_chat_id == chat_id)
        )
        return found is not None

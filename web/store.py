"""The web's database work, synchronous (the routes run it in a worker thread).

``register`` admits a checked submission once per key (the form's one-time token, the API's
``Idempotency-Key``) through ``routing.admission.admit_structured``, the same door as mail's and the
bot's; ``status`` is the public look-up by number and identity document; ``temas`` the topic list.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from consultas.calendar import DeadlineExplanation, explain_deadline
from consultas.context import ServiceConfig
from consultas.models import (
    Channel,
    Consulta,
    ConsultaStatus,
    Direction,
    Message,
    MessageKind,
    Organo,
    Outbox,
    OutboxStatus,
)
from consultas.requisitos import Requisitos
from consultas.validators import same_document
from routing.admission import admit_structured
from routing.answer import ANSWER_TEMPLATE, OGDAU_NAME
from routing.red_registry import organo_topics
from web.fields import ADMINISTRATIVA, ADMINISTRATIVA_NAME

logger = logging.getLogger(__name__)

#: The inbound ``Message`` of a web submission lives in this mailbox, keyed by its submission key.
MAILBOX = "formulario"
SUBJECT = "Formulario Electrónico de Registro de Consultas"


@dataclass(frozen=True)
class Registered:
    """What the citizen (or the API client) is told once the consulta is registered."""

    number: str
    status: ConsultaStatus
    presented_on: date
    due_on: date
    email: str | None
    explanation: DeadlineExplanation | None
    already: bool  # this key had been registered before (a double submit, a retry)
    outbox_ids: tuple[int, ...] = ()  # mails the admission queued (none when ``already``)


@dataclass(frozen=True)
class Status:
    """What the status page shows: the consulta's progress, never its citizen's data."""

    number: str
    status: ConsultaStatus
    presented_on: date | None
    due_on: date | None
    organo: str | None
    answered_on: date | None
    answer: str | None
    explanation: DeadlineExplanation | None


def temas(sessions: sessionmaker[Session]) -> dict[str, str]:
    """code -> name of every active organo of the Red registry, then the administrative topic."""
    with sessions() as session:
        found = {organo.code: organo.name for organo in organo_topics(session)}
    found[ADMINISTRATIVA] = ADMINISTRATIVA_NAME
    return found


def _explanation(consulta: Consulta, config: ServiceConfig) -> DeadlineExplanation | None:
    """How the dates were counted; None when they were set otherwise (a later correction)."""
    explained = explain_deadline(config.calendar, consulta.received_at, config.due_working_days)
    if (explained.presented, explained.due) != (consulta.presented_on, consulta.due_on):
        return None
    return explained


def _registered(consulta: Consulta, config: ServiceConfig, *, already: bool) -> Registered:
    assert consulta.number and consulta.presented_on and consulta.due_on  # admitted consultas have them
    return Registered(
        number=consulta.number,
        status=consulta.status,
        presented_on=consulta.presented_on,
        due_on=consulta.due_on,
        email=consulta.email,
        explanation=_explanation(consulta, config),
        already=already,
    )


def _previous(session: Session, key: str) -> Consulta | None:
    consulta_id = session.scalar(
        select(Message.consulta_id).where(
            Message.mailbox == MAILBOX, Message.direction == Direction.INBOUND, Message.message_id == key
        )
    )
    return session.get(Consulta, consulta_id) if consulta_id is not None else None


def previous(sessions: sessionmaker[Session], key: str, *, config: ServiceConfig) -> Registered | None:
    """The consulta registered under ``key`` before, if any."""
    with sessions() as session:
        consulta = _previous(session, key)
        return _registered(consulta, config, already=True) if consulta is not None else None


def register(
    sessions: sessionmaker[Session],
    requisitos: Requisitos,
    *,
    key: str,
    tema: str | None,
    config: ServiceConfig,
    now: datetime,
) -> Registered:
    """Admit a checked submission once per ``key``: a second call returns the first consulta.

    The submission is recorded as an inbound ``Message`` (unique per mailbox and Message-ID) in
    the admission's transaction, as the bot records a flow: the database makes a double submit
    (or two processes) create one consulta. Raises ValueError when the requisitos are incomplete.
    """
    try:
        with sessions.begin() as session:
            earlier = _previous(session, key)
            if earlier is not None:
                return _registered(earlier, config, already=True)
            message = Message(
                direction=Direction.INBOUND,
                channel=Channel.FORMULARIO,
                kind=MessageKind.CITIZEN,
                mailbox=MAILBOX,
                message_id=key,
                subject=SUBJECT,
                body_text=requisitos.question,
                received_at=now,
            )
            session.add(message)
            session.flush()
            consulta = admit_structured(
                session, requisitos, channel=Channel.FORMULARIO, config=config, now=now, tema=tema
            )
            message.consulta_id = consulta.id
            pending = (Outbox.consulta_id == consulta.id) & (Outbox.status == OutboxStatus.PENDING)
            queued = tuple(session.scalars(select(Outbox.id).where(pending)))
            registered = dataclasses.replace(_registered(consulta, config, already=False), outbox_ids=queued)
    except IntegrityError:
        # A concurrent submission with the same key won the unique constraint: report its consulta.
        found = previous(sessions, key, config=config)
        if found is None:
            raise
        return found
    logger.info("consulta %s registered from the web form", registered.number)
    return registered


def document_matches(consulta: Consulta, given: str) -> bool:
    """Tell whether ``given`` is the consulta's identity document number."""
    return same_document(consulta.document_type, consulta.document_number, given)


def _answer_text(session: Session, consulta: Consulta) -> str | None:
    """The text of the answer mail the citizen was sent (as they read it)."""
    body = session.scalar(
        select(Message.body_text)
        .join(Outbox, Outbox.message_pk == Message.id)
        .where(Outbox.consulta_id == consulta.id, Outbox.template == ANSWER_TEMPLATE)
        .order_by(Outbox.id.desc())
        .limit(1)
    )
    return body.strip() if body else None


def status(
    sessions: sessionmaker[Session], number: str, document_number: str, *, config: ServiceConfig
) -> Status | None:
    """The status of consulta ``number`` when ``document_number`` is its document; else None.

    An unknown number and a wrong document give the same None: numbers cannot be probed.
    """
    with sessions() as session:
        consulta = session.scalar(select(Consulta).where(Consulta.number == number.strip().upper()))
        if consulta is None or not document_matches(consulta, document_number):
            return None
        organo: str | None = None
        if consulta.organo_code:
            row = session.get(Organo, consulta.organo_code)
            organo = row.name if row is not None else consulta.organo_code
        elif consulta.status in (ConsultaStatus.ASIGNADA, ConsultaStatus.RESPONDIDA):
            organo = OGDAU_NAME
        if consulta.status == ConsultaStatus.RESPONDIDA and consulta.answered_by:
            answerer = session.get(Organo, consulta.answered_by)
            organo = answerer.name if answerer is not None else OGDAU_NAME
        answered = consulta.status == ConsultaStatus.RESPONDIDA
        return Status(
            number=consulta.number or number,
            status=consulta.status,
            presented_on=consulta.presented_on,
            due_on=consulta.due_on,
            organo=organo,
            answered_on=consulta.answered_on if answered else None,
            answer=_answer_text(session, consulta) if answered else None,
            explanation=_explanation(consulta, config) if consulta.presented_on else None,
        )

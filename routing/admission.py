"""Admission of a citizen's consulta (directive 5.1, 5.3, 5.4.1): requisitos, number, confirmation.

Owns what happens to a citizen's mail once the pipeline knows it is neither automatic nor a Red
reply: a new consulta (admitted and numbered, or held in ``subsanacion`` with a mail asking for
exactly what is missing), the citizen's reply completing a subsanación, and later mails on a
consulta (attached, never a new consulta). Also the bot's door (``admit_structured``) and the
expiry of abandoned subsanaciones. Use cases: they add and flush; the caller commits.

Decisions (README "Admission"):
- The day a mail counts as presented comes from its arrival instant (``now``, when our mailbox
  received it), never from its Date header, which the sender's client writes and can forge.
- The number's year is the year of ``presented_on`` (a mail on 31 December after 16:30 is
  presented, and numbered, in the new year).
- A mail is taken as being about an existing consulta when it replies to one of our mails
  (In-Reply-To/References), or when its subject cites a consulta number or a ``[REF-<id>]``
  subsanación reference and it comes from the address that consulta answers to.
- A later mail on an ``asignada`` consulta is sent on to the assigned Red (the routed mail again,
  with the citizen's new text as a note) so the answer takes it into account; on a closed consulta
  (respondida/archivada) it is attached and OGDAU is told: a consulta is never reopened
  automatically.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import inspect, or_, select
from sqlalchemy.orm import Session

from consultas import events
from consultas.bulkwrite import add_row
from consultas.calendar import explain_deadline
from consultas.context import ServiceConfig
from consultas.ids import ensure_id, is_new, preassign_id
from consultas.lookup import sent_message_pks
from consultas.mailer import Envelope
from consultas.mime import ParsedMail
from consultas.models import Channel, Consulta, ConsultaStatus, Message, MessageKind, new_row, set_columns
from consultas.numbering import find_numbers, next_number
from consultas.outbox import enqueue_mail
from consultas.requisitos import (
    Extraction,
    Requisitos,
    check_requisitos,
    extract_requisitos,
    merge_requisitos,
)
from consultas.validators import (
    normalize_email,
    normalize_phone,
    validate_document,
    validate_full_name,
    validate_ruc,
)
from routing.assignment import assign_new_consulta, enqueue_routed_mail, tell_ogdau
from routing.outcome import InboundOutcome, OutcomeKind

logger = logging.getLogger(__name__)

RECIBIDA_TEMPLATE = "consulta_recibida"
SUBSANACION_TEMPLATE = "subsanacion_requisitos"
ARCHIVADA_TEMPLATE = "consulta_archivada"
#: How much of a citizen's follow-up the note to the Red or OGDAU quotes.
FOLLOW_UP_EXCERPT_CHARS = 4000

#: The subsanación reference in our subject ("[REF-123]"): matches a reply whose client drops
#: In-Reply-To and References (some webmails and phone clients do).
REFERENCE_RE = re.compile(r"\bREF-(\d{1,12})\b", re.IGNORECASE)

#: Spanish names of the requisitos (5.3), as the subsanación mail lists them.
REQUISITO_LABELS: dict[str, str] = {
    "full_name": "Nombres y apellidos completos",
    "document_number": "Número de documento de identidad (DNI, carné de extranjería o pasaporte)",
    "entity_ruc": "RUC de la entidad a la que representa",
    "email": "Correo electrónico de contacto",
    "phone": "Número de teléfono de contacto",
    "question": "Descripción concreta de su consulta",
}
_CARRIED_INVALID_REASON = "El dato indicado anteriormente no es válido; indíquelo nuevamente."

# Column sizes of consulta (models): values are cut to fit rather than fail the whole mail.
_MAX_LEN = {"full_name": 200, "entity_name": 300, "email": 320, "document_number": 20, "phone": 20}


# --- entry point for a citizen's mail -------------------------------------------------------------


def handle_citizen_mail(
    session: Session, mail: ParsedMail, message: Message, *, config: ServiceConfig, now: datetime
) -> InboundOutcome:
    """Admit, hold for subsanación, or attach ``mail`` (stored as ``message``) to its consulta.

    Caller owns the transaction.
    """
    message.kind = MessageKind.CITIZEN
    consulta = find_related_consulta(session, mail, config=config)
    if consulta is None:
        consulta = _new_consulta(session, mail, message, now=now)
        extraction = extract_requisitos(
            mail.text, sender=mail.sender, sender_name=mail.sender_name, subject=mail.subject
        )
        _apply_requisitos(consulta, extraction)
        forwarder = _forwarder(consulta, extraction, mail)
        # Not flushed: on PostgreSQL a batch of new consultas is written at the batch's end.
        events.record(session, "received", now=now, consulta=consulta, message=message, channel="email")
        kind = _admit_or_ask(
            session, consulta, extraction, mail, message, config=config, now=now, cc=forwarder
        )
    else:
        message.consulta_id = consulta.id
        session.flush()
        kind = _on_existing(session, consulta, mail, message, config=config, now=now)
    return InboundOutcome(
        OutcomeKind(kind),
        mail.message_id,
        message_pk=ensure_id(session, message),
        consulta_id=ensure_id(session, consulta),
        consulta_number=consulta.number,
    )


def find_related_consulta(session: Session, mail: ParsedMail, *, config: ServiceConfig) -> Consulta | None:
    """The consulta ``mail`` is about: a reply to our mail, or a cited number/reference from its citizen."""
    ours = sent_message_pks(session, mail.thread_ids, sender=config.identity.address)
    if ours:  # a reply in one of our threads
        consulta = session.scalar(
            select(Consulta)
            .join(Message, Message.consulta_id == Consulta.id)
            .where(Message.id.in_(sorted(ours.values())))
            .order_by(Message.id.desc())
            .limit(1)
        )
        if consulta is not None:
            return consulta
    sender = mail.sender.lower()
    numbers, refs = find_numbers(mail.subject), REFERENCE_RE.findall(mail.subject)
    if not sender or not (numbers or refs):
        return None
    # A number or reference alone is guessable: only the consulta's own citizen may use it.
    same_citizen = or_(Consulta.reply_address == sender, Consulta.email == sender)
    for number in numbers:
        consulta = session.scalar(select(Consulta).where(Consulta.number == number, same_citizen))
        if consulta is not None:
            return consulta
    for ref in refs:
        consulta = session.scalar(select(Consulta).where(Consulta.id == int(ref), same_citizen))
        if consulta is not None:
            return consulta
    return None


def _new_consulta(session: Session, mail: ParsedMail, message: Message, *, now: datetime) -> Consulta:
    consulta = new_row(
        Consulta,
        channel=Channel.EMAIL,
        status=ConsultaStatus.SUBSANACION,
        subject=mail.subject[:998] or None,
        reply_address=mail.sender or None,
        origin_message_id=mail.message_id,
        received_at=now,
        created_at=now,
        updated_at=now,
        missing=[],
        invalid=[],
    )
    if inspect(message).transient:  # held back by the batch's copy_block: so is its consulta
        preassign_id(session, consulta)
        add_row(session, consulta, joins_session=True)
        set_columns(message, consulta_id=consulta.id)
    else:
        session.add(consulta)
    message.consulta = consulta  # written with it (consulta first); its ``messages`` now holds the mail
    return consulta


def _forwarder(consulta: Consulta, extraction: Extraction, mail: ParsedMail) -> tuple[str, ...]:
    """For a consulta an office forwarded: make the citizen's address its own, return the office's.

    The citizen's mails (and our replies) then go to and come from the citizen; the office that
    forwarded it gets the confirmation in Cc.
    """
    citizen = consulta.email
    if not extraction.forwarded or not citizen or not mail.sender or citizen == mail.sender:
        return ()
    set_columns(consulta, reply_address=citizen)
    return (mail.sender,)


def _admit_or_ask(
    session: Session,
    consulta: Consulta,
    extraction: Extraction,
    mail: ParsedMail,
    message: Message,
    *,
    config: ServiceConfig,
    now: datetime,
    cc: tuple[str, ...] = (),
) -> str:
    """Admit a complete consulta, or queue the subsanación mail; returns the outcome kind."""
    if extraction.complete:
        admit(
            session,
            consulta,
            config=config,
            now=now,
            in_reply_to=mail.message_id,
            references=[*mail.references, mail.message_id],
            cc_extra=cc,
        )
        return "admitted"
    ask_subsanacion(session, consulta, extraction, mail, message, config=config, now=now)
    return "subsanacion"


def _on_existing(
    session: Session,
    consulta: Consulta,
    mail: ParsedMail,
    message: Message,
    *,
    config: ServiceConfig,
    now: datetime,
) -> str:
    if consulta.status == ConsultaStatus.SUBSANACION:
        new = extract_requisitos(
            mail.text, sender=mail.sender, sender_name=mail.sender_name, subject=mail.subject
        )
        old = requisitos_of(consulta)
        reply = new.requisitos
        if old.question:
            # The reply's own words ("adjunto mi DNI...") must not replace the consulta itself.
            reply = _replace(reply, question=None)
        if old.full_name:
            # The From display name of a reply is a weaker source than the name already given.
            reply = _replace(reply, full_name=None) if new.requisitos.full_name == mail.sender_name else reply
        merged = check_requisitos(merge_requisitos(old, reply))
        carried = tuple(k for k in merged.missing if k in (consulta.invalid or []))
        merged = Extraction(
            merged.requisitos,
            missing=tuple(k for k in merged.missing if k not in carried),
            invalid=(*merged.invalid, *carried),
        )
        _apply_requisitos(consulta, merged)
        consulta.updated_at = now
        session.flush()
        events.record(
            session,
            "subsanacion_reply",
            now=now,
            consulta=consulta,
            message=message,
            missing=list(merged.missing),
            invalid=list(merged.invalid),
        )
        return _admit_or_ask(session, consulta, merged, mail, message, config=config, now=now)

    events.record(
        session,
        "citizen_follow_up",
        now=now,
        consulta=consulta,
        message=message,
        status=consulta.status.value,
    )
    excerpt = mail.text.strip()[:FOLLOW_UP_EXCERPT_CHARS]
    if consulta.status == ConsultaStatus.ASIGNADA:
        enqueue_routed_mail(
            session,
            consulta,
            config=config,
            now=now,
            nota=f"Nuevo mensaje del usuario sobre esta consulta (asunto: {mail.subject}):\n\n{excerpt}",
        )
    elif consulta.status in (ConsultaStatus.RESPONDIDA, ConsultaStatus.ARCHIVADA):
        tell_ogdau(
            session,
            config=config,
            now=now,
            key=f"seguimiento-cerrada:{message.id}",
            titulo="Nuevo mensaje del ciudadano sobre una consulta cerrada",
            detalle=(
                f"La consulta está {consulta.status.value}; no se reabre automáticamente. "
                "Evalúe si corresponde registrar una nueva consulta o responder al ciudadano."
            ),
            consulta=consulta,
            remitente=mail.sender,
            asunto=mail.subject,
            mensaje=excerpt,
        )
    logger.info(
        "mail %s attached to consulta %s as a follow-up", mail.message_id, consulta.number or consulta.id
    )
    return "follow_up"


# --- admission ------------------------------------------------------------------------------------


def admit(
    session: Session,
    consulta: Consulta,
    *,
    config: ServiceConfig,
    now: datetime,
    in_reply_to: str | None = None,
    references: list[str] | tuple[str, ...] = (),
    tema: str | None = None,
    cc_extra: tuple[str, ...] = (),
) -> Consulta:
    """Number ``consulta``, queue its confirmation mail and route it (5.1, 5.2, 5.6).

    ``presented_on`` comes from ``received_at`` (the arrival instant), never a mail's Date header.
    ``cc_extra``: more addresses for the confirmation (the office that forwarded the consulta).
    """
    presented_on = config.calendar.presented_on(consulta.received_at)
    due_on = config.calendar.due_on(presented_on, config.due_working_days)
    set_columns(
        consulta,
        number=next_number(session, prefix=config.number_prefix, year=presented_on.year),
        status=ConsultaStatus.ADMITIDA,
        admitted_at=now,
        presented_on=presented_on,
        due_on=due_on,
        missing=[],
        invalid=[],
        updated_at=now,
    )
    # No flush here: the number is written with the next write (the confirmation), same transaction.
    events.record(
        session,
        "admitted",
        now=now,
        consulta=consulta,
        number=consulta.number,
        presented_on=presented_on.isoformat(),
        due_on=due_on.isoformat(),
    )
    to = consulta.reply_address or consulta.email
    if to:
        cc = [consulta.email] if consulta.email and consulta.email != to else []
        cc += [address for address in cc_extra if address not in (to, *cc)]
        fresh = is_new(consulta)  # a consulta created in this transaction has no confirmation yet
        enqueue_mail(
            session,
            template=RECIBIDA_TEMPLATE,
            context={"consulta": recibida_context(consulta, config)},
            envelope=Envelope(to=[to], cc=cc, in_reply_to=in_reply_to, references=tuple(references)),
            identity=config.identity,
            idempotency_key=f"recibida:{ensure_id(session, consulta)}",
            now=now,
            consulta=consulta,
            automatic=True,
            auto_reply_cap=config.auto_reply_cap,
            new_key=fresh,
        )
    logger.info("consulta %s admitted", consulta.number)
    assign_new_consulta(session, consulta, config=config, now=now, text=consulta.question or "", tema=tema)
    return consulta


def admit_structured(
    session: Session,
    requisitos: Requisitos,
    *,
    channel: Channel,
    config: ServiceConfig,
    now: datetime,
    tema: str | None = None,
    telegram_chat_id: int | None = None,
) -> Consulta:
    """Admit a consulta whose requisitos came as fields (the Telegram form, staff registration).

    Same validation as mail (``check_requisitos``); raises ``ValueError`` naming each missing or
    invalid requisito, in Spanish, when it cannot be admitted. The confirmation goes by mail to the
    citizen's address.
    """
    extraction = check_requisitos(requisitos)
    if not extraction.complete:
        problems = [f"Falta: {REQUISITO_LABELS[k]}" for k in extraction.missing]
        problems += [f"No es válido: {REQUISITO_LABELS[k]}" for k in extraction.invalid]
        raise ValueError("; ".join(problems))
    consulta = Consulta(
        channel=channel,
        status=ConsultaStatus.SUBSANACION,
        subject=(extraction.requisitos.question or "")[:120] or None,
        reply_address=extraction.requisitos.email,
        telegram_chat_id=telegram_chat_id,
        received_at=now,
        created_at=now,
        updated_at=now,
        missing=[],
        invalid=[],
    )
    _apply_requisitos(consulta, extraction)
    session.add(consulta)
    session.flush()
    events.record(session, "received", now=now, consulta=consulta, channel=channel.value)
    return admit(session, consulta, config=config, now=now, tema=tema)


# --- subsanación ----------------------------------------------------------------------------------


def ask_subsanacion(
    session: Session,
    consulta: Consulta,
    extraction: Extraction,
    mail: ParsedMail,
    message: Message,
    *,
    config: ServiceConfig,
    now: datetime,
) -> None:
    """Queue the mail naming exactly the missing and invalid requisitos (5.3); idempotent per message."""
    consulta.status = ConsultaStatus.SUBSANACION
    consulta.updated_at = now
    fresh = is_new(consulta)  # a consulta created in this transaction has no subsanación mail yet
    consulta_id, message_pk = ensure_id(session, consulta), ensure_id(session, message)
    events.record(
        session,
        "subsanacion_requested",
        now=now,
        consulta=consulta,
        message=message,
        missing=list(extraction.missing),
        invalid=list(extraction.invalid),
    )
    to = consulta.reply_address or mail.sender
    if not to:
        return
    enqueue_mail(
        session,
        template=SUBSANACION_TEMPLATE,
        context=subsanacion_context(consulta, extraction, config),
        envelope=Envelope(
            to=[to], in_reply_to=mail.message_id, references=(*mail.references, mail.message_id)
        ),
        identity=config.identity,
        idempotency_key=f"subsanacion:{consulta_id}:{message_pk}",
        now=now,
        consulta=consulta,
        automatic=True,
        auto_reply_cap=config.auto_reply_cap,
        new_key=fresh,
    )
    logger.info("consulta ref %s: subsanación requested", consulta.id)


def expire_subsanaciones(session: Session, *, config: ServiceConfig, now: datetime) -> int:
    """Archive consultas left in subsanación for the configured working days; returns how many.

    The clock starts at the last subsanación activity (``updated_at``). Archived consultas keep no
    number and are never counted (architecture "Statuses"); the citizen is told by mail.
    """
    days = config.subsanacion_expiry_working_days
    today = now.astimezone(config.calendar.tz).date()
    # Calendar days >= working days: a cheap SQL pre-filter, then the exact working-day count.
    candidates = session.scalars(
        select(Consulta).where(
            Consulta.status == ConsultaStatus.SUBSANACION, Consulta.updated_at <= now - timedelta(days=days)
        )
    ).all()
    archived = 0
    for consulta in candidates:
        since = consulta.updated_at.astimezone(config.calendar.tz).date()
        if config.calendar.working_days_between(since, today) < days:
            continue
        consulta.status = ConsultaStatus.ARCHIVADA
        consulta.closed_at = now
        consulta.updated_at = now
        session.flush()
        events.record(session, "archived", now=now, consulta=consulta, working_days=days)
        to = consulta.reply_address or consulta.email
        if to:
            enqueue_mail(
                session,
                template=ARCHIVADA_TEMPLATE,
                context={"referencia": reference(consulta), "asunto": consulta.subject or "", "dias": days},
                envelope=Envelope(to=[to], in_reply_to=consulta.origin_message_id),
                identity=config.identity,
                idempotency_key=f"archivada:{consulta.id}",
                now=now,
                consulta=consulta,
                automatic=True,
                auto_reply_cap=config.auto_reply_cap,
            )
        archived += 1
    return archived


# --- template contexts (JSON values only) ------------------------------------------------------------


def reference(consulta: Consulta) -> str:
    """The subsanación reference cited in our subjects (``REF-123``) before a consulta has a number."""
    return f"REF-{consulta.id}"


def recibida_context(consulta: Consulta, config: ServiceConfig) -> dict[str, Any]:
    """Context of ``consulta_recibida``: the number, dates (ISO) and a summary of the requisitos."""
    return {
        "number": consulta.number,
        "full_name": consulta.full_name,
        "document_type": consulta.document_type,
        "document_number": consulta.document_number,
        "entity_name": consulta.entity_name,
        "entity_ruc": consulta.entity_ruc,
        "email": consulta.email,
        "phone": consulta.phone,
        "question": consulta.question,
        "presented_on": consulta.presented_on.isoformat() if consulta.presented_on else None,
        "due_on": consulta.due_on.isoformat() if consulta.due_on else None,
        "due_working_days": config.due_working_days,
        "deadline": explain_deadline(
            config.calendar, consulta.received_at, config.due_working_days
        ).as_json(),
        "status_url": config.status_url(consulta.number) if consulta.number else None,
    }


def subsanacion_context(consulta: Consulta, extraction: Extraction, config: ServiceConfig) -> dict[str, Any]:
    """Context of ``subsanacion_requisitos``: what is missing and what is wrong, with the reason."""
    req = extraction.requisitos
    return {
        "referencia": reference(consulta),
        "asunto": consulta.subject or "",
        "nombre": req.full_name if "full_name" not in extraction.invalid else None,
        "faltantes": [REQUISITO_LABELS[k] for k in extraction.missing],
        "invalidos": [
            {"campo": REQUISITO_LABELS[k], "motivo": invalid_reason(k, req)} for k in extraction.invalid
        ],
        "dias": config.subsanacion_expiry_working_days,
    }


def invalid_reason(key: str, req: Requisitos) -> str:
    """The Spanish reason a requisito is invalid (the validator's own message)."""
    try:
        if key == "full_name" and req.full_name:
            validate_full_name(req.full_name)
        elif key == "document_number" and req.document_number:
            validate_document(req.document_type, req.document_number)
        elif key == "entity_ruc" and req.entity_ruc:
            validate_ruc(req.entity_ruc)
        elif key == "email" and req.email:
            normalize_email(req.email)
        elif key == "phone" and req.phone:
            normalize_phone(req.phone)
        else:
            return _CARRIED_INVALID_REASON
    except ValueError as exc:
        return str(exc)
    return _CARRIED_INVALID_REASON


# --- requisitos <-> consulta columns ------------------------------------------------------------------


def requisitos_of(consulta: Consulta) -> Requisitos:
    """The requisitos already on ``consulta`` (valid values only: invalid ones are never stored)."""
    return Requisitos(
        full_name=consulta.full_name,
        document_type=consulta.document_type,
        document_number=consulta.document_number,
        entity_name=consulta.entity_name,
        entity_ruc=consulta.entity_ruc,
        email=consulta.email,
        phone=consulta.phone,
        question=consulta.question,
        represents_entity=consulta.represents_entity,
    )


def _apply_requisitos(consulta: Consulta, extraction: Extraction) -> None:
    """Store the valid requisitos on the consulta; invalid ones are named in ``invalid``, not kept."""
    req = extraction.requisitos
    bad = set(extraction.invalid)

    def keep(key: str, value: str | None) -> str | None:
        if value is None or key in bad:
            return None
        limit = _MAX_LEN.get(key)
        return value[:limit] if limit else value

    document_number = keep("document_number", req.document_number)
    set_columns(
        consulta,
        full_name=keep("full_name", req.full_name),
        document_number=document_number,
        document_type=req.document_type if document_number else None,
        entity_name=keep("entity_name", req.entity_name),
        entity_ruc=keep("entity_ruc", req.entity_ruc),
        email=keep("email", req.email),
        phone=keep("phone", req.phone),
        question=keep("question", req.question),
        represents_entity=req.represents_entity,
        missing=list(extraction.missing),
        invalid=list(extraction.invalid),
    )


def _replace(req: Requisitos, **changes: Any) -> Requisitos:
    from dataclasses import replace

    return replace(req, **changes)

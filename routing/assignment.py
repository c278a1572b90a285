"""Route a newly numbered consulta: classify it (5.2) and mail it to its Red member or to OGDAU.

Owns ``assign_new_consulta`` (called by admission right after numbering), the routed mail
(``derivacion_red``, also used by derivation) and what happens when a routed mail bounces.
Replies to the routed mail are ``routing.replies``' job.

Deadline (5.6.2: ten working days "desde el siguiente día hábil que el órgano recibe la
consulta"): routing is automatic and immediate, so the órgano receives the consulta the day it
counts as presented (a mail after 16:30 is presented, and so received, the next working day).
``due_on`` is therefore ``calendar.due_on(presented_on)``, as admission already set it; it is
only computed here when admission left it empty. ``assigned_at`` is the instant of the routing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, inspect, select
from sqlalchemy.orm import Session

from consultas import events
from consultas.context import ServiceConfig
from consultas.ids import ensure_id
from consultas.mailer import Envelope, OutgoingAttachment
from consultas.models import (
    Attachment,
    Consulta,
    ConsultaStatus,
    ConsultaTipo,
    Direction,
    Message,
    Organo,
    Outbox,
    RedMember,
    set_columns,
)
from consultas.outbox import enqueue_mail
from routing.classify import Classification, classify
from routing.corrections import current_model
from routing.red_registry import active_organo_names, current_members, organo_topics
from routing.reply_address import make_reply_address

logger = logging.getLogger(__name__)

#: The mail that hands a consulta to a Red member (or OGDAU).
ROUTED_TEMPLATE = "derivacion_red"
#: Notices to a Red member about their reply (unknown command, unknown code...).
RED_NOTICE_TEMPLATE = "aviso_red"
#: Acknowledgement to the Red member whose answer went to the citizen.
RED_ACK_TEMPLATE = "respuesta_red_recibida"
#: Mails whose replies are Red replies (matched by In-Reply-To/References in routing.replies).
#: ``recordatorio_red`` is the workers' deadline reminder to the Red.
ROUTING_TEMPLATES = frozenset({ROUTED_TEMPLATE, RED_NOTICE_TEMPLATE, RED_ACK_TEMPLATE, "recordatorio_red"})
#: The generic alert to OGDAU (owned by the shared core).
OGDAU_ALERT_TEMPLATE = "aviso_ogdau"
#: ``answered_by`` / event actor when OGDAU handles the consulta.
OGDAU = "OGDAU"


def assign_new_consulta(
    session: Session,
    consulta: Consulta,
    *,
    config: ServiceConfig,
    now: datetime,
    text: str,
    tema: str | None = None,
) -> None:
    """Classify ``consulta``, mark it assigned and queue the routed mail. Flushes, never commits."""
    topics = organo_topics(session)
    if topics:
        model = None if tema else current_model(session)
        result = classify(consulta.subject or "", text, topics, tema=tema, model=model)
    else:
        result = Classification("administrativa", None, "registro de la Red vacío: OGDAU clasifica")
    # Only routing (assign_new_consulta, derivation) sets assigned_at: none yet means no routed mail yet.
    first_routing = consulta.assigned_at is None
    presented_on = consulta.presented_on or config.calendar.presented_on(consulta.received_at)
    set_columns(
        consulta,
        tipo=ConsultaTipo(result.type),
        organo_code=result.organo,
        classification_reason=result.reason,
        status=ConsultaStatus.ASIGNADA,
        assigned_at=now,
        updated_at=now,
        presented_on=presented_on,
        due_on=consulta.due_on or config.calendar.due_on(presented_on, config.due_working_days),
    )
    # No flush here: the routed mail's first query writes these changes (same transaction).
    events.record(
        session,
        "classified",
        now=now,
        consulta=consulta,
        type=result.type,
        organo=result.organo,
        reason=result.reason,
        tema=tema,
    )
    enqueue_routed_mail(session, consulta, config=config, now=now, routed_before=0 if first_routing else None)


def enqueue_routed_mail(
    session: Session,
    consulta: Consulta,
    *,
    config: ServiceConfig,
    now: datetime,
    derivada_por: str | None = None,
    nota: str | None = None,
    routed_before: int | None = None,
) -> Outbox | None:
    """Queue the routed mail to the consulta's organo (titular + alterno) or to OGDAU.

    ``routed_before``: how many routed mails the consulta already has, when the caller
    knows it (0 at the first routing); None counts them.
    """
    recipients = routed_recipients(session, consulta.organo_code, now=now)
    to, cc = recipients if recipients is not None else ([config.ogdau_email], [])
    organo = session.get(Organo, consulta.organo_code) if consulta.organo_code else None
    sin_red = consulta.organo_code is not None and recipients is None
    target = consulta.organo_code if recipients is not None else OGDAU
    previous = routed_before
    if previous is None:
        previous = session.scalar(
            select(func.count(Outbox.id)).where(
                Outbox.consulta_id == consulta.id, Outbox.template == ROUTED_TEMPLATE
            )
        )
    attachments = citizen_attachments(session, consulta)
    number = consulta.number or ""
    context = {
        "numero": number,
        "titulo": _routed_title(consulta, sin_red=sin_red, derivada=derivada_por is not None),
        "asunto": consulta.subject or "",
        "tipo": consulta.tipo.value if consulta.tipo else "administrativa",
        "organo_code": consulta.organo_code,
        "organo_nombre": organo.name if organo else None,
        "para_ogdau": target == OGDAU,
        "sin_red": sin_red,
        "motivo": consulta.classification_reason or "",
        "requisitos": requisitos_context(consulta),
        "pregunta": consulta.question or "",
        "canal": consulta.channel.value,
        "presented_on": consulta.presented_on.isoformat() if consulta.presented_on else None,
        "due_on": consulta.due_on.isoformat() if consulta.due_on else None,
        "adjuntos": [a.filename for a in attachments],
        "organos": active_organo_names(session),
        "derivada_por": derivada_por,
        "nota": nota,
    }
    row = enqueue_mail(
        session,
        template=ROUTED_TEMPLATE,
        context=context,
        envelope=Envelope(
            to=to,
            cc=cc,
            reply_to=make_reply_address(config.mailbox, number, config.secret_key),
            attachments=attachments,
        ),
        identity=config.identity,
        idempotency_key=f"derivacion:{ensure_id(session, consulta)}:{target}:{previous or 0}",
        now=now,
        consulta=consulta,
        automatic=False,
        new_key=routed_before == 0,  # any row with this key would be a routed mail, counted in it
    )
    events.record(
        session,
        "routed",
        now=now,
        consulta=consulta,
        organo=target,
        to=list(to),
        cc=list(cc),
        sin_red=sin_red,
        derivada_por=derivada_por,
    )
    logger.info("consulta %s routed to %s", number, target)
    return row


def _routed_title(consulta: Consulta, *, sin_red: bool, derivada: bool) -> str:
    if sin_red:
        return "Consulta técnica sin representante disponible"
    if consulta.organo_code is not None:
        return "Consulta técnica derivada" if derivada else "Consulta técnica asignada"
    if derivada:
        return "Consulta devuelta a OGDAU"
    if (consulta.classification_reason or "").startswith("sin coincidencia"):
        return "Consulta por clasificar"
    return "Consulta administrativa asignada"


def routed_recipients(
    session: Session, organo_code: str | None, *, now: datetime | None = None
) -> tuple[list[str], list[str]] | None:
    """(To, Cc) of the routed mail to an organo; None when it has nobody reachable (OGDAU then).

    Titular in To with the alterno in Cc; the alterno alone when the titular is recorded absent,
    away at ``now`` (an out-of-office reply, ``routing.absence``) or their address bounced (and
    the reverse: such an alterno is left out).
    """
    if organo_code is None:
        return None
    titular, alterno = current_members(session, organo_code)
    usable = [m for m in (titular, alterno) if m is not None and _reachable(m, now)]
    if not usable:
        return None
    return [usable[0].email], [m.email for m in usable[1:]]


def _reachable(member: RedMember, now: datetime | None) -> bool:
    away = now is not None and member.away_until is not None and member.away_until > now
    return not member.absent and member.bounced_at is None and not away


def citizen_attachments(session: Session, consulta: Consulta) -> list[OutgoingAttachment]:
    """The attachments (with content) of the consulta's first inbound message."""
    in_session = _first_inbound_in_session(consulta)
    if in_session is not None:
        return outgoing_attachments(in_session.attachments)
    first = (
        select(func.min(Message.id))
        .where(Message.consulta_id == consulta.id, Message.direction == Direction.INBOUND)
        .scalar_subquery()
    )
    rows = session.scalars(select(Attachment).where(Attachment.message_pk == first).order_by(Attachment.id))
    return outgoing_attachments(rows)


def _first_inbound_in_session(consulta: Consulta) -> Message | None:
    """The first inbound message from the consulta's already loaded ``messages``, else None.

    A consulta created in this session (a citizen's new mail) has its collection loaded with its
    message, written or not. A collection is loaded in id order (after an autoflush) and messages
    only join it as they arrive, so its first inbound message is the consulta's first.
    """
    loaded = inspect(consulta).dict.get("messages")
    if not loaded:
        return None
    first = next((m for m in loaded if m.direction == Direction.INBOUND), None)
    return first if first is not None and "attachments" in inspect(first).dict else None


def outgoing_attachments(rows: Sequence[Attachment] | Any) -> list[OutgoingAttachment]:
    """Attachment rows as mail attachments; rows over the size cap (no content) are left out."""
    return [
        OutgoingAttachment(filename=row.filename, content_type=row.content_type, content=row.content)
        for row in rows
        if row.content is not None
    ]


def requisitos_context(consulta: Consulta) -> dict[str, Any]:
    """The citizen's requisitos (5.3) as JSON for the routed mail."""
    return {
        "nombre": consulta.full_name or "",
        "documento": f"{consulta.document_type or ''} {consulta.document_number or ''}".strip(),
        "entidad": consulta.entity_name if consulta.represents_entity or consulta.entity_name else None,
        "ruc": consulta.entity_ruc,
        "email": consulta.email or "",
        "telefono": consulta.phone or "",
    }


def tell_ogdau(
    session: Session,
    *,
    config: ServiceConfig,
    now: datetime,
    key: str,
    titulo: str,
    detalle: str,
    consulta: Consulta | None = None,
    remitente: str | None = None,
    asunto: str | None = None,
    mensaje: str | None = None,
) -> Outbox | None:
    """Queue the generic alert to OGDAU (``aviso_ogdau``)."""
    return enqueue_mail(
        session,
        template=OGDAU_ALERT_TEMPLATE,
        context={
            "titulo": titulo,
            "numero": consulta.number if consulta else None,
            "detalle": detalle,
            "remitente": remitente,
            "asunto": asunto,
            "mensaje": mensaje,
        },
        envelope=Envelope(to=[config.ogdau_email]),
        identity=config.identity,
        idempotency_key=key,
        now=now,
        consulta=consulta,
        automatic=False,
    )


def on_routed_mail_bounce(
    session: Session, original: Message, *, config: ServiceConfig, now: datetime
) -> bool:
    """Handle a bounce of one of our mails; False when it was not a routed mail to the Red.

    A routed mail to a titular bounced: the titular's ``bounced_at`` is set, the consulta is
    routed again to the alterno alone, and OGDAU is told (the registry needs a new address).
    """
    row = session.scalar(select(Outbox).where(Outbox.message_pk == original.id))
    if row is None or row.template != ROUTED_TEMPLATE or original.consulta_id is None:
        return False
    consulta = session.get(Consulta, original.consulta_id)
    if consulta is None:
        return False
    bounced_to = (original.recipients or [""])[0].lower()
    titular, _ = current_members(session, consulta.organo_code) if consulta.organo_code else (None, None)
    # The worker may already have set bounced_at on an SMTP refusal: the re-send still happens here.
    if titular is None or titular.email.lower() != bounced_to:
        # The alterno's (or OGDAU's) own address bounced: nobody left to re-send to automatically.
        events.record(session, "routed_mail_bounced", now=now, consulta=consulta, recipient=bounced_to)
        tell_ogdau(
            session,
            config=config,
            now=now,
            key=f"rebote-derivacion:{original.id}",
            titulo="Rebotó el correo de derivación",
            detalle=f"El correo de derivación a {bounced_to} fue rechazado. Atienda o derive la consulta.",
            consulta=consulta,
        )
        return True
    titular.bounced_at = titular.bounced_at or now
    session.flush()
    events.record(
        session, "routed_mail_bounced", now=now, consulta=consulta, recipient=bounced_to, resent=True
    )
    if consulta.status == ConsultaStatus.ASIGNADA:
        enqueue_routed_mail(session, consulta, config=config, now=now)
    tell_ogdau(
        session,
        config=config,
        now=now,
        key=f"rebote-derivacion:{original.id}",
        titulo="Rebotó el correo del titular de la Red",
        detalle=(
            f"El correo de derivación al titular de {consulta.organo_code} ({bounced_to}) fue "
            "rechazado; se reenvió al alterno. Actualice el registro de la Red."
        ),
        consulta=consulta,
    )
    return True

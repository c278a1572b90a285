"""Send the answer to the citizen (mail, and Telegram when that was the channel) and close the consulta.

Owns the ``respuesta_ciudadano`` mail and the closing of a consulta (on time or late). Deciding
that a reply is an answer is ``routing.replies``' job.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from consultas import events
from consultas.context import ServiceConfig
from consultas.mailer import Envelope, OutgoingAttachment
from consultas.models import Channel, Consulta, ConsultaStatus, Organo
from consultas.outbox import enqueue_mail, enqueue_telegram

#: The mail that carries the answer to the citizen.
ANSWER_TEMPLATE = "respuesta_ciudadano"
#: Who answers administrativa consultas (5.4.1), as the citizen reads it.
OGDAU_NAME = "Oficina de Gestión Documental y Atención al Usuario"


def answering_organo_name(session: Session, answered_by: str) -> str:
    """The name of the organo that answered, as shown to the citizen (never a person)."""
    organo = session.get(Organo, answered_by)
    return organo.name if organo is not None else OGDAU_NAME


def send_answer(
    session: Session,
    consulta: Consulta,
    *,
    body: str,
    attachments: Sequence[OutgoingAttachment],
    answered_by: str,
    config: ServiceConfig,
    now: datetime,
) -> None:
    """Queue the answer to the citizen and close ``consulta`` (status respondida). Flushes only.

    The mail threads to the citizen's first mail, carries the number in the subject and names the
    organo (not the Red member's address); Reply-To is the plain mailbox, so a citizen's reply
    comes back to intake as a follow-up. Idempotent per consulta (outbox keys).
    """
    number = consulta.number or ""
    organo_nombre = answering_organo_name(session, answered_by)
    context = {
        "numero": number,
        "nombre": consulta.full_name or "",
        "asunto": consulta.subject or "",
        "pregunta": consulta.question or "",
        "respuesta": body,
        "organo_nombre": organo_nombre,
        "presented_on": consulta.presented_on.isoformat() if consulta.presented_on else None,
        "adjuntos": [a.filename for a in attachments],
    }
    address = consulta.email or consulta.reply_address
    if address:
        origin = consulta.origin_message_id
        enqueue_mail(
            session,
            template=ANSWER_TEMPLATE,
            context=context,
            envelope=Envelope(
                to=[address],
                reply_to=config.mailbox,
                in_reply_to=origin,
                references=[origin] if origin else (),
                attachments=attachments,
            ),
            identity=config.identity,
            idempotency_key=f"respuesta:{consulta.id}",
            now=now,
            consulta=consulta,
            automatic=False,
        )
    if consulta.channel == Channel.TELEGRAM and consulta.telegram_chat_id is not None:
        enqueue_telegram(
            session,
            chat_id=consulta.telegram_chat_id,
            text=(
                f"Respuesta a su consulta {number}\n"
                f"Atendida por: {organo_nombre}\n\n{body}\n\n"
                "También le enviamos esta respuesta por correo electrónico."
            ),
            idempotency_key=f"respuesta-telegram:{consulta.id}",
            now=now,
            consulta=consulta,
            documents=attachments,
        )
    answered_on = config.calendar.local(now).date()
    consulta.status = ConsultaStatus.RESPONDIDA
    consulta.answered_at = now
    consulta.answered_on = answered_on
    consulta.answered_by = answered_by
    consulta.closed_at = now
    consulta.updated_at = now
    session.flush()
    on_time = answered_on <= consulta.due_on if consulta.due_on is not None else None
    events.record(
        session,
        "answered",
        now=now,
        consulta=consulta,
        actor=answered_by,
        answered_on=answered_on.isoformat(),
        due_on=consulta.due_on.isoformat() if consulta.due_on else None,
        on_time=on_time,
        attachments=len(attachments),
    )

"""Out-of-office hand-over: a Red member's automatic reply to a routed mail.

An automatic reply (RFC 3834 ``Auto-Submitted: auto-replied``, Exchange's "Respuesta automática")
from the titular to a consulta's routed mail sends the consulta at once to the alterno alone and
marks the titular away (``RedMember.away_until``) until they answer a consulta again or
``CONSULTAS_ABSENCE_DAYS`` pass; routing leaves an away member out meanwhile
(``routing.assignment.routed_recipients``). From the alterno: they are marked away and OGDAU is
told; when nobody of the órgano is left, the consulta goes to OGDAU. Each step is in the trail.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from consultas import events
from consultas.context import ServiceConfig
from consultas.mime import ParsedMail
from consultas.models import Consulta, ConsultaStatus, Message, Outbox, RedMember, RedRole
from consultas.numbering import find_numbers
from routing.assignment import ROUTING_TEMPLATES, enqueue_routed_mail, tell_ogdau
from routing.red_registry import current_members

logger = logging.getLogger(__name__)


def _routed_consulta(session: Session, mail: ParsedMail, original: Message | None) -> Consulta | None:
    """The consulta whose mail to the Red the auto-reply answers (thread first, then the subject)."""
    if original is not None and original.consulta_id is not None:
        template = session.scalar(select(Outbox.template).where(Outbox.message_pk == original.id))
        if template in ROUTING_TEMPLATES:
            return session.get(Consulta, original.consulta_id)
        return None
    # Exchange's out-of-office reply carries no In-Reply-To; its subject keeps ours, number included.
    for number in find_numbers(mail.subject):
        consulta = session.scalar(select(Consulta).where(Consulta.number == number))
        if consulta is not None:
            return consulta
    return None


def on_auto_reply(
    session: Session,
    mail: ParsedMail,
    message: Message,
    original: Message | None,
    *,
    config: ServiceConfig,
    now: datetime,
) -> bool:
    """Hand the consulta over when ``mail`` is a Red member's out-of-office reply; False otherwise.

    Caller owns the transaction; ``message`` is the stored automatic mail (linked here).
    """
    consulta = _routed_consulta(session, mail, original)
    if consulta is None or consulta.organo_code is None:
        return False
    titular, alterno = current_members(session, consulta.organo_code)
    sender = mail.sender.lower()
    member = next((m for m in (titular, alterno) if m is not None and m.email.lower() == sender), None)
    if member is None:
        return False
    message.consulta_id = consulta.id
    already_away = member.away_until is not None and member.away_until > now
    if not already_away:
        member.away_since = now
    member.away_until = now + timedelta(days=config.absence_days)
    session.flush()
    events.record(
        session,
        "red_absent",
        now=now,
        consulta=consulta,
        message=message,
        actor=sender,
        organo=consulta.organo_code,
        role=member.role.value,
        until=member.away_until.isoformat(),
    )
    logger.info(
        "consulta %s: %s of %s is out of the office until %s",
        consulta.number,
        member.role.value,
        consulta.organo_code,
        member.away_until.date(),
    )
    others = [m for m in (titular, alterno) if m is not None and m is not member]
    nobody_left = not any(
        not m.absent and m.bounced_at is None and not (m.away_until is not None and m.away_until > now)
        for m in others
    )
    if consulta.status == ConsultaStatus.ASIGNADA and (member.role == RedRole.TITULAR or nobody_left):
        enqueue_routed_mail(session, consulta, config=config, now=now)  # away members are left out
        events.record(
            session, "rerouted_absence", now=now, consulta=consulta, actor=sender, role=member.role.value
        )
    if member.role == RedRole.ALTERNO or nobody_left:
        detalle = (
            f"El {member.role.value} de {consulta.organo_code} ({member.email}) respondió con un mensaje "
            f"automático de ausencia; queda marcado ausente hasta el {member.away_until.date().isoformat()} "
            "o hasta que responda una consulta."
        )
        if nobody_left:
            detalle += " No queda otro representante disponible del órgano: la consulta se derivó a OGDAU."
        tell_ogdau(
            session,
            config=config,
            now=now,
            key=f"ausencia:{message.id}",
            titulo="Representante de la Red fuera de la oficina",
            detalle=detalle,
            consulta=consulta,
            remitente=sender,
            asunto=mail.subject,
        )
    return True


def clear_absence(session: Session, email: str, *, now: datetime, consulta: Consulta | None = None) -> None:
    """A Red member who answers a consulta is back: routing includes them again."""
    wanted = email.strip().lower()
    result = session.execute(
        update(RedMember)
        .where(RedMember.email == wanted, RedMember.valid_to.is_(None), RedMember.away_until.is_not(None))
        .values(away_since=None, away_until=None)
        .execution_options(synchronize_session="fetch")
    )
    if getattr(result, "rowcount", 0):
        events.record(session, "red_back", now=now, consulta=consulta, actor=wanted)


def away_members(session: Session, *, now: datetime) -> list[RedMember]:
    """Current Red members away at ``now`` (the daily digest lists them)."""
    return list(
        session.scalars(
            select(RedMember)
            .where(RedMember.valid_to.is_(None), RedMember.away_until > now)
            .order_by(RedMember.organo_code, RedMember.role)
        )
    )

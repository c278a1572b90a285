"""OGDAU's daily digest (directive 6.2): what is pending, due soon, overdue, stuck or failed.

``build_digest`` reads the database with GROUP BY queries and bounded lists (no Python loop over
all consultas) and returns a JSON-able ``Digest``; ``render_digest`` formats it with the
``resumen_diario`` templates; ``queue_digest`` writes the mail to OGDAU (one per date);
``send_daily_digest`` is the actor the scheduler enqueues at 08:30 on working days.

Figures, as of the start of day ``on`` (Lima):
- pendientes: open consultas (admitida, asignada) per órgano (administrativa = OGDAU);
- por vencer: open, due from ``on`` up to 2 working days after it (inclusive);
- vencidas: open, ``due_on`` before ``on``; listed with the working days late
  (``working_days_between(due_on, on)``);
- en subsanación: consultas waiting for the citizen to complete requisitos;
- en cuarentena: inbound mails of kind ``quarantined`` received in the last ``quarantine_days``
  days (reprocessing a mail changes its kind, so what is listed is still unresolved);
- envíos fallidos: outbox rows with status ``failed`` (until retried with ``consultas outbox``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from consultas.context import ServiceConfig
from consultas.mailer import Envelope, RenderedMail, render
from consultas.models import (
    OPEN_STATUSES,
    Consulta,
    ConsultaStatus,
    Direction,
    Message,
    MessageKind,
    Organo,
    Outbox,
    OutboxStatus,
)
from consultas.outbox import enqueue_mail
from consultas.watchdog import digest_incidents
from routing.absence import away_members
from workers.broker import actor
from workers.reminders import FOLLOWUP_QUEUE, serialize_runs
from workers.runtime import get_runtime

logger = logging.getLogger(__name__)

DIGEST_TEMPLATE = "resumen_diario"
#: "Por vencer" = due within this many working days.
DUE_SOON_WORKING_DAYS = 2
#: Quarantined mails of the last N days are listed.
DEFAULT_QUARANTINE_DAYS = 7
#: Longest list of each kind in the mail; the totals are always exact.
DEFAULT_LIST_LIMIT = 100
#: Row label of consultas without órgano (administrativa: OGDAU answers them).
OGDAU_LABEL = "OGDAU"
OGDAU_NAME = "Oficina de Gestión Documental y Atención al Usuario"


@dataclass(frozen=True)
class OrganoLine:
    organo: str
    nombre: str
    pendientes: int
    por_vencer: int
    vencidas: int


@dataclass(frozen=True)
class OverdueItem:
    numero: str
    organo: str
    due_on: str
    dias_atraso: int


@dataclass(frozen=True)
class SubsanacionItem:
    consulta_id: int
    received_at: str
    asunto: str
    faltantes: list[str]


@dataclass(frozen=True)
class QuarantinedItem:
    message_pk: int
    received_at: str
    remitente: str
    asunto: str
    error: str


@dataclass(frozen=True)
class FailedItem:
    outbox_id: int
    plantilla: str
    destinatario: str
    failed_at: str
    error: str


@dataclass(frozen=True)
class Digest:
    """The digest of one working day; every field is JSON-able (dates as ISO strings)."""

    fecha: str
    por_organo: list[OrganoLine]
    total_pendientes: int
    total_por_vencer: int
    total_vencidas: int
    vencidas: list[OverdueItem]
    total_subsanacion: int
    subsanacion: list[SubsanacionItem]
    total_cuarentena: int
    cuarentena: list[QuarantinedItem]
    total_fallidos: int
    fallidos: list[FailedItem]
    dias_cuarentena: int = DEFAULT_QUARANTINE_DAYS
    limite_listas: int = DEFAULT_LIST_LIMIT
    # The watchdog's incidents (open, or closed since the previous day) and the Red members away.
    incidentes: list[dict[str, Any]] = field(default_factory=list)
    ausentes: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_digest(
    session: Session,
    *,
    config: ServiceConfig,
    on: date,
    quarantine_days: int = DEFAULT_QUARANTINE_DAYS,
    list_limit: int = DEFAULT_LIST_LIMIT,
) -> Digest:
    """Compute the digest for Lima day ``on`` (figures as of that day's start)."""
    calendar = config.calendar
    soon_end = calendar.add_working_days(on, DUE_SOON_WORKING_DAYS)
    organo_key = func.coalesce(Consulta.organo_code, OGDAU_LABEL)
    open_filter = Consulta.status.in_(OPEN_STATUSES)

    per_organo = session.execute(
        select(
            organo_key,
            func.count(),
            func.sum(case(((Consulta.due_on >= on) & (Consulta.due_on <= soon_end), 1), else_=0)),
            func.sum(case((Consulta.due_on < on, 1), else_=0)),
        )
        .where(open_filter)
        .group_by(organo_key)
        .order_by(organo_key)
    ).all()
    names: dict[str, str] = {code: name for code, name in session.execute(select(Organo.code, Organo.name))}
    lines = [
        OrganoLine(
            organo=code,
            nombre=names.get(code, OGDAU_NAME if code == OGDAU_LABEL else code),
            pendientes=int(total),
            por_vencer=int(soon or 0),
            vencidas=int(late or 0),
        )
        for code, total, soon, late in per_organo
    ]

    overdue_rows = session.execute(
        select(Consulta.number, organo_key, Consulta.due_on)
        .where(open_filter, Consulta.due_on < on)
        .order_by(Consulta.due_on, Consulta.number)
        .limit(list_limit)
    ).all()
    late_by_due: dict[date, int] = {}
    vencidas = []
    for number, organo, due_on in overdue_rows:
        assert due_on is not None  # selected by due_on < on
        if due_on not in late_by_due:
            late_by_due[due_on] = calendar.working_days_between(due_on, on)
        vencidas.append(OverdueItem(number or "", organo, due_on.isoformat(), late_by_due[due_on]))

    subsanacion_filter = Consulta.status == ConsultaStatus.SUBSANACION
    total_subsanacion = session.scalar(select(func.count()).where(subsanacion_filter)) or 0
    subsanacion = [
        SubsanacionItem(
            consulta_id, received_at.isoformat(), subject or "", list(missing or []) + list(invalid or [])
        )
        for consulta_id, received_at, subject, missing, invalid in session.execute(
            select(Consulta.id, Consulta.received_at, Consulta.subject, Consulta.missing, Consulta.invalid)
            .where(subsanacion_filter)
            .order_by(Consulta.received_at)
            .limit(list_limit)
        )
    ]

    day_start = datetime.combine(on, time(0), tzinfo=calendar.tz).astimezone(UTC)  # Lima midnight
    quarantine_filter = (
        (Message.kind == MessageKind.QUARANTINED)
        & (Message.direction == Direction.INBOUND)
        & (Message.received_at >= day_start - timedelta(days=quarantine_days))
    )
    total_cuarentena = session.scalar(select(func.count(Message.id)).where(quarantine_filter)) or 0
    cuarentena = [
        QuarantinedItem(pk, received_at.isoformat(), sender or "", subject or "", (error or "")[:300])
        for pk, received_at, sender, subject, error in session.execute(
            select(Message.id, Message.received_at, Message.sender, Message.subject, Message.error)
            .where(quarantine_filter)
            .order_by(Message.received_at.desc())
            .limit(list_limit)
        )
    ]

    failed_filter = Outbox.status == OutboxStatus.FAILED
    total_fallidos = session.scalar(select(func.count(Outbox.id)).where(failed_filter)) or 0
    fallidos = [
        FailedItem(
            pk, template, recipient or "", failed_at.isoformat() if failed_at else "", (error or "")[:300]
        )
        for pk, template, recipient, failed_at, error in session.execute(
            select(Outbox.id, Outbox.template, Outbox.primary_recipient, Outbox.failed_at, Outbox.last_error)
            .where(failed_filter)
            .order_by(Outbox.id.desc())
            .limit(list_limit)
        )
    ]

    return Digest(
        fecha=on.isoformat(),
        por_organo=lines,
        total_pendientes=sum(line.pendientes for line in lines),
        total_por_vencer=sum(line.por_vencer for line in lines),
        total_vencidas=sum(line.vencidas for line in lines),
        vencidas=vencidas,
        total_subsanacion=int(total_subsanacion),
        subsanacion=subsanacion,
        total_cuarentena=int(total_cuarentena),
        cuarentena=cuarentena,
        total_fallidos=int(total_fallidos),
        fallidos=fallidos,
        dias_cuarentena=quarantine_days,
        limite_listas=list_limit,
        incidentes=digest_incidents(session, since=day_start - timedelta(days=1)),
        ausentes=[
            {"organo": m.organo_code, "rol": m.role.value, "email": m.email, "hasta": until.isoformat()}
            for m in away_members(session, now=day_start)
            if (until := m.away_until) is not None
        ],
    )


def render_digest(digest: Digest) -> RenderedMail:
    """The digest mail's subject, text and HTML."""
    return render(DIGEST_TEMPLATE, digest.as_dict())


def digest_key(on: date) -> str:
    """One digest per Lima date."""
    return f"resumen_diario:{on.isoformat()}"


def digest_already_queued(session: Session, on: date) -> bool:
    return session.scalar(select(Outbox.id).where(Outbox.idempotency_key == digest_key(on))) is not None


def queue_digest(session: Session, digest: Digest, *, config: ServiceConfig, now: datetime) -> Outbox | None:
    """Write the digest mail to OGDAU into the outbox (idempotent per date). Flushes, never commits."""
    return enqueue_mail(
        session,
        template=DIGEST_TEMPLATE,
        context=digest.as_dict(),
        envelope=Envelope(to=[config.ogdau_email]),
        identity=config.identity,
        idempotency_key=digest_key(date.fromisoformat(digest.fecha)),
        now=now,
        automatic=False,
    )


def send_digest_for(session: Session, *, config: ServiceConfig, on: date, now: datetime) -> bool:
    """Build and queue the digest of ``on`` unless it is a non-working day or already queued."""
    if not config.calendar.is_working_day(on):
        return False
    if now < config.calendar.office_start(on):
        return False  # "at the start of the working day": never before 08:30 Lima
    serialize_runs(session, digest_key(on))  # a concurrent run of the same date queues it first
    if digest_already_queued(session, on):
        return False
    queue_digest(session, build_digest(session, config=config, on=on), config=config, now=now)
    return True


@actor(
    queue_name=FOLLOWUP_QUEUE,
    max_retries=3,
    min_backoff_ms=30_000,
    max_backoff_ms=5 * 60_000,
    time_limit_ms=5 * 60_000,
    max_age_ms=12 * 3_600_000,
)
def send_daily_digest(date_iso: str) -> None:
    """Queue OGDAU's digest of ``date_iso`` (a Lima date) once, on working days only."""
    runtime = get_runtime()
    on = date.fromisoformat(date_iso)
    with runtime.sessions.begin() as session:
        queued = send_digest_for(session, config=runtime.config, on=on, now=runtime.clock.now())
    logger.info("daily digest %s: %s", date_iso, "queued" if queued else "nothing to do")

"""Reminders before the deadline and escalation after it (directive 5.6, 6.1, 6.2).

``plan_followup`` (pure) decides which mails a run owes; ``run_reminders`` (use case) selects the
candidates with two indexed range queries on ``(status, due_on)``, drops those already queued
(idempotency keys) and writes the mails to the outbox; ``run_reminders_job`` is the actor the
scheduler enqueues every 15 minutes.

Rules:
- Reminder (``recordatorio_red``) at each ``ServiceConfig.reminder_offsets`` working days before
  ``due_on`` (default 3 and 0 = the due day), to the órgano's current titular with the alterno in
  Cc, or to OGDAU for administrativa consultas (or an órgano without a reachable Red member). A
  reminder missed (scheduler down all day) is sent at the next run before the due date: the
  owed offset is the smallest configured one >= the working days left, keyed by that offset.
- Escalation (``escalamiento``) on every working day after ``due_on`` while the consulta stays
  open: to titular and alterno with OGDAU in Cc (OGDAU alone when there is no Red member).
- Only on working days in office hours (Lima 08:30-16:30): a run outside them sends nothing.
- Keys ``reminder:{id}:{due_on}:{offset}`` and ``escalation:{id}:{due_on}:{day}``: a second run
  queues nothing twice; a new due date (derivation) starts a new series.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from consultas.calendar import WorkingCalendar
from consultas.context import ServiceConfig
from consultas.mailer import Envelope
from consultas.models import OPEN_STATUSES, Consulta, Message, Organo, Outbox
from consultas.outbox import enqueue_mail
from routing.assignment import routed_recipients
from routing.reply_address import make_reply_address
from workers.broker import actor
from workers.runtime import get_runtime

logger = logging.getLogger(__name__)

REMINDER_TEMPLATE = "recordatorio_red"
ESCALATION_TEMPLATE = "escalamiento"
#: The routed mail the reminders thread under (owned by routing.assignment).
ROUTED_TEMPLATE = "derivacion_red"
#: Queue of the periodic follow-up actors (reminders, digest, quarterly report).
FOLLOWUP_QUEUE = "followup"
#: Keys checked per query (well under every backend's bound-parameter limit).
KEY_CHUNK = 500


class FollowupKind(StrEnum):
    RECORDATORIO = "recordatorio"
    ESCALAMIENTO = "escalamiento"


@dataclass(frozen=True)
class Candidate:
    """An open consulta with a due date, as selected from the database."""

    consulta_id: int
    due_on: date


@dataclass(frozen=True)
class PlannedMail:
    """One reminder or escalation a run owes; ``days`` = working days left (reminder) or late."""

    consulta_id: int
    kind: FollowupKind
    due_on: date
    days: int
    idempotency_key: str


@dataclass(frozen=True)
class ReminderRun:
    """What one run did: mails queued by kind, or why it did nothing."""

    recordatorios: int = 0
    escalamientos: int = 0
    skipped: str | None = None  # "fuera de horario" / "día no hábil"

    def as_dict(self) -> dict[str, Any]:
        return {
            "recordatorios": self.recordatorios,
            "escalamientos": self.escalamientos,
            "skipped": self.skipped,
        }


def reminder_window(calendar: WorkingCalendar, today: date, offsets: Sequence[int]) -> tuple[date, date]:
    """The due dates that owe a reminder today: from ``today`` to ``max(offsets)`` working days on."""
    return today, calendar.add_working_days(today, max(offsets, default=0))


def owed_offset(days_left: int, offsets: Sequence[int]) -> int | None:
    """The reminder owed with ``days_left`` working days to go: the smallest offset >= it."""
    eligible = [o for o in offsets if o >= days_left]
    return min(eligible) if eligible else None


def plan_followup(
    candidates: Iterable[Candidate], *, today: date, calendar: WorkingCalendar, offsets: Sequence[int]
) -> list[PlannedMail]:
    """Every reminder or escalation owed on working day ``today`` (already-sent ones included)."""
    planned: list[PlannedMail] = []
    for candidate in candidates:
        due = candidate.due_on
        if due < today:
            late = calendar.working_days_between(due, today)
            key = f"escalation:{candidate.consulta_id}:{due.isoformat()}:{today.isoformat()}"
            planned.append(PlannedMail(candidate.consulta_id, FollowupKind.ESCALAMIENTO, due, late, key))
            continue
        left = calendar.working_days_between(today, due)
        offset = owed_offset(left, offsets)
        if offset is None:
            continue
        key = f"reminder:{candidate.consulta_id}:{due.isoformat()}:{offset}"
        planned.append(PlannedMail(candidate.consulta_id, FollowupKind.RECORDATORIO, due, left, key))
    return planned


def select_candidates(session: Session, *, window_end: date) -> list[Candidate]:
    """Open consultas due on or before ``window_end`` (index range scan on (status, due_on))."""
    rows = session.execute(
        select(Consulta.id, Consulta.due_on)
        .where(Consulta.status.in_(OPEN_STATUSES), Consulta.due_on <= window_end)
        .order_by(Consulta.due_on, Consulta.id)
    )
    return [Candidate(consulta_id, due_on) for consulta_id, due_on in rows if due_on is not None]


def existing_keys(session: Session, keys: Sequence[str]) -> set[str]:
    """The subset of ``keys`` already in the outbox (unique index on idempotency_key)."""
    found: set[str] = set()
    for start in range(0, len(keys), KEY_CHUNK):
        chunk = keys[start : start + KEY_CHUNK]
        found.update(session.scalars(select(Outbox.idempotency_key).where(Outbox.idempotency_key.in_(chunk))))
    return found


def run_reminders(session: Session, *, config: ServiceConfig, now: datetime) -> ReminderRun:
    """Queue the reminders and escalations owed at ``now``. Flushes, never commits; idempotent."""
    calendar = config.calendar
    local = calendar.local(now)
    if not calendar.is_working_day(local.date()):
        return ReminderRun(skipped="día no hábil")
    if not calendar.is_office_hours(now):
        return ReminderRun(skipped="fuera de horario")
    today = local.date()
    serialize_runs(session, "run_reminders")
    plan_per_execution(session)
    _, window_end = reminder_window(calendar, today, config.reminder_offsets)
    planned = plan_followup(
        select_candidates(session, window_end=window_end),
        today=today,
        calendar=calendar,
        offsets=config.reminder_offsets,
    )
    done = existing_keys(session, [p.idempotency_key for p in planned])
    owed = [p for p in planned if p.idempotency_key not in done]
    counts = {FollowupKind.RECORDATORIO: 0, FollowupKind.ESCALAMIENTO: 0}
    owed_ids = [p.consulta_id for p in owed]
    threads = _routed_message_ids(session, owed_ids)
    consultas = _load_consultas(session, owed_ids)
    # Held here for the whole run: the session's identity map is weak, so an Organo row nobody
    # references is dropped after each mail and ``session.get`` would SELECT it again.
    codes = {c.organo_code for c in consultas.values() if c.organo_code}
    organos = {o.code: o for o in session.scalars(select(Organo).where(Organo.code.in_(codes)))}
    reds: dict[str | None, RedRecipients] = {}  # routed_recipients per órgano, once per run
    for mail in owed:
        consulta = consultas.get(mail.consulta_id)
        if consulta is None:  # pragma: no cover - selected in this transaction
            continue
        _queue(
            session,
            consulta,
            mail,
            config=config,
            now=now,
            thread=threads.get(consulta.id),
            reds=reds,
            organos=organos,
        )
        counts[mail.kind] += 1
    if owed:
        logger.info(
            "follow-up queued %d reminder(s), %d escalation(s)",
            counts[FollowupKind.RECORDATORIO],
            counts[FollowupKind.ESCALAMIENTO],
        )
    return ReminderRun(
        recordatorios=counts[FollowupKind.RECORDATORIO], escalamientos=counts[FollowupKind.ESCALAMIENTO]
    )


def serialize_runs(session: Session, job: str) -> None:
    """On PostgreSQL, wait until no other transaction is running ``job``; hold it to our commit.

    Two runs of one job at once (a doubled scheduler tick taken by two worker threads) both found
    its idempotency keys free, both inserted them, and the loser died on the unique index, to be
    retried by Dramatiq minutes later. Behind a transaction-level advisory lock the second run's
    next statements see the first one's committed mails, so it queues nothing. SQLite needs no
    lock: ``BEGIN IMMEDIATE`` already queues writers.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": zlib.crc32(job.encode())})


def plan_per_execution(session: Session) -> None:
    """On PostgreSQL, plan every statement of the caller's transaction for its actual parameters.

    A run inserts thousands of outbox and message rows into tables that may have been (nearly)
    empty when this connection cached its plans: psycopg prepares a statement after 5 executions,
    PostgreSQL then keeps a generic plan, and the foreign-key checks keep theirs for the life of
    the connection. Planned on an empty table, all of them are sequential scans (the existing-key
    lookups, the per-mail idempotency SELECT, the outbox -> message FK check), so each mail scanned
    every row queued before it and later runs on the same connection scanned the whole outbox per
    key chunk (issue 5: 235 s first run, 8 s re-runs on 1M consultas). A custom plan sizes the
    table as it is now. ``SET LOCAL`` ends with the caller's transaction.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


def _load_consultas(session: Session, consulta_ids: Sequence[int]) -> dict[int, Consulta]:
    """The owed consultas by id, loaded in chunks (not one ``session.get`` per mail)."""
    found: dict[int, Consulta] = {}
    for start in range(0, len(consulta_ids), KEY_CHUNK):
        chunk = consulta_ids[start : start + KEY_CHUNK]
        found.update((c.id, c) for c in session.scalars(select(Consulta).where(Consulta.id.in_(chunk))))
    return found


def _routed_message_ids(session: Session, consulta_ids: Sequence[int]) -> dict[int, str]:
    """The Message-ID of each consulta's latest routed mail, to thread reminders under it."""
    found: dict[int, str] = {}
    for start in range(0, len(consulta_ids), KEY_CHUNK):
        chunk = consulta_ids[start : start + KEY_CHUNK]
        rows = session.execute(
            select(Outbox.consulta_id, Message.message_id)
            .join(Message, Message.id == Outbox.message_pk)
            .where(Outbox.consulta_id.in_(chunk), Outbox.template == ROUTED_TEMPLATE)
            .order_by(Outbox.id)
        )
        for consulta_id, message_id in rows:
            if consulta_id is not None:
                found[consulta_id] = message_id  # later rows win: the latest routing
    return found


#: (To, Cc) of an órgano's Red, or None when nobody is reachable (see ``routed_recipients``).
RedRecipients = tuple[list[str], list[str]] | None


def _recipients(
    session: Session,
    consulta: Consulta,
    *,
    config: ServiceConfig,
    kind: FollowupKind,
    reds: dict[str | None, RedRecipients],
    now: datetime,
) -> tuple[list[str], list[str], bool]:
    """(To, Cc, to_ogdau) for a follow-up mail of ``kind``; ``reds`` caches the Red per órgano.

    A member away on an out-of-office reply (``routing.absence``) is left out, as in routing.
    """
    if consulta.organo_code not in reds:
        reds[consulta.organo_code] = routed_recipients(session, consulta.organo_code, now=now)
    red = reds[consulta.organo_code]
    if red is None:
        return [config.ogdau_email], [], True
    to, cc = red
    if kind == FollowupKind.ESCALAMIENTO:
        return [*to, *cc], [config.ogdau_email], False
    return list(to), list(cc), False  # copies: the cached lists are shared by every mail


def followup_context(
    consulta: Consulta, organo: Organo | None, mail: PlannedMail, *, para_ogdau: bool
) -> dict[str, Any]:
    """The JSON context of ``recordatorio_red`` / ``escalamiento``."""
    return {
        "numero": consulta.number or "",
        "asunto": consulta.subject or "",
        "organo_code": consulta.organo_code,
        "organo_nombre": organo.name if organo else None,
        "para_ogdau": para_ogdau,
        "presented_on": consulta.presented_on.isoformat() if consulta.presented_on else None,
        "due_on": mail.due_on.isoformat(),
        "dias_restantes": mail.days if mail.kind == FollowupKind.RECORDATORIO else 0,
        "dias_atraso": mail.days if mail.kind == FollowupKind.ESCALAMIENTO else 0,
    }


def _queue(
    session: Session,
    consulta: Consulta,
    mail: PlannedMail,
    *,
    config: ServiceConfig,
    now: datetime,
    thread: str | None,
    reds: dict[str | None, RedRecipients],
    organos: dict[str, Organo],
) -> None:
    to, cc, para_ogdau = _recipients(session, consulta, config=config, kind=mail.kind, reds=reds, now=now)
    organo = organos.get(consulta.organo_code) if consulta.organo_code else None
    template = REMINDER_TEMPLATE if mail.kind == FollowupKind.RECORDATORIO else ESCALATION_TEMPLATE
    # Replies to a reminder carry the signed reply address, so an answer sent from it is matched
    # to its consulta exactly like a reply to the routed mail.
    reply_to = (
        make_reply_address(config.mailbox, consulta.number, config.secret_key) if consulta.number else None
    )
    enqueue_mail(
        session,
        template=template,
        context=followup_context(consulta, organo, mail, para_ogdau=para_ogdau),
        envelope=Envelope(
            to=to,
            cc=cc,
            reply_to=reply_to,
            in_reply_to=thread,
            references=(thread,) if thread else (),
        ),
        identity=config.identity,
        idempotency_key=mail.idempotency_key,
        now=now,
        consulta=consulta,
        automatic=False,  # internal staff mail: not subject to the per-citizen auto-reply cap
    )


@actor(
    queue_name=FOLLOWUP_QUEUE,
    max_retries=2,  # the next 15-minute run catches up anyway
    min_backoff_ms=10_000,
    max_backoff_ms=60_000,
    time_limit_ms=5 * 60_000,
    max_age_ms=15 * 60_000,  # an older message is superseded by the next scheduled run
)
def run_reminders_job() -> None:
    """Queue the reminders and escalations owed now (idempotent; nothing outside office hours)."""
    runtime = get_runtime()
    with runtime.sessions.begin() as session:
        result = run_reminders(session, config=runtime.config, now=runtime.clock.now())
    # The outbox sweep (every 10 s) sends what was queued; no hint needed.
    logger.info("reminders run: %s", result.as_dict())

"""Helpers for the follow-up tests (reminders, digest, report): the Red's addresses, a config, consultas.

``Row`` is a consulta as the tests' naive computations see it; ``DIGEST_HAND_MADE`` and
``REPORT_HAND_MADE`` are the hand-counted data sets of the digest and the quarterly report.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from consultas.calendar import WorkingCalendar
from consultas.clock import FixedClock
from consultas.context import ServiceConfig
from consultas.models import Channel, Consulta, ConsultaStatus, Organo
from consultas.outbox import MailIdentity

LIMA = ZoneInfo("America/Lima")
TITULAR = "titular.dgpp@mef.gob.pe"
ALTERNO = "alterno.dgpp@mef.gob.pe"
OGDAU = "ogdau@mef.gob.pe"


def make_config(offsets: tuple[int, ...] = (3, 0)) -> ServiceConfig:
    return ServiceConfig(
        identity=MailIdentity(address="consultas@mef.gob.pe", name="Consultas MEF"),
        calendar=WorkingCalendar(),
        number_prefix="CONS",
        due_working_days=10,
        ogdau_email=OGDAU,
        ogsu_email="ogsu@mef.gob.pe",
        secret_key=b"s" * 32,
        auto_reply_cap=5,
        max_attachment_bytes=10_000_000,
        reminder_offsets=offsets,
        subsanacion_expiry_working_days=10,
    )


def lima(d: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(d, time(hour, minute), tzinfo=LIMA)


def fire_times(job_id: str, start: datetime, end: datetime) -> list[str]:
    """When the scheduler's job ``job_id`` fires from ``start`` to ``end``, as Lima weekday and time."""
    from workers.scheduler import build_scheduler

    scheduler = build_scheduler(WorkingCalendar(), FixedClock(start), background=True)
    trigger = scheduler.get_job(job_id).trigger
    times: list[str] = []
    previous, moment = None, start
    while True:
        nxt = trigger.get_next_fire_time(previous, moment)
        if nxt is None or nxt > end:
            return times
        times.append(nxt.astimezone(LIMA).strftime("%a %H:%M"))
        previous, moment = nxt, nxt + timedelta(seconds=1)


ON = date(2025, 8, 18)  # a Monday
ORGANOS = ("DGPP", "DGETP", "DGTP", "OGA")
ORGANOS_UPDATED_AT = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Row:
    """A consulta as the tests' naive computations see it."""

    organo: str | None
    status: ConsultaStatus
    presented_on: date | None
    due_on: date | None
    answered_on: date | None


def add_organos(session: Session) -> None:
    for code in ORGANOS:
        session.add(Organo(code=code, name=f"Órgano {code}", topics=[], updated_at=ORGANOS_UPDATED_AT))
    session.flush()


def insert(session: Session, rows: list[Row]) -> None:
    for index, row in enumerate(rows, start=1):
        numbered = row.status not in (ConsultaStatus.SUBSANACION, ConsultaStatus.ARCHIVADA)
        received = lima(row.presented_on or ON, 10).astimezone(UTC)
        session.add(
            Consulta(
                number=f"CONS-{(row.presented_on or ON).year}-{index:06d}" if numbered else None,
                channel=Channel.EMAIL,
                status=row.status,
                organo_code=row.organo,
                subject=f"Consulta {index}",
                missing=["documento"] if row.status == ConsultaStatus.SUBSANACION else [],
                received_at=received,
                presented_on=row.presented_on if numbered else None,
                due_on=row.due_on if numbered else None,
                answered_on=row.answered_on,
                created_at=received,
                updated_at=received,
            )
        )
    session.flush()


def naive_working_days(calendar: WorkingCalendar, start: date, end: date) -> int:
    """Working days d with start < d <= end, counted one day at a time."""
    return sum(calendar.is_working_day(start + timedelta(days=k)) for k in range(1, (end - start).days + 1))


def random_rows(seed: int, count: int, calendar: WorkingCalendar, today: date) -> list[Row]:
    """Consultas over a year before ``today``: answered (on time or late), open, in subsanación."""
    rng = random.Random(seed)
    rows: list[Row] = []
    for _ in range(count):
        presented = calendar.add_working_days(today - timedelta(days=rng.randint(0, 300)), 0)
        while not calendar.is_working_day(presented):
            presented += timedelta(days=1)
        due = calendar.due_on(presented)
        organo = rng.choice([*ORGANOS, None])
        kind = rng.random()
        if kind < 0.07:
            rows.append(Row(organo, ConsultaStatus.SUBSANACION, None, None, None))
        elif kind < 0.6:
            answered = calendar.add_working_days(presented, rng.randint(0, 16))
            rows.append(Row(organo, ConsultaStatus.RESPONDIDA, presented, due, answered))
        else:
            status = ConsultaStatus.ADMITIDA if rng.random() < 0.1 else ConsultaStatus.ASIGNADA
            rows.append(Row(organo, status, presented, due, None))
    return rows


#: The digest's data set, counted by hand for Monday ``ON``.
DIGEST_HAND_MADE = [
    Row("DGPP", ConsultaStatus.ASIGNADA, date(2025, 8, 1), date(2025, 8, 18), None),  # due today
    Row("DGPP", ConsultaStatus.ASIGNADA, date(2025, 8, 5), date(2025, 8, 20), None),  # due in 2 working days
    Row("DGPP", ConsultaStatus.ASIGNADA, date(2025, 8, 7), date(2025, 8, 21), None),  # in 3: not "soon"
    Row("DGPP", ConsultaStatus.ASIGNADA, date(2025, 7, 25), date(2025, 8, 13), None),  # 3 late: 14, 15, 18
    Row(None, ConsultaStatus.ADMITIDA, date(2025, 8, 1), date(2025, 8, 15), None),  # 1 late: 18
    Row("DGETP", ConsultaStatus.RESPONDIDA, date(2025, 7, 15), date(2025, 8, 1), date(2025, 7, 30)),
    Row(None, ConsultaStatus.SUBSANACION, None, None, None),
    Row(None, ConsultaStatus.ARCHIVADA, None, None, None),
]


R, A = ConsultaStatus.RESPONDIDA, ConsultaStatus.ASIGNADA
#: The quarterly report's data set, counted by hand for the third quarter of 2025.
REPORT_HAND_MADE = [
    Row("DGPP", R, date(2025, 7, 25), date(2025, 8, 13), date(2025, 8, 13)),  # on time, 10 working days
    Row("DGPP", R, date(2025, 8, 1), date(2025, 8, 18), date(2025, 8, 20)),  # late, 12 working days
    Row("DGPP", R, date(2025, 6, 20), date(2025, 7, 4), date(2025, 7, 2)),  # Q2's, answered in Q3: 8 days
    Row("DGETP", A, date(2025, 9, 22), date(2025, 10, 6), None),  # pending, not yet due at the close
    Row("DGETP", A, date(2025, 9, 1), date(2025, 9, 15), None),  # pending and overdue
    Row("DGETP", R, date(2025, 9, 25), date(2025, 10, 10), date(2025, 10, 3)),  # answered after the close
    Row(None, A, date(2025, 10, 1), date(2025, 10, 15), None),  # next quarter: nowhere
    Row(None, R, date(2025, 7, 10), date(2025, 7, 24), date(2025, 7, 10)),  # OGDAU, same day: 0 days
    Row(None, ConsultaStatus.SUBSANACION, None, None, None),
]

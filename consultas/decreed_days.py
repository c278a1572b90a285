"""Decreed non-working days kept in the database (``consultas calendar``), beside the settings' list.

Owns adding and removing a decreed day and what follows: every open consulta whose deadline the
day falls within gets its ``due_on`` recomputed (an event each and a mail to the citizen with the
new date and the decree); none other moves. The working-day rules themselves stay in
``consultas.calendar``; this module only tells a calendar which days are closed and why.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from consultas import events
from consultas.calendar import WorkingCalendar
from consultas.errors import ConsultasError
from consultas.mailer import Envelope
from consultas.models import OPEN_STATUSES, Consulta, DecreedDay
from consultas.outbox import MailIdentity, enqueue_mail

logger = logging.getLogger(__name__)

#: The citizen's mail about a moved deadline.
PLAZO_TEMPLATE = "plazo_actualizado"


class DecreedDayError(ConsultasError):
    """Raised when a decreed day cannot be added or removed as asked (one line for the CLI)."""


@dataclass(frozen=True)
class MovedDeadline:
    """One open consulta whose deadline a decreed day moved."""

    number: str
    old_due_on: date
    new_due_on: date


def decreed_days(session: Session) -> dict[date, str]:
    """The decreed days in the database, each with its decree, in date order."""
    rows = session.execute(select(DecreedDay.day, DecreedDay.decree).order_by(DecreedDay.day))
    return {day: decree for day, decree in rows}


def refresh_calendar(calendar: WorkingCalendar, settings_days: Iterable[date], session: Session) -> bool:
    """Make ``calendar`` close the settings' days plus the database's; True when that changed it."""
    decrees = decreed_days(session)
    wanted = frozenset(settings_days) | frozenset(decrees)
    if wanted == calendar.decreed and decrees == calendar.decrees:
        return False
    calendar.replace_decreed(wanted, decrees)
    return True


def explain_decreed(presented_on: date, due_on: date, decreed: Mapping[date, str]) -> list[str]:
    """Spanish lines naming each decreed day between presentation and deadline, with its decree."""
    return [
        f"El {day.isoformat()} no se cuenta como día hábil: día no laborable declarado por {decree}."
        for day, decree in sorted(decreed.items())
        if presented_on <= day <= due_on and day.weekday() < 5
    ]


def add_decreed_day(
    session: Session,
    day: date,
    decree: str,
    *,
    calendar: WorkingCalendar,
    identity: MailIdentity,
    actor: str,
    now: datetime,
) -> list[MovedDeadline]:
    """Record ``day`` as decreed off and move the deadlines it affects; caller owns the transaction.

    ``calendar`` is the one deadlines were computed with (settings plus database days); it is left
    closing ``day`` too. Raises ``DecreedDayError`` for a day already recorded or a blank decree.
    """
    decree = " ".join(decree.split())
    if not decree:
        raise DecreedDayError("--decree: give the decree that declares the day (e.g. 'D.S. N° 123-2025-PCM')")
    if session.get(DecreedDay, day) is not None:
        raise DecreedDayError(f"{day.isoformat()} is already a decreed non-working day")
    session.add(DecreedDay(day=day, decree=decree, added_by=actor, added_at=now))
    before = _copy(calendar)
    calendar.replace_decreed(calendar.decreed | {day}, {**calendar.decrees, day: decree})
    session.flush()
    return _move_deadlines(
        session, day, decree, before=before, after=calendar, identity=identity, actor=actor, now=now
    )


def remove_decreed_day(
    session: Session,
    day: date,
    *,
    calendar: WorkingCalendar,
    settings_days: Iterable[date],
    identity: MailIdentity,
    actor: str,
    now: datetime,
) -> list[MovedDeadline]:
    """Forget decreed ``day`` and move back the deadlines it had moved; caller owns the transaction."""
    row = session.get(DecreedDay, day)
    if row is None:
        raise DecreedDayError(f"{day.isoformat()} is not a decreed non-working day in the database")
    decree = row.decree
    session.delete(row)
    before = _copy(calendar)
    if day not in frozenset(settings_days):  # still closed by CONSULTAS_NON_WORKING_DAYS: nothing moves
        calendar.replace_decreed(
            calendar.decreed - {day}, {d: n for d, n in calendar.decrees.items() if d != day}
        )
    session.flush()
    return _move_deadlines(
        session,
        day,
        f"se dejó sin efecto {decree}",
        before=before,
        after=calendar,
        identity=identity,
        actor=actor,
        now=now,
    )


def _copy(calendar: WorkingCalendar) -> WorkingCalendar:
    return WorkingCalendar(calendar.decreed, tz=calendar.tz.key)


def moved_due_on(presented_on: date, due_on: date, before: WorkingCalendar, after: WorkingCalendar) -> date:
    """The deadline under ``after`` of a consulta that had ``due_on`` under ``before``.

    It keeps the number of working days it was given (``before.working_days_between``), counted
    again from the day after presentation; a consulta presented on a day that is now closed counts
    as presented on the next working day (directive 5.1).
    """
    allowed = before.working_days_between(_counted_from(presented_on, before), due_on)
    return after.add_working_days(_counted_from(presented_on, after), allowed)


def _counted_from(presented_on: date, calendar: WorkingCalendar) -> date:
    """The working day presentation counts as under ``calendar`` (a closed day -> the next one)."""
    return presented_on if calendar.is_working_day(presented_on) else calendar.next_working_day(presented_on)


def _move_deadlines(
    session: Session,
    day: date,
    decree: str,
    *,
    before: WorkingCalendar,
    after: WorkingCalendar,
    identity: MailIdentity,
    actor: str,
    now: datetime,
) -> list[MovedDeadline]:
    """Recompute the open consultas whose counting span holds ``day``; event and mail for each moved."""
    candidates = session.scalars(
        select(Consulta)
        .where(
            Consulta.status.in_(OPEN_STATUSES),
            Consulta.presented_on <= day,
            Consulta.due_on >= day,
        )
        .order_by(Consulta.id)
    )
    moved = []
    for consulta in candidates:
        assert consulta.presented_on is not None and consulta.due_on is not None  # filtered on
        new_due = moved_due_on(consulta.presented_on, consulta.due_on, before, after)
        if new_due == consulta.due_on:
            continue
        old_due = consulta.due_on
        consulta.due_on = new_due
        consulta.updated_at = now
        number = consulta.number or ""
        moved.append(MovedDeadline(number, old_due, new_due))
        events.record(
            session,
            "due_date_moved",
            now=now,
            consulta=consulta,
            actor=actor,
            day=day.isoformat(),
            decree=decree,
            old_due_on=old_due.isoformat(),
            new_due_on=new_due.isoformat(),
        )
        to = consulta.reply_address or consulta.email
        if to:
            enqueue_mail(
                session,
                template=PLAZO_TEMPLATE,
                context={
                    "numero": number,
                    "dia": day.isoformat(),
                    "decreto": decree,
                    "plazo_anterior": old_due.isoformat(),
                    "plazo_nuevo": new_due.isoformat(),
                },
                envelope=Envelope(to=[to], in_reply_to=consulta.origin_message_id),
                identity=identity,
                idempotency_key=f"plazo:{consulta.id}:{day.isoformat()}:{new_due.isoformat()}",
                now=now,
                consulta=consulta,
                automatic=False,
            )
        logger.info("consulta %s: due date %s -> %s (decreed day %s)", number, old_due, new_due, day)
    return moved

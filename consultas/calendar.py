"""The working-day calendar: when a consulta counts as presented, when it is due, office hours.

Pure: no clock, no settings. Peru's national holidays come from the ``holidays`` package; the
caller passes the extra non-working days the government decrees (CONSULTAS_NON_WORKING_DAYS).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

#: Office hours of the Mesa de Partes, Monday to Friday, both ends included (directive 5.1).
OFFICE_OPENS = time(8, 30)
OFFICE_CLOSES = time(16, 30)
#: Working days a virtual consulta has to be answered in (directive 5.6.2).
DEFAULT_DUE_WORKING_DAYS = 10
DEFAULT_TZ = "America/Lima"

_SATURDAY = 5


@dataclass(frozen=True, slots=True)
class _Year:
    """One year's closed weekdays and its working days as sorted ordinals (for bisect)."""

    closed: frozenset[date]
    working: tuple[int, ...]
    holiday_names: dict[date, str]


_WEEKDAY_NAMES = ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo")
DECREED_REASON = "día no laborable decretado"
#: Spans ``WorkingCalendar.closed_days`` remembers (a few days' worth of arrivals) before starting over.
_CLOSED_SPANS_KEPT = 64


@dataclass(frozen=True, slots=True)
class SkippedDay:
    """A day the count passed over, with why it is not a working day (Spanish, for citizens)."""

    day: date
    reason: str


@dataclass(frozen=True, slots=True)
class DeadlineExplanation:
    """How a consulta's dates were counted: the presented day and why, the due date, each day skipped."""

    presented: date
    presented_reason: str
    due: date
    working_days: int
    skipped: tuple[SkippedDay, ...]

    def as_json(self) -> dict[str, object]:
        """JSON values only (for a mail's context and the API)."""
        return {
            "presented": self.presented.isoformat(),
            "presented_reason": self.presented_reason,
            "due": self.due.isoformat(),
            "working_days": self.working_days,
            "skipped": [{"date": s.day.isoformat(), "reason": s.reason} for s in self.skipped],
        }


class WorkingCalendar:
    """Working days and office hours in one time zone (America/Lima by default).

    Holidays are computed lazily, once per year and calendar; every query is O(log 365) per
    year it spans, so ``due_on`` over many consultas stays cheap.
    """

    def __init__(self, non_working_days: Iterable[date] = (), tz: str = DEFAULT_TZ) -> None:
        try:
            self._tz = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {tz!r}") from exc
        decreed: set[date] = set()
        for day in non_working_days:
            # A datetime is a date too, but would never compare equal to one: refuse it.
            if isinstance(day, datetime) or not isinstance(day, date):
                raise TypeError(f"non-working days must be dates, got {day!r}")
            decreed.add(day)
        self._decreed = frozenset(decreed)
        self._decrees: dict[date, str] = {}
        self._years: dict[int, _Year] = {}
        self._closed_spans: dict[tuple[date, date], tuple[SkippedDay, ...]] = {}

    def replace_decreed(
        self, non_working_days: Iterable[date], decrees: Mapping[date, str] | None = None
    ) -> None:
        """Use ``non_working_days`` as the decreed days from now on (``consultas.decreed_days``);
        ``decrees`` names the decree of those that have one, for the deadline's explanation."""
        self._decreed = frozenset(non_working_days)
        self._decrees = dict(decrees) if decrees is not None else self._decrees
        self._years = {}  # one assignment: a reader sees the old table or the new, never half
        self._closed_spans = {}

    @property
    def decreed(self) -> frozenset[date]:
        """The extra non-working days this calendar closes."""
        return self._decreed

    @property
    def decrees(self) -> dict[date, str]:
        """The decree of each decreed day that has one recorded (a copy)."""
        return dict(self._decrees)

    @property
    def tz(self) -> ZoneInfo:
        """The calendar's time zone."""
        return self._tz

    # -- days -------------------------------------------------------------------------------

    def _year(self, year: int) -> _Year:
        table = self._years.get(year)
        if table is None:
            national = holidays.country_holidays("PE", years=year, language="es")
            names = {d: str(name) for d, name in national.items() if d.year == year}
            closed = frozenset(
                d for d in (*national.keys(), *self._decreed) if d.year == year and d.weekday() < _SATURDAY
            )
            first = date(year, 1, 1).toordinal()
            last = date(year, 12, 31).toordinal()
            working = tuple(
                o for o in range(first, last + 1) if o % 7 not in (6, 0) and date.fromordinal(o) not in closed
            )
            table = self._years[year] = _Year(closed=closed, working=working, holiday_names=names)
        return table

    def is_working_day(self, d: date) -> bool:
        """Tell whether ``d`` is a weekday that is neither a national holiday nor decreed off."""
        return d.weekday() < _SATURDAY and d not in self._year(d.year).closed

    def closed_reason(self, d: date) -> str | None:
        """Why ``d`` is not a working day, in Spanish (None when it is one).

        A weekend day says so and names the holiday that falls on it, if any; a weekday names the
        national holiday (from ``holidays``) or says it was decreed non-working.
        """
        name = self._year(d.year).holiday_names.get(d)
        if d.weekday() >= _SATURDAY:
            weekend = f"fin de semana ({_WEEKDAY_NAMES[d.weekday()]})"
            return f"{weekend}; feriado: {name}" if name else weekend
        if name is not None:
            return f"feriado nacional: {name}"
        if d in self._decreed:
            decree = self._decrees.get(d)
            return f"{DECREED_REASON} ({decree})" if decree else DECREED_REASON
        return None

    def closed_days(self, first: date, last: date) -> tuple[SkippedDay, ...]:
        """Each day from ``first`` to ``last`` that is not a working day, with ``closed_reason``.

        Kept per span: every consulta received on the same day has the same span, and a batch of
        mails explains its deadlines in one look-up instead of one ``closed_reason`` per day each.
        """
        key = (first, last)
        found = self._closed_spans.get(key)
        if found is None:
            found = tuple(
                SkippedDay(day, why)
                for day in (date.fromordinal(o) for o in range(first.toordinal(), last.toordinal() + 1))
                if (why := self.closed_reason(day)) is not None
            )
            if len(self._closed_spans) >= _CLOSED_SPANS_KEPT:
                self._closed_spans = {}
            self._closed_spans[key] = found
        return found

    def add_working_days(self, d: date, n: int) -> date:
        """Return the ``n``-th working day after ``d`` (``d`` itself when ``n`` is 0)."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if n == 0:
            return d
        year = d.year
        table = self._year(year)
        index = bisect_right(table.working, d.toordinal())
        while n > len(table.working) - index:
            n -= len(table.working) - index
            year += 1
            table = self._year(year)
            index = 0
        return date.fromordinal(table.working[index + n - 1])

    def next_working_day(self, d: date) -> date:
        """Return the first working day strictly after ``d``."""
        return self.add_working_days(d, 1)

    def working_days_between(self, start: date, end: date) -> int:
        """Count working days ``d`` with ``start < d <= end``; negative (mirrored) when ``end < start``."""
        if end < start:
            return -self.working_days_between(end, start)
        first = self._year(start.year)
        below_start = bisect_right(first.working, start.toordinal())
        if start.year == end.year:
            return bisect_right(first.working, end.toordinal()) - below_start
        count = len(first.working) - below_start
        for year in range(start.year + 1, end.year):
            count += len(self._year(year).working)
        return count + bisect_right(self._year(end.year).working, end.toordinal())

    # -- instants ---------------------------------------------------------------------------

    def local(self, at: datetime) -> datetime:
        """Return ``at`` as aware local time; a naive ``at`` already is local time."""
        return at.replace(tzinfo=self._tz) if at.tzinfo is None else at.astimezone(self._tz)

    def is_office_hours(self, at: datetime) -> bool:
        """Tell whether ``at`` falls on a working day between 08:30 and 16:30 inclusive."""
        local = self.local(at)
        return self.is_working_day(local.date()) and OFFICE_OPENS <= local.time() <= OFFICE_CLOSES

    def office_start(self, d: date) -> datetime:
        """Return 08:30 local time on ``d`` as an aware UTC datetime."""
        return datetime.combine(d, OFFICE_OPENS, tzinfo=self._tz).astimezone(UTC)

    def next_office_instant(self, at: datetime) -> datetime:
        """Return ``at`` (as aware UTC) if in office hours, else when the office next opens."""
        local = self.local(at)
        if self.is_office_hours(local):
            return local.astimezone(UTC)
        day = local.date()
        if not (self.is_working_day(day) and local.time() < OFFICE_OPENS):
            day = self.next_working_day(day)
        return self.office_start(day)

    # -- consultas (directive 5.1, 5.6.2) ---------------------------------------------------

    def presented_on(self, received_at: datetime) -> date:
        """Return the working day a consulta received at ``received_at`` counts as presented.

        Directive 5.1: received after 16:30 or on a non-working day -> the next working day;
        before 08:30 -> that same day. 16:30:00 exactly is still in office hours.
        """
        local = self.local(received_at)
        day = local.date()
        if self.is_working_day(day) and local.time() <= OFFICE_CLOSES:
            return day
        return self.next_working_day(day)

    def due_on(self, presented_on: date, days: int = DEFAULT_DUE_WORKING_DAYS) -> date:
        """Return the deadline: the ``days``-th working day counted from the day after presentation.

        Directive 5.6.2: "se contabiliza desde el siguiente día hábil".
        """
        if days < 1:
            raise ValueError(f"days must be >= 1, got {days}")
        return self.add_working_days(presented_on, days)


def explain_deadline(
    calendar: WorkingCalendar, received_at: datetime, days: int = DEFAULT_DUE_WORKING_DAYS
) -> DeadlineExplanation:
    """How the dates of a consulta received at ``received_at`` are counted (directive 5.1, 5.6.2).

    The presented day with its reason (in office hours; after 16:30; before 08:30; on a day that is
    not a working day), the due date, and every day from the reception to the due date that the
    count passed over with its reason (weekend, the national holiday's name, a decreed day).
    """
    local = calendar.local(received_at)
    received_day = local.date()
    presented = calendar.presented_on(received_at)
    due = calendar.due_on(presented, days)
    hour = f"{local:%H:%M}"
    closed_today = calendar.closed_reason(received_day)
    if closed_today is not None:
        reason = (
            f"Recibida a las {hour} de un día no hábil ({closed_today}): se tiene por presentada "
            "el día hábil siguiente."
        )
    elif presented != received_day:
        reason = (
            f"Recibida a las {hour}, después del horario de atención (08:30 a 16:30): se tiene "
            "por presentada el día hábil siguiente."
        )
    elif local.time() < OFFICE_OPENS:
        reason = (
            f"Recibida a las {hour}, antes del inicio del horario de atención (08:30): se tiene "
            "por presentada ese mismo día."
        )
    else:
        reason = f"Recibida a las {hour} de un día hábil, dentro del horario de atención."
    return DeadlineExplanation(presented, reason, due, days, calendar.closed_days(received_day, due))


def deadline_json(
    received: str,
    non_working: list[str],
    days: int = DEFAULT_DUE_WORKING_DAYS,
    tz: str = DEFAULT_TZ,
    *,
    explain: bool = False,
) -> dict[str, object]:
    """Compute presentation and due dates for an ISO-8601 instant (no offset means ``tz``).

    Returns ``{"presented": "YYYY-MM-DD", "due": "YYYY-MM-DD"}``, plus ``"skipped": [{"date",
    "reason"}]`` when ``explain``. Raises ValueError with a message naming the bad value (instant,
    non-working day, days or time zone).
    """
    try:
        received_at = datetime.fromisoformat(received.strip())
    except ValueError:
        raise ValueError(
            f"invalid received instant {received!r}: expected ISO-8601, e.g. 2024-11-27T17:00:00-05:00"
        ) from None
    decreed: list[date] = []
    for text in non_working:
        try:
            decreed.append(date.fromisoformat(text.strip()))
        except ValueError:
            raise ValueError(f"invalid non-working day {text!r}: expected YYYY-MM-DD") from None
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    calendar = WorkingCalendar(decreed, tz=tz)
    presented = calendar.presented_on(received_at)
    result: dict[str, object] = {
        "presented": presented.isoformat(),
        "due": calendar.due_on(presented, days).isoformat(),
    }
    if explain:
        result["skipped"] = explain_deadline(calendar, received_at, days).as_json()["skipped"]
    return result

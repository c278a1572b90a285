"""The working-day calendar: hand-computed cases (tests/data/calendar_cases.json) and properties."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consultas.calendar import WorkingCalendar, deadline_json

CASES: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "calendar_cases.json").read_text(encoding="utf-8")
)
LIMA = ZoneInfo("America/Lima")
CALENDAR = WorkingCalendar()


def _cases(table: str) -> list[Any]:
    return [pytest.param(case, id=f"{i}-{case['why']}") for i, case in enumerate(CASES[table])]


# -- hand-computed tables --------------------------------------------------------------------


@pytest.mark.parametrize("case", _cases("deadlines"))
def test_consulta_is_presented_and_due_on_the_hand_computed_dates(case: dict[str, Any]) -> None:
    calendar = WorkingCalendar(date.fromisoformat(d) for d in case["non_working"])

    presented = calendar.presented_on(datetime.fromisoformat(case["received"]))
    due = calendar.due_on(presented, case["days"])

    assert (presented.isoformat(), due.isoformat()) == (case["presented"], case["due"])


@pytest.mark.parametrize("case", _cases("deadlines"))
def test_deadline_json_gives_the_hand_computed_dates(case: dict[str, Any]) -> None:
    result = deadline_json(case["received"], case["non_working"], case["days"], "America/Lima")

    assert result == {"presented": case["presented"], "due": case["due"]}


@pytest.mark.parametrize("case", _cases("days"))
def test_holidays_and_weekends_are_not_working_days(case: dict[str, Any]) -> None:
    assert CALENDAR.is_working_day(date.fromisoformat(case["date"])) is case["working"]


@pytest.mark.parametrize("case", _cases("between"))
def test_working_days_between_counts_the_hand_computed_days(case: dict[str, Any]) -> None:
    start, end = date.fromisoformat(case["start"]), date.fromisoformat(case["end"])

    assert CALENDAR.working_days_between(start, end) == case["count"]
    assert CALENDAR.working_days_between(end, start) == -case["count"]


@pytest.mark.parametrize("case", _cases("office"))
def test_next_office_instant_is_the_hand_computed_utc_instant(case: dict[str, Any]) -> None:
    result = CALENDAR.next_office_instant(datetime.fromisoformat(case["at"]))

    assert result == datetime.fromisoformat(case["next"])
    assert result.utcoffset() == timedelta(0)


# -- examples ---------------------------------------------------------------------------------


def test_issue_example_received_after_hours_is_due_on_13_december() -> None:
    presented = CALENDAR.presented_on(datetime(2024, 11, 27, 17, 0, tzinfo=timezone(timedelta(hours=-5))))

    assert presented == date(2024, 11, 28)
    assert CALENDAR.due_on(presented) == date(2024, 12, 13)


def test_decreed_non_working_day_is_skipped_only_by_the_calendar_that_knows_it() -> None:
    decreed = WorkingCalendar([date(2024, 11, 29)])

    assert CALENDAR.is_working_day(date(2024, 11, 29))
    assert not decreed.is_working_day(date(2024, 11, 29))
    assert decreed.next_working_day(date(2024, 11, 28)) == date(2024, 12, 2)
    assert decreed.due_on(date(2024, 11, 28)) == date(2024, 12, 16)


def test_remaining_working_days_to_due_count_down_to_zero_and_below() -> None:
    due = date(2024, 12, 13)

    remaining = [CALENDAR.working_days_between(date(2024, 12, d), due) for d in (6, 9, 10, 12, 13, 16)]

    assert remaining == [4, 4, 3, 1, 0, -1]


def test_office_start_is_0830_lima_as_utc() -> None:
    assert CALENDAR.office_start(date(2024, 11, 27)) == datetime(2024, 11, 27, 13, 30, tzinfo=UTC)


def test_add_zero_working_days_returns_the_same_day_even_on_a_holiday() -> None:
    assert CALENDAR.add_working_days(date(2024, 12, 9), 0) == date(2024, 12, 9)


def test_negative_working_days_and_zero_days_to_answer_are_refused() -> None:
    with pytest.raises(ValueError, match="n must be >= 0"):
        CALENDAR.add_working_days(date(2024, 12, 9), -1)
    with pytest.raises(ValueError, match="days must be >= 1"):
        CALENDAR.due_on(date(2024, 12, 9), 0)


def test_calendar_refuses_datetimes_as_decreed_days_and_unknown_time_zones() -> None:
    with pytest.raises(TypeError, match="must be dates"):
        WorkingCalendar([datetime(2024, 11, 29, 0, 0)])
    with pytest.raises(ValueError, match="unknown time zone 'America/Nowhere'"):
        WorkingCalendar(tz="America/Nowhere")


@pytest.mark.parametrize(
    ("received", "non_working", "days", "tz", "message"),
    [
        ("27/11/2024 17:00", [], 10, "America/Lima", "invalid received instant '27/11/2024 17:00'"),
        ("2024-02-30T10:00:00", [], 10, "America/Lima", "invalid received instant"),
        ("", [], 10, "America/Lima", "invalid received instant ''"),
        ("2024-11-27T17:00:00", ["2024-13-01"], 10, "America/Lima", "invalid non-working day '2024-13-01'"),
        ("2024-11-27T17:00:00", [], 0, "America/Lima", "days must be >= 1"),
        ("2024-11-27T17:00:00", [], 10, "Lima", "unknown time zone 'Lima'"),
    ],
)
def test_deadline_json_rejects_bad_input_with_a_clear_message(
    received: str, non_working: list[str], days: int, tz: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        deadline_json(received, non_working, days, tz)


# -- properties -------------------------------------------------------------------------------

DAYS = st.dates(min_value=date(2015, 1, 1), max_value=date(2035, 12, 31))
ZONES: list[tzinfo | None] = [
    None,
    UTC,
    LIMA,
    timezone(timedelta(hours=2)),
    timezone(timedelta(hours=-9, minutes=-30)),
]
#: Naive (Lima), UTC, Lima and other offsets.
INSTANTS = st.sampled_from(ZONES).flatmap(
    lambda zone: st.datetimes(
        min_value=datetime(2015, 1, 1),
        max_value=datetime(2035, 12, 31),
        timezones=st.none() if zone is None else st.just(zone),
    )
)
DECREED = st.frozensets(DAYS, max_size=5)
PROPERTY = settings(deadline=None, max_examples=150)


def _lima(at: datetime) -> datetime:
    return at.replace(tzinfo=LIMA) if at.tzinfo is None else at.astimezone(LIMA)


@PROPERTY
@given(at=INSTANTS, decreed=DECREED)
def test_presented_on_is_a_working_day_never_before_the_lima_date_nor_beyond_the_next(
    at: datetime, decreed: frozenset[date]
) -> None:
    calendar = WorkingCalendar(decreed)
    received_on = _lima(at).date()

    presented = calendar.presented_on(at)

    assert calendar.is_working_day(presented)
    assert presented >= received_on
    assert calendar.working_days_between(received_on, presented) <= 1


@PROPERTY
@given(day=DAYS, opened=st.times(max_value=time(16, 30)), other=st.times(max_value=time(16, 30)))
def test_instants_of_one_working_day_up_to_1630_present_that_day(
    day: date, opened: time, other: time
) -> None:
    if not CALENDAR.is_working_day(day):
        day = CALENDAR.next_working_day(day)

    first = CALENDAR.presented_on(datetime.combine(day, opened, tzinfo=LIMA))
    second = CALENDAR.presented_on(datetime.combine(day, other, tzinfo=LIMA).astimezone(UTC))

    assert first == second == day


@PROPERTY
@given(day=DAYS, after=st.times(min_value=time(16, 30, 0, 1)))
def test_instants_after_1630_present_on_a_later_working_day(day: date, after: time) -> None:
    presented = CALENDAR.presented_on(datetime.combine(day, after))

    assert presented > day
    assert CALENDAR.working_days_between(day, presented) == 1


@PROPERTY
@given(at=INSTANTS, decreed=DECREED, days=st.integers(min_value=1, max_value=60))
def test_due_on_is_a_working_day_exactly_days_working_days_after_presentation(
    at: datetime, decreed: frozenset[date], days: int
) -> None:
    calendar = WorkingCalendar(decreed)
    presented = calendar.presented_on(at)

    due = calendar.due_on(presented, days)

    assert calendar.is_working_day(due)
    assert due > presented
    assert calendar.working_days_between(presented, due) == days


@PROPERTY
@given(start=DAYS, n=st.integers(min_value=0, max_value=800), decreed=DECREED)
def test_working_days_between_undoes_add_working_days(start: date, n: int, decreed: frozenset[date]) -> None:
    calendar = WorkingCalendar(decreed)

    end = calendar.add_working_days(start, n)

    assert calendar.working_days_between(start, end) == n
    assert end == start or calendar.is_working_day(end)


@PROPERTY
@given(start=DAYS, end=DAYS)
def test_add_working_days_undoes_working_days_between_for_working_ends(start: date, end: date) -> None:
    if end < start:
        start, end = end, start
    if not CALENDAR.is_working_day(end):
        end = CALENDAR.next_working_day(end)

    assert CALENDAR.add_working_days(start, CALENDAR.working_days_between(start, end)) == end


@PROPERTY
@given(start=DAYS, span=st.integers(min_value=-800, max_value=800), decreed=DECREED)
def test_working_days_between_agrees_with_counting_day_by_day(
    start: date, span: int, decreed: frozenset[date]
) -> None:
    calendar = WorkingCalendar(decreed)
    end = start + timedelta(days=span)
    low, high = min(start, end), max(start, end)
    counted = sum(calendar.is_working_day(low + timedelta(days=i)) for i in range(1, (high - low).days + 1))

    assert calendar.working_days_between(start, end) == (counted if end >= start else -counted)


@PROPERTY
@given(at=INSTANTS, decreed=DECREED)
def test_next_office_instant_is_not_before_at_and_is_in_office_hours(
    at: datetime, decreed: frozenset[date]
) -> None:
    calendar = WorkingCalendar(decreed)
    aware = _lima(at)

    result = calendar.next_office_instant(at)

    assert result >= aware
    assert result.utcoffset() == timedelta(0)
    assert calendar.is_office_hours(result)
    if not calendar.is_office_hours(at):
        # It is the first opening after ``at``: 08:30 on the first working day not before at's date.
        assert _lima(result).time() == time(8, 30)
        assert calendar.working_days_between(aware.date(), _lima(result).date()) <= 1
        if calendar.is_working_day(aware.date()) and aware.time() < time(8, 30):
            assert _lima(result).date() == aware.date()

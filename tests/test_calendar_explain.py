"""The explained deadline: the presented day and why, each day the count passed over and why."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from consultas.calendar import WorkingCalendar, explain_deadline

LIMA = ZoneInfo("America/Lima")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=LIMA)


def test_fiestas_patrias_after_hours_names_each_skipped_day_and_why() -> None:
    # Friday 26 July 2024, 17:00: after hours; 27-28 weekend (28 Independence Day), 29 a holiday.
    calendar = WorkingCalendar([date(2024, 8, 5)])
    explained = explain_deadline(calendar, _at("2024-07-26T17:00"), 10)
    assert explained.presented == date(2024, 7, 30) == calendar.presented_on(_at("2024-07-26T17:00"))
    assert explained.due == date(2024, 8, 15) == calendar.due_on(date(2024, 7, 30), 10)
    assert "después del horario de atención" in explained.presented_reason
    reasons = {s.day: s.reason for s in explained.skipped}
    assert reasons[date(2024, 7, 27)] == "fin de semana (sábado)"
    assert reasons[date(2024, 7, 28)] == "fin de semana (domingo); feriado: Día de la Independencia"
    assert reasons[date(2024, 7, 29)].startswith("feriado nacional: ")
    assert reasons[date(2024, 8, 5)] == "día no laborable decretado"
    assert reasons[date(2024, 8, 6)] == "feriado nacional: Batalla de Junín"
    assert sorted(reasons) == [s.day for s in explained.skipped]  # in date order
    # Every day from reception to the due date is either skipped or a working day, never both.
    for ordinal in range(date(2024, 7, 26).toordinal(), date(2024, 8, 15).toordinal() + 1):
        day = date.fromordinal(ordinal)
        assert (day in reasons) is not calendar.is_working_day(day)


def test_the_presented_reason_says_in_hours_before_opening_or_a_non_working_day() -> None:
    calendar = WorkingCalendar()
    in_hours = explain_deadline(calendar, _at("2024-11-27T10:00"))
    assert in_hours.presented == date(2024, 11, 27)
    assert "dentro del horario" in in_hours.presented_reason
    assert in_hours.skipped[0].day == date(2024, 11, 30)  # the first Saturday
    early = explain_deadline(calendar, _at("2024-11-27T07:00"))
    assert early.presented == date(2024, 11, 27)
    assert "antes del inicio" in early.presented_reason
    sunday = explain_deadline(calendar, _at("2024-12-01T12:00"))
    assert sunday.presented == date(2024, 12, 2)
    assert "día no hábil (fin de semana (domingo))" in sunday.presented_reason
    assert sunday.skipped[0].day == date(2024, 12, 1)


def test_deadline_explain_adds_the_skipped_days_to_the_json(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "deadline", "--received", "2024-07-26T17:00:00-05:00",
         "--explain"],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["presented"] == "2024-07-30"
    assert {"date": "2024-07-29", "reason": "feriado nacional: Día de la Gran Parada Militar"} in output[
        "skipped"
    ]
    plain = subprocess.run(
        [sys.executable, "-m", "app.cli", "deadline", "--received", "2024-07-26T17:00:00-05:00"],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert json.loads(plain.stdout) == {"presented": output["presented"], "due": output["due"]}


def test_a_decreed_day_with_its_decree_is_explained_by_naming_the_decree() -> None:
    calendar = WorkingCalendar()
    calendar.replace_decreed({date(2024, 12, 23)}, {date(2024, 12, 23): "D.S. N° 123-2024-PCM"})
    explanation = explain_deadline(calendar, datetime(2024, 12, 20, 10, 0, tzinfo=ZoneInfo("America/Lima")))
    reasons = {skipped.day: skipped.reason for skipped in explanation.skipped}
    assert reasons[date(2024, 12, 23)] == "día no laborable decretado (D.S. N° 123-2024-PCM)"
    # A day decreed by CONSULTAS_NON_WORKING_DAYS alone has no decree to name.
    plain = WorkingCalendar([date(2024, 12, 23)])
    friday = datetime(2024, 12, 20, 10, 0, tzinfo=ZoneInfo("America/Lima"))
    plain_reasons = {s.day: s.reason for s in explain_deadline(plain, friday).skipped}
    assert plain_reasons[date(2024, 12, 23)] == "día no laborable decretado"

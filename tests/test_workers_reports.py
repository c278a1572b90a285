"""The quarterly report (6.3): hand-counted figures, a randomized cross-check, the CSV and the mail."""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections import defaultdict
from dataclasses import astuple
from datetime import date
from email import message_from_bytes, policy
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from consultas.errors import ConfigurationError
from consultas.models import Message, Outbox
from tests.followup_support import (
    REPORT_HAND_MADE,
    add_organos,
    insert,
    lima,
    make_config,
    naive_working_days,
    random_rows,
)
from workers.followup_cli import register_followup_commands
from workers.reports import Quarter, build_report, report_csv, report_text, send_report_for

Q3 = Quarter(2025, 3)


def figures(report: Any) -> list[tuple[Any, ...]]:
    """Every column but the name, one tuple per line and the total."""
    return [(x.organo, *astuple(x)[2:]) for x in [*report.lineas, report.total]]


def test_report_figures_match_a_hand_count(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        add_organos(session)
        insert(session, REPORT_HAND_MADE)
    with sessions() as session:
        report = build_report(session, config=make_config(), quarter=Q3)
    assert (report.desde, report.hasta) == ("2025-07-01", "2025-09-30")
    assert figures(report) == [
        ("DGETP", 3, 0, 0, 3, 1, None),
        ("DGPP", 2, 2, 1, 0, 0, 10.0),  # (10 + 12 + 8) / 3
        ("OGDAU", 1, 1, 0, 0, 0, 0.0),
        ("TOTAL", 6, 3, 1, 3, 1, 7.5),  # (10 + 12 + 8 + 0) / 4
    ]
    rows = list(csv.reader(io.StringIO(report_csv(report))))
    assert rows[0] == [
        "organo", "nombre", "recibidas", "respondidas_en_plazo", "respondidas_fuera_de_plazo", "pendientes",
        "vencidas", "promedio_dias_habiles",
    ]  # fmt: skip
    assert rows[1] == ["DGETP", "Órgano DGETP", "3", "0", "0", "3", "1", ""]
    assert rows[2] == ["DGPP", "Órgano DGPP", "2", "2", "1", "0", "0", "10.00"]
    assert "TOTAL" in report_text(report).splitlines()[-1]


def test_report_matches_a_naive_computation_on_random_data(sessions: sessionmaker[Session]) -> None:
    config = make_config()
    rows = random_rows(11, 500, config.calendar, date(2025, 11, 20))
    with sessions.begin() as session:
        add_organos(session)
        insert(session, rows)
    with sessions() as session:
        report = build_report(session, config=config, quarter=Q3)

    start, end = date(2025, 7, 1), date(2025, 9, 30)
    expected: dict[str, list[int]] = defaultdict(lambda: [0] * 5)
    days: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        if row.presented_on is None or row.due_on is None:
            continue  # never numbered
        figure = expected[row.organo or "OGDAU"]
        answered_in_q = row.answered_on is not None and start <= row.answered_on <= end
        pending = row.presented_on <= end and (row.answered_on is None or row.answered_on > end)
        figure[0] += start <= row.presented_on <= end
        figure[1] += answered_in_q and row.answered_on is not None and row.answered_on <= row.due_on
        figure[2] += answered_in_q and row.answered_on is not None and row.answered_on > row.due_on
        figure[3] += pending
        figure[4] += pending and row.due_on < end
        if answered_in_q and row.answered_on is not None:
            days[row.organo or "OGDAU"].append(
                naive_working_days(config.calendar, row.presented_on, row.answered_on)
            )
    got = {x.organo: list(astuple(x)[2:7]) for x in report.lineas}
    assert got == {k: v for k, v in expected.items() if any(v)}
    for line in report.lineas:
        values = days.get(line.organo, [])
        assert line.promedio_dias_habiles == (round(sum(values) / len(values), 2) if values else None)


def test_report_is_mailed_to_ogsu_with_ogdau_in_copy_and_the_csv_attached_once(
    sessions: sessionmaker[Session],
) -> None:
    config = make_config()
    with sessions.begin() as session:
        add_organos(session)
        insert(session, REPORT_HAND_MADE)
    # Q3 2025 ends Tuesday 30 September; Wednesday 1 October is the first working day after it.
    attempts = [
        (lima(date(2025, 9, 30), 10), False),  # the quarter is not over
        (lima(date(2025, 10, 1), 8, 0), False),  # before office hours
        (lima(date(2025, 10, 1), 8, 45), True),
        (lima(date(2025, 10, 2), 8, 45), False),  # already queued
    ]
    for now, expected in attempts:
        with sessions.begin() as session:
            assert send_report_for(session, config=config, quarter=Q3, now=now) is expected
    with sessions() as session:
        row = session.scalars(select(Outbox).where(Outbox.template == "reporte_trimestral")).one()
        message = session.get(Message, row.message_pk)
        assert message is not None and message.raw is not None
        mail = message_from_bytes(message.raw, policy=policy.default)
    assert mail["To"] == "ogsu@mef.gob.pe" and mail["Cc"] == "ogdau@mef.gob.pe"
    assert "2025Q3" in mail["Subject"]
    (attachment,) = list(mail.iter_attachments())
    assert attachment.get_filename() == "reporte_consultas_2025Q3.csv"
    content = attachment.get_content()
    text = content.decode("utf-8-sig") if isinstance(content, bytes) else content.lstrip("\ufeff")
    assert text.splitlines()[-1] == "TOTAL,Total,6,3,1,3,1,7.50"


def test_a_report_missed_on_its_day_is_caught_up_on_the_next_working_day(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        assert send_report_for(session, config=make_config(), quarter=Q3, now=lima(date(2025, 10, 2), 9))


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [("2024Q4", date(2024, 10, 1), date(2024, 12, 31)), ("2025-q1", date(2025, 1, 1), date(2025, 3, 31))],
)
def test_quarters_are_read_from_their_usual_spelling(text: str, start: date, end: date) -> None:
    quarter = Quarter.parse(text)
    assert (quarter.start, quarter.end) == (start, end)


def test_a_malformed_quarter_names_the_option() -> None:
    with pytest.raises(ConfigurationError, match="--quarter"):
        Quarter.parse("2024-4")


def run_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="consultas")
    register_followup_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


def test_report_command_prints_the_csv(
    sessions: sessionmaker[Session],
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with sessions.begin() as session:
        add_organos(session)
        insert(session, REPORT_HAND_MADE)
    monkeypatch.setenv("CONSULTAS_DATABASE_URL", db_url)
    monkeypatch.setenv("CONSULTAS_SECRET_KEY", "clave-de-prueba-" + "x" * 32)
    assert run_command(["report", "--quarter", "2025Q3", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "TOTAL,Total,6,3,1,3,1,7.50"


def test_digest_command_dry_run_prints_json_and_queues_nothing(
    sessions: sessionmaker[Session],
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with sessions.begin() as session:
        add_organos(session)
        insert(session, REPORT_HAND_MADE)
    monkeypatch.setenv("CONSULTAS_DATABASE_URL", db_url)
    monkeypatch.setenv("CONSULTAS_SECRET_KEY", "clave-de-prueba-" + "x" * 32)
    assert run_command(["digest", "--date", "2025-10-01", "--dry-run", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["fecha"], printed["total_pendientes"]) == ("2025-10-01", 3)
    with sessions() as session:
        assert session.scalars(select(Outbox)).all() == []

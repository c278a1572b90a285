"""Decreed days (`consultas calendar`): adding one moves exactly the open consultas it affects."""

from __future__ import annotations

import json
from datetime import date
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.cli import main
from consultas.calendar import WorkingCalendar
from consultas.decreed_days import explain_decreed, refresh_calendar
from consultas.models import Consulta, ConsultaStatus, Event, Message, Outbox
from tests.routing_support import make_consulta

DAY = date(2025, 3, 21)  # a Friday, an ordinary working day until decreed
DECREE = "D.S. N° 045-2025-PCM"
#: number -> (presented_on, due_on before, due_on after, status); dates counted by hand.
CASES = {
    "CONS-2025-000001": (date(2025, 3, 12), date(2025, 3, 26), date(2025, 3, 27), ConsultaStatus.ASIGNADA),
    "CONS-2025-000002": (date(2025, 3, 7), date(2025, 3, 21), date(2025, 3, 24), ConsultaStatus.ADMITIDA),
    "CONS-2025-000003": (date(2025, 3, 21), date(2025, 4, 4), date(2025, 4, 7), ConsultaStatus.ASIGNADA),
    "CONS-2025-000004": (date(2025, 3, 24), date(2025, 4, 7), date(2025, 4, 7), ConsultaStatus.ASIGNADA),
    "CONS-2025-000005": (date(2025, 2, 26), date(2025, 3, 12), date(2025, 3, 12), ConsultaStatus.ASIGNADA),
    "CONS-2025-000006": (date(2025, 3, 12), date(2025, 3, 26), date(2025, 3, 26), ConsultaStatus.RESPONDIDA),
}


@pytest.fixture
def cli_env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CONSULTAS_DATABASE_URL", db_url)
    monkeypatch.setenv("CONSULTAS_SECRET_KEY", "calendar-test-secret")
    return db_url


def seed(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        for n, (number, (presented, due, _, status)) in enumerate(CASES.items(), start=1):
            make_consulta(
                session,
                number=number,
                status=status,
                presented_on=presented,
                due_on=due,
                email=f"ciudadano{n}@example.pe",
            )


def due_dates(sessions: sessionmaker[Session]) -> dict[str, date | None]:
    with sessions() as session:
        return {str(n): d for n, d in session.execute(select(Consulta.number, Consulta.due_on))}


def plazo_mails(sessions: sessionmaker[Session]) -> list[EmailMessage]:
    with sessions() as session:
        raws = session.scalars(
            select(Message.raw)
            .join(Outbox, Outbox.message_pk == Message.id)
            .where(Outbox.template == "plazo_actualizado")
            .order_by(Outbox.id)
        ).all()
    mails = []
    for raw in raws:
        mail = message_from_bytes(raw or b"", policy=policy.default)
        assert isinstance(mail, EmailMessage)
        mails.append(mail)
    return mails


def text_of(mail: EmailMessage) -> str:
    body = mail.get_body(preferencelist=("plain",))
    assert isinstance(body, EmailMessage)
    return str(body.get_content())


def test_adding_a_decreed_day_moves_exactly_the_open_consultas_it_falls_within(
    cli_env: str, sessions: sessionmaker[Session], capsys: pytest.CaptureFixture[str]
) -> None:
    seed(sessions)
    assert main(["calendar", "add-day", DAY.isoformat(), "--decree", DECREE]) == 0
    out = capsys.readouterr().out
    assert "3 open consulta(s) got a new due date" in out

    assert due_dates(sessions) == {number: after for number, (_, _, after, _) in CASES.items()}
    with sessions() as session:
        moved = session.execute(
            select(Consulta.number, Event.detail)
            .join(Event, Event.consulta_id == Consulta.id)
            .where(Event.kind == "due_date_moved")
            .order_by(Consulta.number)
        ).all()
    assert [(n, d["old_due_on"], d["new_due_on"], d["decree"]) for n, d in moved] == [
        ("CONS-2025-000001", "2025-03-26", "2025-03-27", DECREE),
        ("CONS-2025-000002", "2025-03-21", "2025-03-24", DECREE),
        ("CONS-2025-000003", "2025-04-04", "2025-04-07", DECREE),
    ]
    # Each citizen is told the new date and the decree; nobody else gets a mail
    mails = plazo_mails(sessions)
    assert [str(m["To"]) for m in mails] == [f"ciudadano{n}@example.pe" for n in (1, 2, 3)]
    first = text_of(mails[0])
    assert (
        "jueves 27 de marzo de 2025" in first
        and DECREE in first
        and "CONS-2025-000001" in str(mails[0]["Subject"])
    )

    # Listed, and a second add of the same day is refused with one line
    assert main(["calendar", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"day": "2025-03-21", "decree": DECREE, "source": "database"}
    ]
    assert main(["calendar", "add-day", DAY.isoformat(), "--decree", DECREE]) == 1
    assert "already a decreed non-working day" in capsys.readouterr().err
    assert due_dates(sessions)["CONS-2025-000001"] == date(2025, 3, 27)


def test_removing_a_decreed_day_moves_the_deadlines_back(
    cli_env: str, sessions: sessionmaker[Session], capsys: pytest.CaptureFixture[str]
) -> None:
    seed(sessions)
    assert main(["calendar", "add-day", DAY.isoformat(), "--decree", DECREE]) == 0
    assert main(["calendar", "remove-day", DAY.isoformat()]) == 0
    assert due_dates(sessions) == {number: before for number, (_, before, _, _) in CASES.items()}
    assert main(["calendar", "remove-day", DAY.isoformat()]) == 1
    assert "not a decreed non-working day" in capsys.readouterr().err


def test_a_running_service_calendar_picks_up_the_database_days(
    cli_env: str, sessions: sessionmaker[Session]
) -> None:
    calendar = WorkingCalendar([date(2025, 3, 20)])
    assert main(["calendar", "add-day", DAY.isoformat(), "--decree", DECREE]) == 0
    with sessions() as session:
        assert refresh_calendar(calendar, [date(2025, 3, 20)], session)
        assert not refresh_calendar(calendar, [date(2025, 3, 20)], session)
    assert not calendar.is_working_day(DAY) and not calendar.is_working_day(date(2025, 3, 20))
    assert calendar.due_on(date(2025, 3, 12)) == date(2025, 3, 28)


def test_the_deadline_explanation_names_the_decree() -> None:
    lines = explain_decreed(date(2025, 3, 12), date(2025, 3, 27), {DAY: DECREE, date(2025, 5, 2): "otro"})
    assert lines == [f"El 2025-03-21 no se cuenta como día hábil: día no laborable declarado por {DECREE}."]


def test_bad_dates_and_blank_decrees_are_one_line_errors(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["calendar", "add-day", "21/03/2025", "--decree", DECREE])
    assert exited.value.code == 2
    assert "expected YYYY-MM-DD" in capsys.readouterr().err
    assert main(["calendar", "add-day", DAY.isoformat(), "--decree", "  "]) == 1
    assert "--decree" in capsys.readouterr().err

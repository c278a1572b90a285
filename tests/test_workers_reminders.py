"""Reminders and escalation: the right mails on the right working days, in office hours, once each."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes, policy

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from consultas.calendar import WorkingCalendar
from consultas.clock import FixedClock
from consultas.models import (
    Channel,
    Consulta,
    ConsultaStatus,
    ConsultaTipo,
    Message,
    Organo,
    Outbox,
    RedMember,
    RedRole,
)
from tests.followup_support import ALTERNO, LIMA, OGDAU, TITULAR, fire_times, lima, make_config
from workers.reminders import Candidate, FollowupKind, owed_offset, plan_followup, run_reminders

T0 = datetime(2025, 7, 1, 12, 0, tzinfo=UTC)


def add_red(session: Session, code: str = "DGPP", *, titular: bool = True, alterno: bool = True) -> None:
    session.add(Organo(code=code, name="Dirección General de Presupuesto Público", topics=[], updated_at=T0))
    for role, email, wanted in ((RedRole.TITULAR, TITULAR, titular), (RedRole.ALTERNO, ALTERNO, alterno)):
        if wanted:
            session.add(
                RedMember(
                    organo_code=code, role=role, name=role.value, email=email, valid_from=T0, valid_to=None
                )
            )
    session.flush()


def add_consulta(
    session: Session, number: str, *, presented_on: date, due_on: date, organo: str | None = "DGPP"
) -> int:
    consulta = Consulta(
        number=number,
        channel=Channel.EMAIL,
        status=ConsultaStatus.ASIGNADA,
        tipo=ConsultaTipo.TECNICA if organo else ConsultaTipo.ADMINISTRATIVA,
        organo_code=organo,
        subject="Consulta sobre modificaciones presupuestarias",
        received_at=lima(presented_on, 10).astimezone(UTC),
        presented_on=presented_on,
        due_on=due_on,
        assigned_at=lima(presented_on, 10).astimezone(UTC),
        created_at=T0,
        updated_at=T0,
    )
    session.add(consulta)
    session.flush()
    return consulta.id


def queued(session: Session) -> list[tuple[date, str, str]]:
    """(Lima date, template, Lima time) of every follow-up mail queued, in order."""
    rows = session.execute(
        select(Outbox.created_at, Outbox.template)
        .where(Outbox.template.in_(["recordatorio_red", "escalamiento"]))
        .order_by(Outbox.id)
    )
    return [
        (at.astimezone(LIMA).date(), template, at.astimezone(LIMA).strftime("%H:%M")) for at, template in rows
    ]


# Presented Friday 2025-07-25; 28 and 29 July (Independence) and 6 August (Junín) are holidays.
# Counting from the next working day: 30, 31 Jul, 1, 4, 5, 7, 8, 11, 12, 13 Aug -> due Wed 13 Aug.
PRESENTED = date(2025, 7, 25)
DUE = date(2025, 8, 13)


def test_a_month_of_runs_every_15_minutes_sends_each_reminder_and_escalation_once_on_working_days(
    sessions: sessionmaker[Session],
) -> None:
    config = make_config()
    assert config.calendar.due_on(PRESENTED) == DUE  # the hand count above
    with sessions.begin() as session:
        add_red(session)
        consulta_id = add_consulta(session, "CONS-2025-000001", presented_on=PRESENTED, due_on=DUE)
    clock = FixedClock(lima(PRESENTED, 0))
    answered_at = lima(date(2025, 8, 20), 10)
    end = lima(date(2025, 8, 31), 23, 45)
    while clock.now() <= end:
        now = clock.now()
        if now >= answered_at:
            with sessions.begin() as session:
                consulta = session.get(Consulta, consulta_id)
                assert consulta is not None
                if consulta.status != ConsultaStatus.RESPONDIDA:
                    consulta.status = ConsultaStatus.RESPONDIDA
                    consulta.answered_on = answered_at.date()
        with sessions.begin() as session:
            run_reminders(session, config=config, now=now)
        with sessions.begin() as session:  # the same instant again: nothing more
            again = run_reminders(session, config=config, now=now)
            assert (again.recordatorios, again.escalamientos) == (0, 0)
        clock.advance(timedelta(minutes=15))

    with sessions() as session:
        assert queued(session) == [
            (date(2025, 8, 8), "recordatorio_red", "08:30"),  # 3 working days before (11, 12, 13)
            (date(2025, 8, 13), "recordatorio_red", "08:30"),  # the due day
            (date(2025, 8, 14), "escalamiento", "08:30"),  # first working day late
            (date(2025, 8, 15), "escalamiento", "08:30"),
            (date(2025, 8, 18), "escalamiento", "08:30"),  # Monday: not Sat 16 / Sun 17
            (date(2025, 8, 19), "escalamiento", "08:30"),
            (date(2025, 8, 20), "escalamiento", "08:30"),  # answered at 10:00 that day: the last one
        ]


@pytest.mark.parametrize(
    ("at", "reason"),
    [
        (lima(date(2025, 8, 8), 7), "fuera de horario"),
        (lima(date(2025, 8, 8), 8, 29), "fuera de horario"),
        (lima(date(2025, 8, 8), 17), "fuera de horario"),
        (lima(date(2025, 8, 9), 10), "día no hábil"),  # Saturday
        (lima(date(2025, 8, 6), 10), "día no hábil"),  # Batalla de Junín
    ],
)
def test_a_run_outside_office_hours_or_on_a_holiday_queues_nothing(
    sessions: sessionmaker[Session], at: datetime, reason: str
) -> None:
    config = make_config()
    with sessions.begin() as session:
        add_red(session)
        add_consulta(session, "CONS-2025-000001", presented_on=PRESENTED, due_on=DUE)
        add_consulta(session, "CONS-2025-000002", presented_on=date(2025, 7, 10), due_on=date(2025, 7, 24))
        result = run_reminders(session, config=config, now=at)
    assert result.skipped == reason
    with sessions() as session:
        assert queued(session) == []


def test_reminder_goes_to_the_titular_with_the_alterno_in_copy_and_answers_reach_the_consulta(
    sessions: sessionmaker[Session],
) -> None:
    config = make_config()
    with sessions.begin() as session:
        add_red(session)
        add_consulta(session, "CONS-2025-000007", presented_on=PRESENTED, due_on=DUE)
        result = run_reminders(session, config=config, now=lima(date(2025, 8, 8), 9))
    assert result.recordatorios == 1
    with sessions() as session:
        row = session.scalars(select(Outbox)).one()
        message = session.get(Message, row.message_pk)
        assert message is not None and message.raw is not None
        mail = message_from_bytes(message.raw, policy=policy.default)
    assert mail["To"] == TITULAR
    assert mail["Cc"] == ALTERNO
    assert "CONS-2025-000007" in mail["Subject"]
    assert "miércoles 13 de agosto de 2025" in mail["Subject"]
    assert mail["Reply-To"].startswith("consultas+cons-2025-000007.")
    body = mail.get_body(("plain",))
    assert body is not None
    assert "quedan 3 días hábiles" in body.get_content()


def test_escalation_goes_to_titular_and_alterno_with_ogdau_in_copy_and_counts_working_days_late(
    sessions: sessionmaker[Session],
) -> None:
    config = make_config()
    with sessions.begin() as session:
        add_red(session)
        add_consulta(session, "CONS-2025-000008", presented_on=PRESENTED, due_on=DUE)
        run_reminders(session, config=config, now=lima(date(2025, 8, 18), 11))
    with sessions() as session:
        row = session.scalars(select(Outbox)).one()
        message = session.get(Message, row.message_pk)
        assert message is not None and message.raw is not None
        mail = message_from_bytes(message.raw, policy=policy.default)
    assert row.template == "escalamiento"
    assert mail["To"] == f"{TITULAR}, {ALTERNO}"
    assert mail["Cc"] == OGDAU
    assert "3 días hábiles de atraso" in mail["Subject"]  # 14, 15, 18 August


def test_administrativa_and_organos_without_red_are_reminded_to_ogdau(
    sessions: sessionmaker[Session],
) -> None:
    config = make_config()
    with sessions.begin() as session:
        add_red(session, titular=False, alterno=False)
        add_consulta(session, "CONS-2025-000010", presented_on=PRESENTED, due_on=DUE, organo=None)
        add_consulta(session, "CONS-2025-000011", presented_on=PRESENTED, due_on=DUE, organo="DGPP")
        run_reminders(session, config=config, now=lima(DUE, 9))
    with sessions() as session:
        recipients = [row.envelope_to for row in session.scalars(select(Outbox).order_by(Outbox.id))]
    assert recipients == [[OGDAU], [OGDAU]]


def test_a_reminder_missed_while_the_scheduler_was_down_is_sent_at_the_next_run_before_the_due_date(
    sessions: sessionmaker[Session],
) -> None:
    config = make_config()
    with sessions.begin() as session:
        add_red(session)
        add_consulta(session, "CONS-2025-000012", presented_on=PRESENTED, due_on=DUE)
    # Nothing ran on Friday 8 August; Monday 11 (2 working days left) owes the 3-day reminder.
    for at in (lima(date(2025, 8, 11), 8, 30), lima(date(2025, 8, 12), 9), lima(DUE, 9)):
        with sessions.begin() as session:
            run_reminders(session, config=config, now=at)
    with sessions() as session:
        assert [(d, t) for d, t, _ in queued(session)] == [
            (date(2025, 8, 11), "recordatorio_red"),
            (DUE, "recordatorio_red"),
        ]


def test_open_consultas_only_are_reminded(sessions: sessionmaker[Session]) -> None:
    config = make_config()
    with sessions.begin() as session:
        add_red(session)
        answered = add_consulta(session, "CONS-2025-000013", presented_on=PRESENTED, due_on=DUE)
        consulta = session.get(Consulta, answered)
        assert consulta is not None
        consulta.status = ConsultaStatus.RESPONDIDA
        result = run_reminders(session, config=config, now=lima(DUE, 9))
    assert (result.recordatorios, result.escalamientos) == (0, 0)


CAL = WorkingCalendar()


@pytest.mark.parametrize(
    ("days_left", "offsets", "expected"),
    [(3, (3, 0), 3), (2, (3, 0), 3), (0, (3, 0), 0), (4, (3, 0), None), (1, (5, 1), 1), (2, (5, 1), 5)],
)
def test_the_owed_reminder_is_the_smallest_offset_not_below_the_days_left(
    days_left: int, offsets: tuple[int, ...], expected: int | None
) -> None:
    assert owed_offset(days_left, offsets) == expected


def test_planning_keys_a_new_series_when_the_due_date_changes() -> None:
    today = date(2025, 8, 8)
    plan = plan_followup(
        [Candidate(1, DUE), Candidate(1, date(2025, 8, 12)), Candidate(2, date(2025, 8, 7))],
        today=today,
        calendar=CAL,
        offsets=(3, 0),
    )
    assert [(p.kind, p.days, p.idempotency_key) for p in plan] == [
        (FollowupKind.RECORDATORIO, 3, "reminder:1:2025-08-13:3"),
        (FollowupKind.RECORDATORIO, 2, "reminder:1:2025-08-12:3"),
        (FollowupKind.ESCALAMIENTO, 1, "escalation:2:2025-08-07:2025-08-08"),
    ]


def test_the_scheduler_triggers_follow_up_every_15_minutes_in_office_hours_and_the_report_at_0845() -> None:
    start, end = lima(date(2025, 8, 8), 0), lima(date(2025, 8, 9), 23, 59)  # a Friday and a Saturday
    followup = sorted(
        fire_times("followup_opening", start, end)
        + fire_times("followup_day", start, end)
        + fire_times("followup_closing", start, end)
    )
    assert followup[0] == "Fri 08:30" and followup[-1] == "Fri 16:30"
    assert len(followup) == 33  # 08:30 ... 16:30 every 15 minutes, nothing on Saturday
    assert fire_times("quarterly_report", start, end) == ["Fri 08:45"]


def test_one_run_mails_each_organo_its_own_red_and_names_its_organo_in_every_escalation(
    sessions: sessionmaker[Session],
) -> None:
    """Issue 5: the Red and the órgano are looked up once per órgano and run, never mixed up."""
    config = make_config()
    codes = ("DGPP", "DGTP", "DGAEICYP")
    with sessions.begin() as session:
        for code in codes:
            session.add(Organo(code=code, name=f"Órgano {code}", topics=[], updated_at=T0))
            session.add(
                RedMember(
                    organo_code=code,
                    role=RedRole.TITULAR,
                    name="titular",
                    email=f"titular.{code.lower()}@mef.gob.pe",
                    valid_from=T0,
                    valid_to=None,
                )
            )
        session.flush()
        for n, organo in enumerate([*codes, *codes, None]):
            add_consulta(
                session, f"CONS-2025-{n + 100:06d}", presented_on=PRESENTED, due_on=DUE, organo=organo
            )
        result = run_reminders(session, config=config, now=lima(date(2025, 8, 18), 11))
    assert result.escalamientos == 7
    with sessions() as session:
        rows = session.execute(
            select(Consulta.organo_code, Outbox.envelope_to, Message.body_text)
            .join(Outbox, Outbox.consulta_id == Consulta.id)
            .join(Message, Message.id == Outbox.message_pk)
            .order_by(Consulta.id)
        ).all()
    assert [(code, to) for code, to, _ in rows] == [
        *[(code, [f"titular.{code.lower()}@mef.gob.pe", OGDAU]) for code in codes],
        *[(code, [f"titular.{code.lower()}@mef.gob.pe", OGDAU]) for code in codes],
        (None, [OGDAU]),
    ]
    for organo, _, body in rows[:6]:
        assert body is not None and f"Órgano {organo} ({organo})" in body


def test_a_second_run_in_the_same_transaction_queues_nothing_more(sessions: sessionmaker[Session]) -> None:
    """Issue 5: the bulk existence check sees the mails the same transaction just queued."""
    config = make_config()
    with sessions.begin() as session:
        add_red(session)
        for n in range(3):
            add_consulta(session, f"CONS-2025-{n + 200:06d}", presented_on=PRESENTED, due_on=DUE)
        first = run_reminders(session, config=config, now=lima(date(2025, 8, 18), 11))
        second = run_reminders(session, config=config, now=lima(date(2025, 8, 18), 11, 15))
    assert (first.escalamientos, second.escalamientos, second.recordatorios) == (3, 0, 0)
    with sessions() as session:
        assert len(session.scalars(select(Outbox)).all()) == 3

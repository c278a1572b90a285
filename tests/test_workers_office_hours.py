"""Follow-up mails (reminders, escalations, digest, report) leave only in office hours, even when late.

They are queued inside office hours; a send that slips past 16:30 (SMTP was down, a backlog) waits
for the next opening instead of reaching the Red at night. Other mail (a citizen's confirmation)
goes at any time.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from consultas.calendar import WorkingCalendar
from consultas.clock import FixedClock
from consultas.models import Outbox, OutboxStatus
from tests.workers_support import NOW, queue_mails
from workers.mail import OFFICE_HOURS_TEMPLATES, Outcome, Sender
from workers.transport import FileTransport

LIMA = ZoneInfo("America/Lima")


def _reminder_and_confirmation(sessions: sessionmaker[Session]) -> tuple[int, int]:
    """Two queued rows; the first one turned into a reminder (the rule looks at the template only)."""
    reminder, confirmation = queue_mails(sessions, 2)
    with sessions.begin() as session:
        session.execute(update(Outbox).where(Outbox.id == reminder).values(template="recordatorio_red"))
    return reminder, confirmation


def _sender(sessions: sessionmaker[Session], clock: FixedClock, outbox: Path) -> Sender:
    return Sender(
        sessions=sessions,
        transport=FileTransport(outbox),
        clock=clock,
        max_attempts=5,
        calendar=WorkingCalendar(),
    )


def _row(sessions: sessionmaker[Session], outbox_id: int) -> Outbox:
    with sessions() as session:
        row = session.get(Outbox, outbox_id)
        assert row is not None
        return row


def test_a_reminder_sent_after_1630_waits_for_the_next_opening_and_a_confirmation_does_not(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    reminder, confirmation = _reminder_and_confirmation(sessions)
    clock = FixedClock(datetime(2024, 11, 28, 17, 5, tzinfo=LIMA))  # Thursday, after office hours
    sender = _sender(sessions, clock, tmp_path / "out")

    assert sender.deliver(reminder, worker="w") == Outcome.POSTPONED
    assert sender.deliver(confirmation, worker="w") == Outcome.SENT
    assert len(list((tmp_path / "out").glob("*.eml"))) == 1
    waiting = _row(sessions, reminder)
    assert waiting.status == OutboxStatus.PENDING and waiting.attempts == 0  # not counted as a try
    assert waiting.next_attempt_at == datetime(2024, 11, 29, 8, 30, tzinfo=LIMA)

    clock.set(datetime(2024, 11, 29, 8, 29, tzinfo=LIMA))
    assert sender.deliver(reminder, worker="w") == Outcome.SKIPPED  # not due yet
    clock.set(datetime(2024, 11, 29, 8, 30, tzinfo=LIMA))
    assert sender.deliver(reminder, worker="w") == Outcome.SENT
    assert len(list((tmp_path / "out").glob("*.eml"))) == 2


def test_a_batch_on_a_friday_night_sends_the_rest_and_keeps_the_reminder_for_tuesday_after_a_holiday(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    reminder, confirmation = _reminder_and_confirmation(sessions)
    # Friday 6 December 2024, 19:00; Monday 9 December is a national holiday (Batalla de Ayacucho).
    clock = FixedClock(datetime(2024, 12, 6, 19, 0, tzinfo=LIMA))

    outcomes = _sender(sessions, clock, tmp_path / "out").deliver_many([reminder, confirmation], worker="w")

    assert outcomes == Counter({Outcome.SENT: 1, Outcome.POSTPONED: 1})
    assert _row(sessions, confirmation).status == OutboxStatus.SENT
    assert _row(sessions, reminder).next_attempt_at == datetime(2024, 12, 10, 8, 30, tzinfo=LIMA)


def test_inside_office_hours_a_reminder_goes_at_once(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    reminder, _ = _reminder_and_confirmation(sessions)
    clock = FixedClock(NOW)  # Thursday 28 November 2024, 10:00 Lima
    assert _sender(sessions, clock, tmp_path / "out").deliver(reminder, worker="w") == Outcome.SENT


def test_the_office_hours_templates_are_the_follow_up_ones() -> None:
    from workers.digest import DIGEST_TEMPLATE
    from workers.reminders import ESCALATION_TEMPLATE, REMINDER_TEMPLATE
    from workers.reports import REPORT_TEMPLATE

    assert {
        REMINDER_TEMPLATE,
        ESCALATION_TEMPLATE,
        DIGEST_TEMPLATE,
        REPORT_TEMPLATE,
    } == OFFICE_HOURS_TEMPLATES

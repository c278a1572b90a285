"""Maildir batches without a savepoint per mail: repeats inside a batch and earlier mails stay duplicates."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session, sessionmaker

from consultas.clock import FixedClock
from consultas.models import Consulta, Event, Outbox
from intake.maildir_source import Maildir, poll_maildir_once
from tests.intake_support import COMPLETE_BODY, INCOMPLETE_BODY, citizen_mail
from tests.routing_support import CONFIG, MAILBOX, NOW


def poll(sessions: sessionmaker[Session], maildir: Maildir) -> tuple[int, int, int]:
    counts = poll_maildir_once(
        sessions, maildir, mailbox=MAILBOX, config=CONFIG, clock=FixedClock(NOW), batch_size=10
    )
    return counts.processed, counts.duplicates, counts.quarantined


def test_the_same_mail_twice_in_one_batch_makes_one_consulta_and_one_duplicate(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    maildir = Maildir(tmp_path / "maildir")
    repeated = citizen_mail(subject="Consulta repetida", sender="rep@example.pe")
    maildir.deliver(repeated, "1.eml")
    maildir.deliver(citizen_mail(subject="Otra consulta", sender="otra@example.pe"), "2.eml")
    maildir.deliver(repeated, "3.eml")

    assert poll(sessions, maildir) == (2, 1, 0)

    with sessions() as session:
        assert session.scalar(select(func.count(Consulta.number))) == 2
        assert session.scalar(select(func.count(Outbox.id))) == 4  # confirmation + routed mail each


def test_a_batch_mixing_new_mails_and_mails_stored_by_an_earlier_batch_only_adds_the_new_ones(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    maildir = Maildir(tmp_path / "maildir")
    earlier = citizen_mail(subject="Primera", sender="a@example.pe")
    maildir.deliver(earlier, "1.eml")
    assert poll(sessions, maildir) == (1, 0, 0)
    maildir.deliver(earlier, "2.eml")  # re-delivered (a crash before the move, another copy)
    maildir.deliver(citizen_mail(subject="Segunda", sender="b@example.pe"), "3.eml")

    assert poll(sessions, maildir) == (1, 1, 0)

    with sessions() as session:
        assert session.scalar(select(func.count(Consulta.number))) == 2


def test_the_daily_cap_holds_inside_one_batch_and_counts_earlier_batches(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    maildir = Maildir(tmp_path / "maildir")
    capped = dataclasses.replace(CONFIG, auto_reply_cap=3)
    maildir.deliver(citizen_mail(subject="Consulta 0", sender="insistente@example.pe"), "0.eml")
    poll_maildir_once(sessions, maildir, mailbox=MAILBOX, config=capped, clock=FixedClock(NOW), batch_size=10)
    for index in range(1, 5):
        mail = citizen_mail(subject=f"Consulta {index}", sender="insistente@example.pe")
        maildir.deliver(mail, f"{index}.eml")

    counts = poll_maildir_once(
        sessions, maildir, mailbox=MAILBOX, config=capped, clock=FixedClock(NOW), batch_size=10
    )

    assert counts.processed == 4
    with sessions() as session:
        confirmations = session.scalar(
            select(func.count(Outbox.id)).where(Outbox.primary_recipient == "insistente@example.pe")
        )
        assert confirmations == 3  # one from the first batch, two from this one, then the cap
        assert session.scalar(select(func.count(Event.id)).where(Event.kind == "auto_reply_capped")) == 2
        assert session.scalar(select(func.count(Consulta.number))) == 5  # all five are consultas


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_on_postgresql_a_batch_of_new_consultas_is_written_in_a_few_statements(
    engine: Engine, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    # PostgreSQL's path: ids come from the sequence before the INSERT (SQLite flushes for them).
    maildir = Maildir(tmp_path / "maildir")
    for index in range(40):
        mail = citizen_mail(subject=f"Consulta {index}", sender=f"c{index}@example.pe")
        maildir.deliver(mail, f"{index}.eml")
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        counts = poll_maildir_once(
            sessions, maildir, mailbox=MAILBOX, config=CONFIG, clock=FixedClock(NOW), batch_size=40
        )
    finally:
        event.remove(engine, "before_cursor_execute", listener)

    assert counts.processed == 40
    with sessions() as session:
        assert session.scalar(select(func.count(Consulta.number))) == 40
        assert session.scalar(select(func.count(Outbox.id))) == 80
    # One number per consulta (the gap-free counter), the rest shared by the batch: not ~14 per mail.
    assert len(statements) < 40 + 30, statements
    # Every new row's id is known before the INSERT: no multi-row INSERT ... RETURNING to sort back.
    bulk = ("INSERT INTO consulta ", "INSERT INTO message ", "INSERT INTO outbox ", "INSERT INTO event ")
    assert not [s for s in statements if s.startswith(bulk) and "RETURNING" in s]


def test_numbers_stay_gap_free_when_a_batch_mixes_complete_and_incomplete_mails(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    maildir = Maildir(tmp_path / "maildir")
    bodies = [COMPLETE_BODY, INCOMPLETE_BODY, COMPLETE_BODY, INCOMPLETE_BODY, COMPLETE_BODY]
    for index, body in enumerate(bodies):
        maildir.deliver(
            citizen_mail(body, subject=f"Consulta {index}", sender=f"c{index}@example.pe"), f"{index}.eml"
        )
    assert poll(sessions, maildir) == (5, 0, 0)
    maildir.deliver(citizen_mail(subject="Después", sender="d@example.pe"), "later.eml")
    assert poll(sessions, maildir) == (1, 0, 0)

    with sessions() as session:
        numbers = sorted(n for n in session.scalars(select(Consulta.number)) if n)
    year = NOW.year
    assert numbers == [f"CONS-{year}-{seq:06d}" for seq in (1, 2, 3, 4)]

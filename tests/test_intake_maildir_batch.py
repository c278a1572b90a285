"""Maildir batches without a savepoint per mail: repeats inside a batch and earlier mails stay duplicates."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from consultas.clock import FixedClock
from consultas.models import Consulta, Outbox
from intake.maildir_source import Maildir, poll_maildir_once
from tests.routing_support import CONFIG, MAILBOX, NOW
from tests.test_intake_pipeline import citizen_mail


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

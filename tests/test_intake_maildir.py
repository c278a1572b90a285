"""The Maildir source: files move only after commit, broken mails are quarantined, replays are duplicates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from consultas.clock import FixedClock
from consultas.models import Consulta, Message, MessageKind, Outbox
from intake import maildir_source
from intake.maildir_source import PROCESSED_FOLDER, QUARANTINE_FOLDER, Maildir, poll_maildir_once
from intake.pipeline import process_inbound_batch
from routing import admission
from tests.intake_imap_support import collector_off, garbage_holding_large_buffers, with_attachment
from tests.intake_support import citizen_mail
from tests.routing_support import CONFIG, MAILBOX, NOW

FIXTURES = Path(__file__).parent / "fixtures" / "mails"


def poll(
    sessions: sessionmaker[Session], maildir: Maildir, hinted: list[int] | None = None
) -> dict[str, int]:
    counts = poll_maildir_once(
        sessions,
        maildir,
        mailbox=MAILBOX,
        config=CONFIG,
        clock=FixedClock(NOW),
        batch_size=2,
        on_committed=hinted.extend if hinted is not None else None,
    )
    return {"processed": counts.processed, "duplicates": counts.duplicates, "quarantined": counts.quarantined}


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_mails_are_processed_in_batches_and_moved_only_once_done(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    maildir = Maildir(tmp_path / "maildir")
    for index in range(3):
        maildir.deliver(
            citizen_mail(subject=f"Consulta {index}", sender=f"c{index}@example.pe"), f"{index}.eml"
        )
    maildir.deliver((FIXTURES / "broken_binary.eml").read_bytes(), "1b.eml")
    hinted: list[int] = []

    assert poll(sessions, maildir, hinted) == {"processed": 3, "duplicates": 0, "quarantined": 1}

    assert names(maildir.new) == []
    assert names(maildir.root / PROCESSED_FOLDER / "cur") == ["0.eml:2,S", "1.eml:2,S", "2.eml:2,S"]
    assert names(maildir.root / QUARANTINE_FOLDER / "cur") == ["1b.eml:2,S"]
    with sessions() as session:
        assert session.scalar(select(func.count(Consulta.number))) == 3
        assert (
            session.scalar(select(func.count(Message.id)).where(Message.kind == MessageKind.QUARANTINED)) == 1
        )
        # Confirmation + routed mail per consulta, and OGDAU's quarantine alert: all hinted.
        assert sorted(hinted) == list(session.scalars(select(Outbox.id).order_by(Outbox.id)))
    assert len(hinted) == 7


def test_a_file_left_in_new_by_a_crash_after_commit_is_a_duplicate_and_is_moved(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    maildir = Maildir(tmp_path / "maildir")
    raw = citizen_mail()
    maildir.deliver(raw, "a.eml")
    poll(sessions, maildir)
    maildir.deliver(raw, "a.eml")  # the move never happened: the file is read again

    assert poll(sessions, maildir) == {"processed": 0, "duplicates": 1, "quarantined": 0}
    assert names(maildir.new) == []
    with sessions() as session:
        assert session.scalar(select(func.count(Consulta.id))) == 1
        assert (
            session.scalar(select(func.count(Outbox.id)).where(Outbox.template == "consulta_recibida")) == 1
        )


def test_a_mail_quarantined_by_a_bug_is_processed_normally_once_moved_back_after_the_fix(
    sessions: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    maildir = Maildir(tmp_path / "maildir")
    maildir.deliver(citizen_mail(subject="Consulta atrapada", sender="atrapada@example.pe"), "1.eml")

    def bug(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug in the extraction")

    with monkeypatch.context() as patched:
        patched.setattr(admission, "extract_requisitos", bug)
        assert poll(sessions, maildir) == {"processed": 0, "duplicates": 0, "quarantined": 1}
    [kept] = names(maildir.root / QUARANTINE_FOLDER / "cur")

    # After the fix, OGDAU moves the mail back to the inbox: it is a new mail, not a duplicate.
    (maildir.root / QUARANTINE_FOLDER / "cur" / kept).rename(maildir.new / "1.eml")
    assert poll(sessions, maildir) == {"processed": 1, "duplicates": 0, "quarantined": 0}

    with sessions() as session:
        [consulta] = session.scalars(select(Consulta)).all()
        assert consulta.number is not None and consulta.reply_address == "atrapada@example.pe"
        confirmations = session.scalar(
            select(func.count(Outbox.id)).where(Outbox.template == "consulta_recibida")
        )
        assert confirmations == 1


def test_large_mails_are_read_in_batches_bounded_by_bytes_and_all_processed(
    sessions: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    maildir = Maildir(tmp_path / "maildir")
    attachment_bytes = [0, 300_000, 300_000, 0, 700_000, 0]
    for n, size in enumerate(attachment_bytes):
        raw = citizen_mail(subject=f"Consulta {n}", sender=f"c{n}@example.pe")
        maildir.deliver(with_attachment(raw, size) if size else raw, f"{n}.eml")
    batch_sizes: list[list[int]] = []

    def recording_batch(session: Session, raws: list[tuple[bytes, int | None]], **kwargs: Any) -> Any:
        batch_sizes.append([len(raw) for raw, _ in raws])
        return process_inbound_batch(session, raws, **kwargs)

    monkeypatch.setattr(maildir_source, "process_inbound_batch", recording_batch)
    budget = 500_000

    counts = poll_maildir_once(
        sessions, maildir, mailbox=MAILBOX, config=CONFIG, clock=FixedClock(NOW), batch_max_bytes=budget
    )

    assert counts.processed == 6
    assert len(batch_sizes) > 1  # counted in mails alone (200), all six would be one batch
    for batch in batch_sizes:
        assert len(batch) == 1 or sum(batch) <= budget, batch_sizes
    with sessions() as session:
        assert session.scalar(select(func.count(Consulta.number))) == 6


def test_the_memory_of_a_batch_of_large_mails_is_given_back_once_it_is_done(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    maildir = Maildir(tmp_path / "maildir")
    for n in range(4):
        raw = citizen_mail(subject=f"Consulta {n}", sender=f"c{n}@example.pe")
        maildir.deliver(with_attachment(raw, 700_000), f"{n}.eml")

    with collector_off():
        counts = poll_maildir_once(
            sessions, maildir, mailbox=MAILBOX, config=CONFIG, clock=FixedClock(NOW), batch_size=2
        )
        # The ORM objects of a batch (consulta <-> messages <-> attachments) form cycles holding the
        # raw mails; left to the collector's schedule they would stay in memory batch after batch.
        assert garbage_holding_large_buffers() == 0

    assert counts.processed == 4

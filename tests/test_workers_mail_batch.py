"""Sending outbox rows in batches: one claim and one mark per chunk, each mail still sent exactly once."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from consultas.clock import FixedClock
from consultas.models import Event, OutboxStatus
from tests.servers.smtp_sink import SmtpSink
from tests.workers_support import (
    NOW,
    Workers,
    delivered_counts,
    message_ids_of,
    queue_mails,
    smtp_settings,
    statuses,
)
from workers.mail import DELIVER_CHUNK, Outcome, Sender, hint_send_batches
from workers.runtime import close_runtime, init_runtime


def test_two_concurrent_batch_senders_send_each_row_once(
    db_url: str, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    runtime = init_runtime(smtp_settings(db_url, smtp_sink, tmp_path), clock=FixedClock(NOW))
    try:
        ids = queue_mails(runtime.sessions, DELIVER_CHUNK + 10)
        sender = Sender.from_runtime(runtime)
        barrier = threading.Barrier(2)
        totals: Counter[Outcome] = Counter()
        lock = threading.Lock()

        def batch_sender(name: str) -> None:
            barrier.wait()
            outcomes = sender.deliver_many(ids, worker=name)
            with lock:
                totals.update(outcomes)

        threads = [threading.Thread(target=batch_sender, args=(f"w{n}",)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert totals == Counter({Outcome.SENT: len(ids), Outcome.SKIPPED: len(ids)})
        expected = message_ids_of(runtime.sessions, ids)
        assert delivered_counts(smtp_sink) == Counter({message_id: 1 for message_id in expected})
        assert statuses(runtime.sessions, ids) == [OutboxStatus.SENT] * len(ids)
    finally:
        close_runtime()


def test_a_refused_row_in_a_batch_fails_alone_and_the_others_are_sent(
    db_url: str, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    runtime = init_runtime(smtp_settings(db_url, smtp_sink, tmp_path), clock=FixedClock(NOW))
    try:
        smtp_sink.reject_rcpt("nadie@example.pe", 550)
        good = queue_mails(runtime.sessions, 3, key="ok")
        [bad] = queue_mails(runtime.sessions, 1, to=("nadie@example.pe",), key="bad")
        outcomes = Sender.from_runtime(runtime).deliver_many([*good, bad], worker="w")
        assert outcomes == Counter({Outcome.SENT: 3, Outcome.FAILED: 1})
        assert statuses(runtime.sessions, [*good, bad]) == [OutboxStatus.SENT] * 3 + [OutboxStatus.FAILED]
        with runtime.sessions() as session:
            assert session.scalars(select(Event.kind).where(Event.kind == "outbox_failed")).all() == [
                "outbox_failed"
            ]
    finally:
        close_runtime()


def test_batch_hints_sent_twice_deliver_each_mail_once(
    workers_on: Callable[[str], Workers],
    smtp_sink: SmtpSink,
) -> None:
    workers = workers_on("memory")
    ids = queue_mails(workers.runtime.sessions, 12)
    assert hint_send_batches(ids + ids, batch=5) == 12
    assert hint_send_batches(ids, batch=5) == 12
    workers.wait()
    expected = message_ids_of(workers.runtime.sessions, ids)
    assert delivered_counts(smtp_sink) == Counter({message_id: 1 for message_id in expected})
    assert statuses(workers.runtime.sessions, ids) == [OutboxStatus.SENT] * 12

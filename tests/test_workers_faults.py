"""Outages: SMTP down and Redis down delay mail, never lose it, and never send it twice."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import dramatiq
import pytest
import redis
from sqlalchemy.orm import Session, sessionmaker

from consultas.clock import FixedClock
from consultas.models import Outbox, OutboxStatus
from consultas.outbox import FIRST_BACKOFF
from tests.servers.smtp_sink import SmtpSink
from tests.workers_support import (
    NOW,
    OwnRedis,
    Workers,
    delivered_counts,
    message_ids_of,
    queue_mails,
    smtp_settings,
    statuses,
)
from workers.broker import OUTBOX_QUEUE, configure_broker
from workers.mail import hint_send, send_outbox_row
from workers.runtime import close_runtime, init_runtime
from workers.sweep import sweep_once


def _rows(sessions: sessionmaker[Session], ids: list[int]) -> list[tuple[OutboxStatus, int, object]]:
    with sessions() as session:
        rows = [session.get(Outbox, i) for i in ids]
        return [(r.status, r.attempts, r.next_attempt_at) for r in rows if r is not None]


def test_mail_waits_while_smtp_is_down_and_is_sent_once_when_it_returns(
    workers_on: Callable[[str], Workers], broker_url: str, smtp_sink: SmtpSink
) -> None:
    # Given the SMTP server is down
    workers = workers_on(broker_url)
    sessions = workers.runtime.sessions
    smtp_sink.stop()
    # When three mails are committed and hinted
    ids = queue_mails(sessions, 3)
    assert hint_send(ids) == 3
    workers.wait()
    # Then they stay pending, with one attempt and a backoff, and nothing is lost
    assert _rows(sessions, ids) == [(OutboxStatus.PENDING, 1, NOW + FIRST_BACKOFF)] * 3
    # And a sweep before the backoff ends sends nothing
    assert sweep_once(sessions, now=workers.clock.now(), enqueue=send_outbox_row.send) == []
    # When the server returns and the backoff has passed, the sweep re-enqueues them (twice, even)
    smtp_sink.start()
    workers.clock.advance(timedelta(minutes=1))
    assert sweep_once(sessions, now=workers.clock.now(), enqueue=send_outbox_row.send) == ids
    # (a second sweep may find some rows already claimed by the running worker: it re-enqueues the rest)
    assert set(sweep_once(sessions, now=workers.clock.now(), enqueue=send_outbox_row.send)) <= set(ids)
    workers.wait()
    # Then each mail arrived exactly once
    expected = message_ids_of(sessions, ids)
    assert delivered_counts(smtp_sink) == Counter({message_id: 1 for message_id in expected})
    assert statuses(sessions, ids) == [OutboxStatus.SENT] * 3


def test_mail_still_refused_after_the_last_attempt_is_failed_not_dropped(
    workers_on: Callable[[str], Workers], smtp_sink: SmtpSink
) -> None:
    workers = workers_on("memory")
    sessions = workers.runtime.sessions
    smtp_sink.reject_rcpt("jose@example.pe", 451)  # a 4xx: transient every time
    [outbox_id] = queue_mails(sessions, 1)
    for _ in range(3):  # CONSULTAS_OUTBOX_MAX_ATTEMPTS=3 in these settings
        workers.clock.advance(timedelta(hours=2))
        sweep_once(sessions, now=workers.clock.now(), enqueue=send_outbox_row.send)
        workers.wait()
    with sessions() as session:
        row = session.get(Outbox, outbox_id)
        assert row is not None
        assert (row.status, row.attempts) == (OutboxStatus.FAILED, 3)
        assert row.last_error is not None and "451" in row.last_error
    assert smtp_sink.messages == []


# Redis down ---------------------------------------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def test_intake_commits_while_redis_is_down_and_the_sweep_sends_once_it_returns(
    db_url: str, smtp_sink: SmtpSink, tmp_path: Path, own_redis: OwnRedis
) -> None:
    settings = smtp_settings(db_url, smtp_sink, tmp_path, broker_url=own_redis.url)
    runtime = init_runtime(settings, clock=FixedClock(NOW))
    broker = configure_broker(own_redis.url)
    worker: dramatiq.Worker | None = None
    try:
        # Given Redis is down
        own_redis.stop()
        # When intake commits two mails and hints them
        ids = queue_mails(runtime.sessions, 2)
        # Then the hint fails quietly and the rows are safe in the database
        assert hint_send(ids) == 0
        assert statuses(runtime.sessions, ids) == [OutboxStatus.PENDING] * 2
        # And a sweep during the outage raises a broker error without touching the rows
        with pytest.raises(redis.ConnectionError):
            sweep_once(runtime.sessions, now=NOW, enqueue=send_outbox_row.send)
        assert _rows(runtime.sessions, ids) == [(OutboxStatus.PENDING, 0, NOW)] * 2
        # When Redis returns (empty: it kept nothing) and the sweep runs, a worker sends them
        own_redis.start()
        assert sweep_once(runtime.sessions, now=NOW, enqueue=send_outbox_row.send) == ids
        worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=50)
        worker.start()
        broker.join(OUTBOX_QUEUE)
        worker.join()
        expected = message_ids_of(runtime.sessions, ids)
        assert delivered_counts(smtp_sink) == Counter({message_id: 1 for message_id in expected})
    finally:
        if worker is not None:
            worker.stop()
        close_runtime()
        configure_broker("memory")


# Separate worker processes (production mode) --------------------------------------------------------


def test_consultas_worker_processes_on_redis_send_each_hinted_mail_once(
    db_url: str, smtp_sink: SmtpSink, tmp_path: Path, own_redis: OwnRedis
) -> None:
    # Our own Redis, not the shared db 15: another test session flushing it would drop the queue.
    redis_url = own_redis.url
    import os
    import signal
    import sys

    repo = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "PYTHONPATH": str(repo),
        "CONSULTAS_DATABASE_URL": db_url,
        "CONSULTAS_BROKER_URL": redis_url,
        "CONSULTAS_SECRET_KEY": "test-secret",
        "CONSULTAS_VAR_DIR": str(tmp_path / "var"),
        "CONSULTAS_SMTP_HOST": smtp_sink.host,
        "CONSULTAS_SMTP_PORT": str(smtp_sink.port),
        "CONSULTAS_SMTP_STARTTLS": "false",
        "CONSULTAS_LOG_LEVEL": "WARNING",  # no line per mail sent, though Dramatiq's CLI logs at INFO
    }
    runtime = init_runtime(smtp_settings(db_url, smtp_sink, tmp_path, broker_url=redis_url))
    configure_broker(redis_url)
    command = [sys.executable, "-m", "app.cli", "worker", "--processes", "2", "--threads", "2"]
    process = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        ids = queue_mails(runtime.sessions, 12)
        assert hint_send(ids + ids) == 24
        smtp_sink.wait_for(12, timeout=60)
        redis_broker = dramatiq.get_broker()
        redis_broker.join(OUTBOX_QUEUE, timeout=30_000)
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0].decode(errors="replace")
        close_runtime()
        configure_broker("memory")
    expected = message_ids_of(runtime.sessions, ids)
    assert delivered_counts(smtp_sink) == Counter({message_id: 1 for message_id in expected}), output
    assert statuses(runtime.sessions, ids) == [OutboxStatus.SENT] * 12
    assert "ready for action" in output  # Dramatiq's own lines keep their level
    assert "[workers.mail] [INFO]" not in output, output

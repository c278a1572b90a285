"""Helpers for the sending tests: mails committed to the outbox, SMTP settings, workers on a broker."""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dramatiq
import pytest
import redis
from sqlalchemy.orm import Session, sessionmaker

from consultas.clock import FixedClock
from consultas.mailer import Envelope
from consultas.models import Outbox, OutboxStatus
from consultas.outbox import MailIdentity, enqueue_mail
from consultas.settings import Settings
from tests.servers._net import free_port, wait_for_port
from tests.servers.smtp_sink import SmtpSink
from workers.broker import OUTBOX_QUEUE, configure_broker
from workers.runtime import Runtime, close_runtime, init_runtime

NOW = datetime(2024, 11, 28, 15, 0, tzinfo=UTC)
IDENTITY = MailIdentity(address="consultas@mef.gob.pe", name="Consultas MEF")
CONTEXT = {
    "consulta": {
        "number": "CONS-2024-000001", "full_name": "José Pérez Quispe", "document_type": "DNI",
        "document_number": "12345678", "entity_name": "", "entity_ruc": "", "email": "jose@example.pe",
        "phone": "+51987654321", "question": "¿Cómo registro una inversión?",
        "presented_on": "2024-11-28", "due_on": "2024-12-13", "due_working_days": 10,
    }
}  # fmt: skip


def queue_mails(
    sessions: sessionmaker[Session], count: int, *, to: tuple[str, ...] = ("jose@example.pe",), key: str = "m"
) -> list[int]:
    """Commit ``count`` confirmation mails to the outbox (as intake would) and return their row ids."""
    ids = []
    with sessions.begin() as session:
        for index in range(count):
            row = enqueue_mail(
                session,
                template="consulta_recibida",
                context=CONTEXT,
                envelope=Envelope(to=[to[0]], cc=list(to[1:])),
                identity=IDENTITY,
                idempotency_key=f"{key}:{index}",
                now=NOW,
            )
            assert row is not None
            ids.append(row.id)
    return ids


def message_ids_of(sessions: sessionmaker[Session], ids: list[int]) -> list[str]:
    with sessions() as session:
        return [session.get(Outbox, i).message.message_id for i in ids]  # type: ignore[union-attr]


def statuses(sessions: sessionmaker[Session], ids: list[int]) -> list[OutboxStatus]:
    with sessions() as session:
        return [session.get(Outbox, i).status for i in ids]  # type: ignore[union-attr]


def delivered_counts(sink: SmtpSink) -> Counter[str]:
    """How many times each Message-ID arrived at the sink."""
    return Counter(str(captured.message["Message-ID"]) for captured in sink.messages)


def smtp_settings(db_url: str, sink: SmtpSink, tmp_path: Path, broker_url: str = "memory") -> Settings:
    return Settings(
        database_url=db_url,
        broker_url=broker_url,
        var_dir=tmp_path / "var",
        secret_key="test-secret",
        smtp_host=sink.host,
        smtp_port=sink.port,
        smtp_starttls=False,
        smtp_timeout_s=5.0,
        outbox_max_attempts=3,
    )


@dataclass
class Workers:
    """A runtime plus a Dramatiq worker on a freshly configured broker (memory or Redis)."""

    runtime: Runtime
    broker: dramatiq.Broker
    worker: dramatiq.Worker
    clock: FixedClock

    def wait(self) -> None:
        self.broker.join(OUTBOX_QUEUE)
        self.worker.join()


@pytest.fixture
def workers_on(db_url: str, smtp_sink: SmtpSink, tmp_path: Path) -> Iterator[Callable[[str], Workers]]:
    """Start workers against a broker URL; everything is stopped and reset afterwards."""
    started: list[Workers] = []

    def start(broker_url: str) -> Workers:
        clock = FixedClock(NOW)
        runtime = init_runtime(smtp_settings(db_url, smtp_sink, tmp_path, broker_url), clock=clock)
        broker = configure_broker(broker_url)
        worker = dramatiq.Worker(broker, worker_threads=4, worker_timeout=50)
        worker.start()
        started.append(Workers(runtime, broker, worker, clock))
        return started[-1]

    yield start
    for workers in started:
        workers.worker.stop()
    close_runtime()
    configure_broker("memory")


@pytest.fixture(params=["memory", "redis"])
def broker_url(request: pytest.FixtureRequest) -> str:
    """The in-process broker and the real Redis (db 15, flushed)."""
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        return url
    return "memory"


class OwnRedis:
    """A redis-server of our own on a free port, which a test may shut down and start again."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        subprocess.run(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "yes", "--dir", str(self.directory)],
            check=True, capture_output=True, timeout=10,
        )  # fmt: skip
        wait_for_port("127.0.0.1", self.port)

    def stop(self) -> None:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=2)
        try:
            client.shutdown(nosave=True)
        except redis.ConnectionError:
            pass  # shutting down closes the connection under the reply; already down is fine too
        finally:
            client.close()
        wait_for_port("127.0.0.1", self.port, open_=False)

"""Killing the service while it sends: every citizen gets one number and a confirmation, none is
sent twice but the one mail in flight at each kill, and all mail is out within a minute of the restart.

Real processes (``consultas serve``; ``consultas poll`` + ``consultas worker`` + ``consultas scheduler``
on Redis), a real SMTP server (the test's sink, answering DATA slowly so that kills land while mail
is being sent), SIGKILL at seeded random moments.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from consultas.db import make_engine, make_sessionmaker, upgrade
from consultas.models import Consulta, Outbox, OutboxStatus
from tests.plugins.database import _empty_tables
from tests.servers.smtp_sink import Captured, SmtpSink

pytestmark = pytest.mark.slow

CITIZENS = 150
#: Seconds the sink takes to answer each DATA: sending 300 mails then lasts several seconds.
DATA_DELAY_S = 0.1
RECOVERY_LIMIT_S = 60.0
CONFIRMATION = re.compile(r"\[(CONS-\d{4}-\d{6})\] Su consulta ha sido registrada")
ROOT = Path(__file__).resolve().parents[1]


def citizen_mails(folder: Path, count: int) -> list[str]:
    """Write ``count`` complete consultas into the Maildir ``folder``/new; the citizens' addresses."""
    (folder / "new").mkdir(parents=True, exist_ok=True)
    for sub in ("cur", "tmp"):
        (folder / sub).mkdir(exist_ok=True)
    addresses = []
    for index in range(count):
        address = f"ciudadano{index:03d}@example.pe"
        mail = EmailMessage()
        mail["From"] = f"Rosa Quispe Mamani {index:03d} <{address}>"
        mail["To"] = "consultas@mef.gob.pe"
        mail["Subject"] = "Consulta sobre el registro de una inversión"
        mail["Message-ID"] = make_msgid(domain="example.pe")
        mail.set_content(
            f"Nombre: Rosa Quispe Mamani\nDNI: {40000000 + index}\nCelular: 9{87000000 + index}\n\n"
            "Consulta: ¿cómo registro en el Banco de Inversiones una inversión de optimización "
            "cuyo monto supera el de la ficha técnica aprobada?\n"
        )
        (folder / "new" / f"{index:06d}.eml").write_bytes(mail.as_bytes())
        addresses.append(address)
    return addresses


@dataclass
class Deliveries:
    """What the sink received, by Message-ID and by citizen."""

    mails: list[Captured]

    @property
    def duplicates(self) -> int:
        return len(self.mails) - len({self._message_id(m) for m in self.mails})

    def numbers_by_citizen(self) -> dict[str, set[str]]:
        numbers: dict[str, set[str]] = defaultdict(set)
        for mail in self.mails:
            match = CONFIRMATION.search(mail.subject)
            if match:
                for recipient in mail.rcpt_tos:
                    numbers[recipient.lower()].add(match.group(1))
        return numbers

    def message_ids(self) -> Counter[str]:
        return Counter(self._message_id(m) for m in self.mails)

    @staticmethod
    def _message_id(mail: Captured) -> str:
        return str(mail.message["Message-ID"]).strip()


class Process:
    """One ``consultas`` command in its own process group (its children are killed with it)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args],
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL the whole group: no clean-up runs, as when a machine or container dies."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self._log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
        self._log.close()


@pytest.fixture
def service_env(tmp_path: Path, smtp_sink: SmtpSink) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSULTAS_")}
    env.update(
        PYTHONPATH=str(ROOT),
        CONSULTAS_VAR_DIR=str(tmp_path / "var"),
        CONSULTAS_SECRET_KEY="crash-test-secret",
        CONSULTAS_SMTP_HOST=smtp_sink.host,
        CONSULTAS_SMTP_PORT=str(smtp_sink.port),
        CONSULTAS_SMTP_STARTTLS="false",
        CONSULTAS_SMTP_TIMEOUT_S="10",
        CONSULTAS_AUTO_REPLY_CAP_PER_DAY="100",
        CONSULTAS_LOG_LEVEL="WARNING",
    )
    smtp_sink.slow_down(DATA_DELAY_S)
    yield env


def wait_until_all_sent(db_url: str, sink: SmtpSink, *, limit_s: float) -> float:
    """Seconds until every outbox row is sent and its mail is at the sink; fails after ``limit_s``."""
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    started = time.monotonic()
    try:
        while time.monotonic() - started < limit_s:
            with sessions() as session:
                unsent = session.scalar(
                    select(func.count()).select_from(Outbox).where(Outbox.status != OutboxStatus.SENT)
                )
                total = session.scalar(select(func.count()).select_from(Outbox)) or 0
            if total and not unsent and len(Deliveries(sink.messages).message_ids()) >= total:
                return time.monotonic() - started
            time.sleep(0.2)
    finally:
        engine.dispose()
    pytest.fail(f"mail still unsent {limit_s:.0f} s after the last restart")


def consultas_per_citizen(db_url: str) -> Counter[str]:
    engine = make_engine(db_url)
    try:
        with make_sessionmaker(engine)() as session:
            return Counter(email.lower() for email in session.scalars(select(Consulta.email)) if email)
    finally:
        engine.dispose()


def assert_each_citizen_served_once(
    db_url: str, citizens: list[str], sink: SmtpSink, *, kills: int, most_in_flight: int
) -> Deliveries:
    deliveries = Deliveries(sink.messages)
    numbers = deliveries.numbers_by_citizen()
    assert sorted(numbers) == sorted(citizens), "a citizen got no confirmation"
    assert all(len(found) == 1 for found in numbers.values()), "a citizen got two numbers"
    assert consultas_per_citizen(db_url) == Counter(dict.fromkeys(citizens, 1))
    # At most the mail each sending thread had in flight at each kill arrives twice.
    assert deliveries.duplicates <= kills * most_in_flight
    return deliveries


def test_serve_killed_while_sending_loses_nothing_and_sends_again_only_what_was_in_flight(
    tmp_path: Path, smtp_sink: SmtpSink, service_env: dict[str, str]
) -> None:
    citizens = citizen_mails(tmp_path / "var" / "maildir", CITIZENS)
    db_url = f"sqlite:///{tmp_path / 'var' / 'consultas.sqlite3'}"
    upgrade(db_url)
    rng = random.Random(16)
    kills = 6
    for _ in range(kills):
        serve = Process(["serve"], service_env, tmp_path / "serve.log")
        time.sleep(rng.uniform(1.0, 4.0))
        serve.kill()
    sent_before_last_start = len(smtp_sink.messages)
    serve = Process(["serve"], service_env, tmp_path / "serve.log")
    try:
        recovered_s = wait_until_all_sent(db_url, smtp_sink, limit_s=RECOVERY_LIMIT_S)
    finally:
        serve.stop()
    deliveries = assert_each_citizen_served_once(
        db_url, citizens, smtp_sink, kills=kills, most_in_flight=IN_PROCESS_SENDING_THREADS
    )
    assert 0 < sent_before_last_start < len(deliveries.mails), "the kills did not land while sending"
    print(
        f"serve: {kills} kills, {len(deliveries.mails)} deliveries, {deliveries.duplicates} duplicate(s), "
        f"all sent {recovered_s:.1f} s after the last start"
    )


#: ``consultas serve`` sends with the in-process workers' threads (``workers.runtime``).
IN_PROCESS_SENDING_THREADS = 4


def test_a_worker_on_redis_killed_while_sending_loses_nothing_and_a_restart_sends_the_rest(
    tmp_path: Path, smtp_sink: SmtpSink, service_env: dict[str, str], redis_url: str, postgres_url: str
) -> None:
    engine = make_engine(postgres_url)
    _empty_tables(engine)  # the test session's database, emptied for this test
    engine.dispose()
    env = {**service_env, "CONSULTAS_DATABASE_URL": postgres_url, "CONSULTAS_BROKER_URL": redis_url}
    citizens = citizen_mails(tmp_path / "var" / "maildir", CITIZENS)
    threads = 2
    scheduler = Process(["scheduler"], env, tmp_path / "scheduler.log")
    poller = Process(["poll"], env, tmp_path / "poll.log")
    rng = random.Random(17)
    kills = 4
    try:
        for _ in range(kills):
            worker = Process(["worker", "--threads", str(threads)], env, tmp_path / "worker.log")
            time.sleep(rng.uniform(2.0, 4.0))
            worker.kill()
        worker = Process(["worker", "--threads", str(threads)], env, tmp_path / "worker.log")
        try:
            recovered_s = wait_until_all_sent(postgres_url, smtp_sink, limit_s=RECOVERY_LIMIT_S)
        finally:
            worker.stop()
    finally:
        poller.stop()
        scheduler.stop()
    deliveries = assert_each_citizen_served_once(
        postgres_url, citizens, smtp_sink, kills=kills, most_in_flight=threads
    )
    print(
        f"worker: {kills} kills, {len(deliveries.mails)} deliveries, {deliveries.duplicates} duplicate(s), "
        f"all sent {recovered_s:.1f} s after the last start"
    )

"""Follow-up work through a real broker: the scheduler's ticks, Dramatiq workers, mail at the SMTP sink.

Issue 5 asks for tests on the real Redis broker and on the in-process one. Here the reminder,
digest and quarterly-report actors run exactly as in production: the scheduler's tick functions
(``followup_tick``, ``quarterly_tick``, ``outbox_tick``) enqueue them on the broker, Dramatiq
workers execute them, the outbox sweep they enqueue hands the queued mails to ``send_outbox_row``,
and the assertions are made on what arrives at the SMTP sink: what OGDAU and the Red would read.

Both brokers run the same flow:
- ``memory``: the in-process ``StubBroker`` of the embedded mode;
- ``redis``: a ``RedisBroker`` on a private redis-server (``OwnRedis`` of tests/workers_support.py, once per
  module and flushed per test, so no other test session can flush the queues under us).
The workers are in-thread ``dramatiq.Worker`` s bound to that broker, not a ``consultas worker``
subprocess: the actors read "now" from the process's runtime clock, and the controllable
``FixedClock`` (a working day at office hours) cannot reach another process.
"""

from __future__ import annotations

import codecs
import csv
import io
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import dramatiq
import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import workers.actors  # noqa: F401  (declares every actor)
from consultas.calendar import WorkingCalendar
from consultas.clock import FixedClock
from consultas.models import Consulta, Message, Outbox, OutboxStatus, RedMember, RedRole
from consultas.settings import Settings
from tests.followup_support import ALTERNO, OGDAU, ON, TITULAR, add_organos, insert, lima
from tests.followup_support import DIGEST_HAND_MADE as DIGEST_DATA
from tests.followup_support import REPORT_HAND_MADE as REPORT_DATA
from tests.plugins.servers import server_unavailable
from tests.servers.smtp_sink import Captured, SmtpSink
from tests.workers_support import OwnRedis, smtp_settings
from workers.broker import OUTBOX_QUEUE, configure_broker
from workers.reminders import FOLLOWUP_QUEUE
from workers.runtime import Runtime, close_runtime, init_runtime
from workers.scheduler import followup_tick, outbox_tick, quarterly_tick

OGSU = "ogsu@mef.gob.pe"
#: Longest wait for a queue to drain: a stuck or retried message fails the test instead of hanging it.
JOIN_TIMEOUT_MS = 20_000
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def followup_settings(db_url: str, sink: SmtpSink, tmp_path: Path, broker_url: str) -> Settings:
    """The sending tests' settings, with OGDAU's and OGSU's addresses (the digest's and report's)."""
    settings = smtp_settings(db_url, sink, tmp_path, broker_url)
    return settings.model_copy(update={"ogdau_email": OGDAU, "ogsu_email": OGSU})


@dataclass
class FollowupWorkers:
    """The runtime (with its controllable clock) and a Dramatiq worker on one broker."""

    runtime: Runtime
    broker: dramatiq.Broker
    worker: dramatiq.Worker
    clock: FixedClock

    @property
    def calendar(self) -> WorkingCalendar:
        return self.runtime.config.calendar

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self.runtime.sessions

    def drain(self, queue_name: str) -> None:
        """Wait until every message of ``queue_name`` (and what it enqueued there) was processed."""
        self.broker.join(queue_name, timeout=JOIN_TIMEOUT_MS)
        self.worker.join()

    def sweep_and_send(self) -> None:
        """The scheduler's next outbox ticks, one minute on: the sweep hands the due mails to sending.

        A minute passes first because the periodic sweep leaves alone rows younger than its grace
        period (their hint may still be queued). The tick is sent twice, as by two schedulers.
        """
        self.clock.advance(timedelta(minutes=1))
        assert outbox_tick() + outbox_tick() == ["sweep_outbox", "sweep_outbox"]
        self.drain(OUTBOX_QUEUE)


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRedis]:
    """A redis-server of our own for this module (``OwnRedis``, started once).

    Private, so no other test session flushing the shared db 15 can drop our queues; module-scoped
    because a redis-server takes seconds to shut down.
    """
    if shutil.which("redis-server") is None:
        server_unavailable("redis-server is not installed")
    server = OwnRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["memory", "redis"])
def followup_broker_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The in-process broker, and the real Redis (private, emptied before and after each test)."""
    if request.param == "memory":
        yield "memory"
        return
    server: OwnRedis = request.getfixturevalue("private_redis")
    client = redis.Redis.from_url(server.url, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.flushall()
        yield server.url
        client.flushall()
    finally:
        client.close()


@pytest.fixture
def followup_workers(
    db_url: str, smtp_sink: SmtpSink, tmp_path: Path, followup_broker_url: str
) -> Iterator[FollowupWorkers]:
    """A runtime at a fixed instant and a 4-thread worker on the broker; all stopped afterwards."""
    clock = FixedClock(T0)
    runtime = init_runtime(followup_settings(db_url, smtp_sink, tmp_path, followup_broker_url), clock=clock)
    broker = configure_broker(followup_broker_url)
    worker = dramatiq.Worker(broker, worker_threads=4, worker_timeout=50)
    worker.start()
    try:
        yield FollowupWorkers(runtime, broker, worker, clock)
    finally:
        worker.stop()
        close_runtime()
        configure_broker("memory")


def add_red_members(session: Session, organo: str = "DGPP") -> None:
    """The órgano's current titular and alterno (the órgano itself comes from ``add_organos``)."""
    for role, email in ((RedRole.TITULAR, TITULAR), (RedRole.ALTERNO, ALTERNO)):
        session.add(RedMember(organo_code=organo, role=role, name=role.value, email=email, valid_from=T0))
    session.flush()


def mails_by_kind(sessions: sessionmaker[Session], sink: SmtpSink) -> dict[tuple[str, str | None], Captured]:
    """Each captured mail keyed by (outbox template, consulta number), from its Message-ID."""
    with sessions() as session:
        rows = session.execute(
            select(Message.message_id, Outbox.template, Consulta.number)
            .join(Outbox, Outbox.message_pk == Message.id)
            .outerjoin(Consulta, Consulta.id == Outbox.consulta_id)
        ).all()
    kinds = {message_id: (template, number) for message_id, template, number in rows}
    found: dict[tuple[str, str | None], Captured] = {}
    for captured in sink.messages:
        kind = kinds[str(captured.message["Message-ID"])]
        assert kind not in found, f"{kind} delivered twice"
        found[kind] = captured
    return found


def headers(captured: Captured) -> tuple[str, str | None, list[str]]:
    """(To, Cc, SMTP recipients) of a captured mail."""
    cc = captured.message["Cc"]
    return str(captured.message["To"]), None if cc is None else str(cc), sorted(captured.rcpt_tos)


def plain_text(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    content = body.get_content()
    assert isinstance(content, str)
    return content


def seed_digest_data_and_red(sessions: sessionmaker[Session]) -> None:
    """The digest's hand-counted data set (as of Monday 18 August 2025) and DGPP's Red members."""
    with sessions.begin() as session:
        add_organos(session)
        insert(session, DIGEST_DATA)
        add_red_members(session)


def all_sent(sessions: sessionmaker[Session]) -> bool:
    with sessions() as session:
        return all(status == OutboxStatus.SENT for status in session.scalars(select(Outbox.status)))


def test_the_opening_tick_mails_ogdau_its_digest_and_the_red_its_reminders_and_escalations_once(
    followup_workers: FollowupWorkers, smtp_sink: SmtpSink
) -> None:
    workers = followup_workers
    # Given the digest's hand-counted data set (as of Monday 18 August 2025) and DGPP's Red
    seed_digest_data_and_red(workers.sessions)
    # When the scheduler's 08:30 tick of that working day fires twice (two schedulers, or a misfire)
    workers.clock.set(lima(ON, 8, 30))
    expected_tick = ["run_reminders_job", "send_daily_digest(2025-08-18)"]
    assert followup_tick(workers.clock, workers.calendar) == expected_tick
    assert followup_tick(workers.clock, workers.calendar) == expected_tick
    workers.drain(FOLLOWUP_QUEUE)
    # And the outbox sweep hands what the actors queued to the sending workers
    workers.sweep_and_send()

    # Then six mails arrived, each exactly once, and every outbox row is sent
    assert sorted(Counter(str(c.message["Message-ID"]) for c in smtp_sink.messages).values()) == [1] * 6
    assert all_sent(workers.sessions)
    mails = mails_by_kind(workers.sessions, smtp_sink)
    titular_and_alterno = (TITULAR, ALTERNO, sorted([TITULAR, ALTERNO]))
    assert {kind: headers(mail) for kind, mail in mails.items()} == {
        # OGDAU's digest of the day
        ("resumen_diario", None): (OGDAU, None, [OGDAU]),
        # reminders to the titular with the alterno in Cc: due today (offset 0), in 2 and in 3 days
        ("recordatorio_red", "CONS-2025-000001"): titular_and_alterno,
        ("recordatorio_red", "CONS-2025-000002"): titular_and_alterno,
        ("recordatorio_red", "CONS-2025-000003"): titular_and_alterno,
        # escalation of the overdue DGPP consulta: titular and alterno, OGDAU in Cc
        ("escalamiento", "CONS-2025-000004"): (
            f"{TITULAR}, {ALTERNO}",
            OGDAU,
            sorted([TITULAR, ALTERNO, OGDAU]),
        ),
        # the overdue administrativa consulta has no Red: OGDAU alone
        ("escalamiento", "CONS-2025-000005"): (OGDAU, None, [OGDAU]),
    }

    digest = mails[("resumen_diario", None)].message
    assert (
        digest["Subject"]
        == "Resumen diario de consultas del lunes 18 de agosto de 2025: 5 pendientes, 2 vencidas"
    )
    assert digest["Date"].datetime == lima(ON, 8, 30)
    assert "(3 días hábiles de atraso)" in plain_text(digest)
    assert digest.get_body(("html",)) is not None

    reminder = mails[("recordatorio_red", "CONS-2025-000003")].message  # due Thursday 21 August
    assert reminder["Subject"] == (
        "[CONS-2025-000003] Recordatorio: la consulta vence el jueves 21 de agosto de 2025"
    )
    assert "quedan 3 días hábiles" in plain_text(reminder)
    assert reminder["Reply-To"].startswith("consultas+cons-2025-000003.")
    due_today = mails[("recordatorio_red", "CONS-2025-000001")].message
    assert due_today["Subject"] == "[CONS-2025-000001] Recordatorio: la consulta vence hoy"

    escalation = mails[("escalamiento", "CONS-2025-000004")].message  # due Wednesday 13 August
    assert escalation["Subject"] == "[CONS-2025-000004] Consulta vencida: 3 días hábiles de atraso"
    administrativa = mails[("escalamiento", "CONS-2025-000005")].message  # due Friday 15 August
    assert administrativa["Subject"] == "[CONS-2025-000005] Consulta vencida: 1 día hábil de atraso"

    # When the next tick of the same day (08:45) runs and the sweep follows
    workers.clock.set(lima(ON, 8, 45))
    assert followup_tick(workers.clock, workers.calendar) == expected_tick
    workers.drain(FOLLOWUP_QUEUE)
    workers.sweep_and_send()
    # Then nothing more is sent
    assert len(smtp_sink.messages) == 6


def test_ticks_outside_office_hours_and_on_holidays_send_nothing(
    followup_workers: FollowupWorkers, smtp_sink: SmtpSink
) -> None:
    workers = followup_workers
    seed_digest_data_and_red(workers.sessions)
    # Monday 18 August before the office opens: both actors run and decline
    workers.clock.set(lima(ON, 8, 0))
    assert followup_tick(workers.clock, workers.calendar) == [
        "run_reminders_job",
        "send_daily_digest(2025-08-18)",
    ]
    # Wednesday 6 August (Batalla de Junín) at 10:00: no digest is even enqueued, reminders decline
    workers.clock.set(lima(date(2025, 8, 6), 10))
    assert followup_tick(workers.clock, workers.calendar) == ["run_reminders_job"]
    workers.drain(FOLLOWUP_QUEUE)
    workers.sweep_and_send()
    assert smtp_sink.messages == []
    with workers.sessions() as session:
        assert session.scalars(select(Outbox)).all() == []


def test_the_quarterly_tick_mails_the_report_with_its_csv_to_ogsu_and_ogdau_once(
    followup_workers: FollowupWorkers, smtp_sink: SmtpSink
) -> None:
    workers = followup_workers
    # Given the report's hand-counted data set for 2025Q3
    with workers.sessions.begin() as session:
        add_organos(session)
        insert(session, REPORT_DATA)
    # When the 08:45 report tick of Wednesday 1 October (first working day after Q3) fires twice
    workers.clock.set(lima(date(2025, 10, 1), 8, 45))
    assert quarterly_tick(workers.clock, workers.calendar) == ["send_quarterly_report(2025Q3)"]
    assert quarterly_tick(workers.clock, workers.calendar) == ["send_quarterly_report(2025Q3)"]
    workers.drain(FOLLOWUP_QUEUE)
    workers.sweep_and_send()

    # Then OGSU (OGDAU in Cc) got one mail with the report as CSV
    (captured,) = smtp_sink.messages
    assert headers(captured) == (OGSU, OGDAU, sorted([OGSU, OGDAU]))
    mail = captured.message
    assert mail["Subject"].startswith("Reporte trimestral de atención de consultas 2025Q3 (")
    assert mail["Date"].datetime == lima(date(2025, 10, 1), 8, 45)
    (attachment,) = list(mail.iter_attachments())
    assert attachment.get_filename() == "reporte_consultas_2025Q3.csv"
    assert attachment.get_content_type() == "text/csv"
    assert attachment.get_content_charset() == "utf-8"  # a mail preview shows the accents right
    saved = attachment.get_payload(decode=True)  # the file OGSU opens (in Excel: UTF-8 with a BOM)
    assert isinstance(saved, bytes) and saved.startswith(codecs.BOM_UTF8)
    assert list(csv.reader(io.StringIO(saved.decode("utf-8-sig")))) == [
        ["organo", "nombre", "recibidas", "respondidas_en_plazo", "respondidas_fuera_de_plazo", "pendientes",
         "vencidas", "promedio_dias_habiles"],
        ["DGETP", "Órgano DGETP", "3", "0", "0", "3", "1", ""],
        ["DGPP", "Órgano DGPP", "2", "2", "1", "0", "0", "10.00"],
        ["OGDAU", "Oficina de Gestión Documental y Atención al Usuario", "1", "1", "0", "0", "0", "0.00"],
        ["TOTAL", "Total", "6", "3", "1", "3", "1", "7.50"],
    ]  # fmt: skip
    assert all_sent(workers.sessions)

    # When the tick fires again the next working day (still inside the catch-up window)
    workers.clock.set(lima(date(2025, 10, 2), 8, 45))
    assert quarterly_tick(workers.clock, workers.calendar) == ["send_quarterly_report(2025Q3)"]
    workers.drain(FOLLOWUP_QUEUE)
    workers.sweep_and_send()
    # Then the report is not sent again
    assert len(smtp_sink.messages) == 1

"""The watchdog against real servers: a refused mailbox login under a running `consultas serve`,
mail left waiting, SMTP refusing; readiness at once, one alert per incident, one on recovery.

The clock is a ``FixedClock`` the test moves: "ten minutes" pass in an instant, while the
servers and the service's loops run in real time.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.serve import serve
from consultas.clock import FixedClock
from consultas.context import ServiceConfig
from consultas.health import liveness
from consultas.models import Message, OpsIncident, Outbox
from consultas.settings import Settings
from consultas.watchdog import IMAP_POLL, record_probe
from intake.imap_poller import poll_once
from intake.watchdog import watchdog_tick
from tests.intake_imap_support import MAILBOX, NOW, citizen_mail, imap_settings, wait_until
from tests.servers._net import free_port
from tests.servers.dovecot import DovecotServer
from tests.servers.smtp_sink import Captured, SmtpSink

OGDAU = "ogdau@mef.gob.pe"
OPS = "operaciones@mef.gob.pe"
UNREADABLE = "La casilla de consultas no se puede leer"
RECOVERED = "La casilla de consultas se puede leer otra vez"


def watched_settings(dovecot: DovecotServer, smtp_sink: SmtpSink, db_url: str, var: Path) -> Settings:
    return imap_settings(
        dovecot,
        db_url,
        var,
        smtp_host=smtp_sink.host,
        smtp_port=smtp_sink.port,
        smtp_starttls=False,
        ogdau_email=OGDAU,
        ops_email=OPS,
        watchdog_interval_s=0.2,
        web_port=free_port("127.0.0.1"),
    )


@dataclass
class Served:
    settings: Settings
    clock: FixedClock
    loop: asyncio.AbstractEventLoop
    stop: asyncio.Event


@pytest.fixture
def served(dovecot: DovecotServer, smtp_sink: SmtpSink, db_url: str, tmp_path: Path) -> Iterator[Served]:
    """`consultas serve` (intake, workers, watchdog) in a thread, on a clock the test moves."""
    settings = watched_settings(dovecot, smtp_sink, db_url, tmp_path / "var")
    clock = FixedClock(NOW)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            loop.run_until_complete(serve(settings, clock=clock, stop=stop))
        except BaseException as exc:  # reported by the fixture below
            failure.append(exc)

    thread = threading.Thread(target=run, name="serve", daemon=True)
    thread.start()
    try:
        yield Served(settings, clock, loop, stop)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()
        dovecot.add_user(MAILBOX, "secret")
    assert not thread.is_alive() and not failure, failure


def ready(sessions: sessionmaker[Session], served: Served) -> tuple[bool, dict[str, Any]]:
    """``GET /readyz`` of the served web app: (200?, its JSON)."""
    try:
        response = httpx.get(f"http://127.0.0.1:{served.settings.web_port}/readyz", timeout=10)
    except httpx.TransportError:  # the web piece is still starting
        return False, {}
    assert response.status_code in {200, 503}, response.text
    body: dict[str, Any] = response.json()
    return response.status_code == 200, body


def alerts(smtp_sink: SmtpSink, title: str) -> list[Captured]:
    return [m for m in smtp_sink.messages if title in m.subject]


@pytest.mark.slow
def test_a_refused_mailbox_login_is_not_ready_at_once_alerted_once_after_ten_minutes_and_on_recovery(
    served: Served, dovecot: DovecotServer, smtp_sink: SmtpSink, sessions: sessionmaker[Session]
) -> None:
    assert liveness() == {"status": "ok"}
    wait_until(lambda: ready(sessions, served)[0], what="the service to be ready")

    # The mailbox password changes (expired): not ready within a minute, no alert yet
    refused_at = time.monotonic()
    dovecot.add_user(MAILBOX, "clave-cambiada")
    wait_until(lambda: not ready(sessions, served)[0], timeout_s=60, what="/readyz to fail")
    assert time.monotonic() - refused_at < 60
    _, body = ready(sessions, served)
    mailbox = body["mailbox"]
    assert isinstance(mailbox, dict) and "login failing" in str(mailbox["error"])
    assert "LOGIN" in str(mailbox["error"]) and "clave" not in str(body) and "secret" not in str(body)
    assert body["database"] == {"ok": True, "error": None}
    time.sleep(1.0)  # several watchdog ticks
    assert alerts(smtp_sink, UNREADABLE) == []

    # Ten minutes later: one alert to OGDAU and the operations address
    served.clock.advance(timedelta(minutes=10, seconds=1))
    wait_until(lambda: len(alerts(smtp_sink, UNREADABLE)) == 1, what="the alert")
    [alert] = alerts(smtp_sink, UNREADABLE)
    assert sorted(alert.rcpt_tos) == sorted([OGDAU, OPS])
    # ... and only one, however many polls and ticks follow
    for _ in range(3):
        served.clock.advance(timedelta(minutes=5))
        time.sleep(0.7)
    assert len(alerts(smtp_sink, UNREADABLE)) == 1
    _, body = ready(sessions, served)
    watchdog = body["watchdog"]
    assert isinstance(watchdog, dict)
    assert [i["kind"] for i in watchdog["incidents"]] == ["mailbox_unreadable"]

    # The password is fixed: one recovery mail, ready again
    dovecot.add_user(MAILBOX, "secret")
    wait_until(lambda: len(alerts(smtp_sink, RECOVERED)) == 1, what="the recovery mail")
    wait_until(lambda: ready(sessions, served)[0], what="the service to be ready again")
    time.sleep(1.0)
    assert len(alerts(smtp_sink, UNREADABLE)) == 1 and len(alerts(smtp_sink, RECOVERED)) == 1
    with sessions() as session:
        incidents = session.execute(select(OpsIncident.kind, OpsIncident.closed_at)).all()
    assert [(kind, closed is not None) for kind, closed in incidents] == [("mailbox_unreadable", True)]


def queued_alert_subjects(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as session:
        return [
            str(subject)
            for subject in session.scalars(
                select(Message.subject)
                .join(Outbox, Outbox.message_pk == Message.id)
                .where(Outbox.template == "aviso_ogdau")
                .order_by(Outbox.id)
            )
        ]


@pytest.mark.slow
async def test_mail_left_waiting_and_a_refusing_smtp_server_are_incidents_after_fifteen_minutes(
    dovecot: DovecotServer, smtp_sink: SmtpSink, db_url: str, tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    settings = watched_settings(dovecot, smtp_sink, db_url, tmp_path / "var")
    config = ServiceConfig.from_settings(settings)
    clock = FixedClock(NOW)
    start = clock.now()

    async def tick() -> list[tuple[str, bool]]:
        with sessions.begin() as session:  # a poller that still polls (but does not get the mail out)
            record_probe(session, IMAP_POLL, now=clock.now(), ok=True)
        changes, _ = await watchdog_tick(settings, sessions, config, clock, watching_since=start)
        return [(change.kind.value, change.opened) for change in changes]

    dovecot.deliver(citizen_mail(1), MAILBOX)
    assert await tick() == []
    clock.advance(timedelta(minutes=14))
    assert await tick() == []
    clock.advance(timedelta(minutes=1))
    assert await tick() == [("mail_waiting", True)]
    assert await tick() == []

    # SMTP refuses connections: an incident after 15 minutes of it
    smtp_sink.stop()
    try:
        assert await tick() == []
        clock.advance(timedelta(minutes=15))
        assert await tick() == [("smtp_refusing", True)]
    finally:
        smtp_sink.start()

    # The mail is processed and SMTP answers again: both recover, once each
    await poll_once(settings, sessions, config, clock)
    assert sorted(await tick()) == [("mail_waiting", False), ("smtp_refusing", False)]
    assert await tick() == []
    subjects = queued_alert_subjects(sessions)
    assert [s.split(": ", 1)[1] for s in subjects] == [
        "Hay correos sin procesar en la casilla de consultas",
        "El servidor de correo saliente rechaza los envíos",
        "Los correos de la casilla de consultas se procesan otra vez",
        "El servidor de correo saliente acepta los envíos otra vez",
    ]


@pytest.mark.slow
def test_metrics_parse_and_count_the_mails_that_went_through(
    served: Served, dovecot: DovecotServer, smtp_sink: SmtpSink, sessions: sessionmaker[Session]
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    for n in (1, 2, 3):
        dovecot.deliver(citizen_mail(n), MAILBOX)
    dovecot.deliver(
        citizen_mail(
            4,
            subject="Respuesta automática: fuera de la oficina",
            extra_headers={"Auto-Submitted": "auto-replied"},
        ),
        MAILBOX,
    )
    # Each citizen gets a confirmation, OGDAU a routed mail per consulta (no Red loaded)
    wait_until(lambda: len(smtp_sink.messages) >= 6, what="six mails sent")
    wait_until(lambda: dovecot.message_count(MAILBOX, "INBOX") == 0, what="an empty INBOX")
    time.sleep(0.5)
    response = httpx.get(f"http://127.0.0.1:{served.settings.web_port}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    body = response.content
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }
    assert samples[("consultas_mails_ingested_total", ())] == 4
    assert samples[("consultas_mails_automatic_total", ())] == 1
    assert samples[("consultas_mails_quarantined_total", ())] == 0
    assert samples[("consultas_consultas_admitted_total", (("channel", "email"),))] == 3
    assert samples[("consultas_outgoing_sent_total", (("channel", "email"),))] == len(smtp_sink.messages) == 6
    assert samples[("consultas_outgoing_pending", (("channel", "email"),))] == 0
    assert samples[("consultas_consultas_pending", (("organo", "OGDAU"),))] == 3
    assert samples[("consultas_consultas_overdue", (("organo", "OGDAU"),))] == 0
    assert samples[("consultas_last_poll_timestamp_seconds", ())] == served.clock.now().timestamp()
    assert samples[("consultas_poll_errors_total", ())] == 0
    assert all(name.startswith("consultas_") for name, _ in samples)


def test_readiness_fails_with_the_database_or_the_broker_down(tmp_path: Path) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker as make

    from consultas.health import service_readiness

    down = make(
        create_engine("postgresql+psycopg://127.0.0.1:1/consultas", connect_args={"connect_timeout": 2})
    )
    settings = Settings(_env_file=None, var_dir=tmp_path, broker_url="redis://127.0.0.1:1/0")
    result = service_readiness(settings, down, now=NOW)
    assert not result.ready and result.body["status"] == "not ready"
    assert result.body["database"]["ok"] is False and result.body["broker"]["ok"] is False
    assert "ConnectionError" in str(result.body["broker"]["error"])
    json.dumps(result.body)  # serialisable as it is


@pytest.mark.slow
def test_a_stopped_mailbox_server_is_not_ready_at_once_alerted_once_and_its_return_is_told(
    served: Served, dovecot: DovecotServer, smtp_sink: SmtpSink, sessions: sessionmaker[Session]
) -> None:
    wait_until(lambda: ready(sessions, served)[0], what="the service to be ready")
    stopped_at = time.monotonic()
    dovecot.stop()
    wait_until(lambda: not ready(sessions, served)[0], timeout_s=60, what="/readyz to fail")
    assert time.monotonic() - stopped_at < 60
    served.clock.advance(timedelta(minutes=10, seconds=1))
    wait_until(lambda: len(alerts(smtp_sink, UNREADABLE)) == 1, what="the alert")
    served.clock.advance(timedelta(minutes=10))
    time.sleep(1.0)
    assert len(alerts(smtp_sink, UNREADABLE)) == 1
    assert alerts(smtp_sink, "La lectura de la casilla de consultas está detenida") == []  # one incident

    dovecot.start()
    wait_until(lambda: len(alerts(smtp_sink, RECOVERED)) == 1, what="the recovery mail")
    wait_until(lambda: ready(sessions, served)[0], timeout_s=60, what="the service to be ready again")
    assert len(alerts(smtp_sink, UNREADABLE)) == 1


def test_the_watchdog_command_prints_the_probes_and_open_incidents(
    db_url: str,
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from app.cli import main
    from consultas.watchdog import IMAP_LOGIN, IncidentKind, apply_incidents

    monkeypatch.setenv("CONSULTAS_DATABASE_URL", db_url)
    monkeypatch.setenv("CONSULTAS_SECRET_KEY", "watchdog-cli-secret")
    with sessions.begin() as session:
        record_probe(
            session, IMAP_LOGIN, now=NOW, ok=False, error="IMAP LOGIN as consultas@mef.gob.pe refused"
        )
        apply_incidents(
            session,
            {IncidentKind.MAILBOX_UNREADABLE: "No se puede iniciar sesión."},
            now=NOW,
            identity=ServiceConfig.from_settings(Settings(_env_file=None)).identity,
            recipients=[OGDAU],
        )
    assert main(["watchdog"]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["probes"]["imap_login"]["ok"] is False
    assert state["probes"]["imap_login"]["failing_since"] == NOW.isoformat()
    assert [i["kind"] for i in state["incidents"]] == ["mailbox_unreadable"]

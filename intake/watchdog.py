"""The watchdog loop (in ``consultas serve`` and ``consultas poll``): probe IMAP and SMTP, then decide.

Every ``CONSULTAS_WATCHDOG_INTERVAL_S``: a fresh IMAP login (independent of the poller's long-lived
connection, so an expired password or a full server shows even while an old session still works)
that also notes the oldest mail waiting in the intake folder; an SMTP session (EHLO, login, NOOP);
the decreed days reloaded into the calendar; then ``consultas.watchdog`` decides and alerts.
The rules live there; this module only talks to the servers, with the settings' timeouts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import aiosmtplib
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from consultas.clock import Clock
from consultas.context import ServiceConfig
from consultas.decreed_days import refresh_calendar
from consultas.errors import TransientError
from consultas.lease import acquire_lease
from consultas.models import OpsProbe
from consultas.settings import Settings
from consultas.watchdog import (
    IMAP_LOGIN,
    SMTP,
    IncidentChange,
    apply_incidents,
    evaluate,
    probe_views,
    record_probe,
)
from intake.imap_client import connect

logger = logging.getLogger(__name__)

#: One watchdog decides at a time (a lease in the database).
LEASE_NAME = "watchdog"
LEASE_MIN_TTL = timedelta(seconds=60)
DEFAULT_HOLDER = f"watchdog:{socket.gethostname()}:{os.getpid()}"
#: Called with the outbox ids of the alerts a tick queued (the workers' send hint).
AlertHook = Callable[[list[int]], object]


async def probe_imap(settings: Settings) -> tuple[bool, str | None, dict[str, Any]]:
    """Log in afresh and look at the intake folder: (ok, error, {"oldest_uid", "uidvalidity", "waiting"})."""
    try:
        async with connect(settings) as connection:
            selected = await connection.select(settings.imap_folder)
            uids = await connection.search_uids()
    except TransientError as exc:
        return False, str(exc), {}
    return (
        True,
        None,
        {
            "oldest_uid": min(uids) if uids else None,
            "uidvalidity": selected.uidvalidity,
            "waiting": len(uids),
        },
    )


async def probe_smtp(settings: Settings) -> tuple[bool, str | None]:
    """Open an SMTP session as the workers do and close it: (ok, error)."""
    client = aiosmtplib.SMTP(
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_user or None,
        password=settings.smtp_password.get_secret_value() or None,
        use_tls=settings.smtp_ssl,
        start_tls=settings.smtp_starttls,
        timeout=settings.smtp_timeout_s,
    )
    try:
        await client.connect()
        await client.noop()
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    finally:
        if client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()
    return True, None


def waiting_detail(previous: dict[str, Any], seen: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The login probe's detail: when the oldest waiting mail was first seen (by the watchdog's clock)."""
    if seen.get("oldest_uid") is None:
        return {"waiting": 0}
    same = (previous.get("oldest_uid"), previous.get("uidvalidity")) == (
        seen["oldest_uid"],
        seen["uidvalidity"],
    )
    seen_at = previous.get("oldest_seen_at") if same and previous.get("oldest_seen_at") else now.isoformat()
    return {**seen, "oldest_seen_at": seen_at}


async def watchdog_tick(
    settings: Settings,
    sessions: sessionmaker[Session],
    config: ServiceConfig,
    clock: Clock,
    *,
    watching_since: datetime,
    holder: str = DEFAULT_HOLDER,
) -> tuple[list[IncidentChange], list[int]]:
    """Probe, record, decide and alert once; returns the incident changes and the alerts' outbox ids.

    Only the holder of the ``watchdog`` lease records and decides, so several processes that run a
    watchdog (``serve``, each ``consultas poll``) never open an incident twice.
    """
    imap = bool(settings.imap_host)
    smtp = bool(settings.smtp_host)
    imap_result = await probe_imap(settings) if imap else None
    smtp_result = await probe_smtp(settings) if smtp else None
    return await asyncio.to_thread(
        _record_and_apply, settings, sessions, config, clock, imap_result, smtp_result, watching_since, holder
    )


def _record_and_apply(  # noqa: PLR0917 (one call site, run in a thread)
    settings: Settings,
    sessions: sessionmaker[Session],
    config: ServiceConfig,
    clock: Clock,
    imap_result: tuple[bool, str | None, dict[str, Any]] | None,
    smtp_result: tuple[bool, str | None] | None,
    watching_since: datetime,
    holder: str,
) -> tuple[list[IncidentChange], list[int]]:
    now = clock.now()
    ttl = max(LEASE_MIN_TTL, timedelta(seconds=4 * settings.watchdog_interval_s))
    with sessions.begin() as session:
        if not acquire_lease(session, LEASE_NAME, holder, now=now, ttl=ttl):
            return [], []  # another process watches
        refresh_calendar(config.calendar, settings.non_working_days, session)
        _refresh_runtime_calendar(settings, session)
        if imap_result is not None:
            ok, error, seen = imap_result
            previous = session.get(OpsProbe, IMAP_LOGIN)
            detail = (
                waiting_detail(dict(previous.detail or {}) if previous else {}, seen, now) if ok else None
            )
            record_probe(session, IMAP_LOGIN, now=now, ok=ok, error=error, detail=detail)
        if smtp_result is not None:
            record_probe(session, SMTP, now=now, ok=smtp_result[0], error=smtp_result[1])
        wanted = evaluate(
            probe_views(session),
            now=now,
            watching_since=watching_since,
            imap=imap_result is not None,
            smtp=smtp_result is not None,
        )
        recipients = [config.ogdau_email, *([settings.ops_email] if settings.ops_email else [])]
        from consultas.outbox import last_id, pending_after

        before = last_id(session)
        changes = apply_incidents(session, wanted, now=now, identity=config.identity, recipients=recipients)
        queued = pending_after(session, before) if changes else []
    return changes, queued


def _refresh_runtime_calendar(settings: Settings, session: Session) -> None:
    """In ``consultas serve`` the actors' runtime has its own calendar: keep it current too."""
    from consultas.errors import ConfigurationError
    from workers.runtime import get_runtime

    try:
        runtime = get_runtime()
    except ConfigurationError:  # no actors in this process
        return
    refresh_calendar(runtime.config.calendar, settings.non_working_days, session)


async def run_watchdog(
    settings: Settings,
    sessions: sessionmaker[Session],
    config: ServiceConfig,
    clock: Clock,
    stop: asyncio.Event,
    *,
    on_alert: AlertHook | None = None,
) -> None:
    """Tick every ``CONSULTAS_WATCHDOG_INTERVAL_S`` until ``stop``; a failed tick is logged and retried."""
    watching_since = clock.now()
    holder = f"{socket.gethostname()}:{os.getpid()}:{id(stop):x}"
    while not stop.is_set():
        # The first tick waits an interval too: start-up (intake, the first sends) goes first.
        try:
            await asyncio.wait_for(stop.wait(), settings.watchdog_interval_s)
            return
        except TimeoutError:
            pass
        try:
            _, queued = await watchdog_tick(
                settings, sessions, config, clock, watching_since=watching_since, holder=holder
            )
            if queued and on_alert is not None:
                on_alert(queued)
        except sa_exc.SQLAlchemyError as exc:  # the database is down: readiness says so; retry next tick
            logger.warning("watchdog: database unavailable (%s)", type(exc).__name__)

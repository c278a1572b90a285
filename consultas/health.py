"""Liveness and readiness as JSON: what ``GET /healthz`` and ``GET /readyz`` answer.

``liveness`` is the process being up; ``readiness`` checks the database, the broker, the mailbox
(the last successful poll and its age, the watchdog's fresh login), the SMTP server's last
success, the oldest pending outgoing mail and the watchdog's open incidents. A web layer maps
``Readiness.ready`` to 200 or 503 and serialises ``Readiness.body`` as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from consultas.models import Channel, Outbox, OutboxStatus
from consultas.settings import Settings
from consultas.watchdog import IMAP_LOGIN, IMAP_POLL, SMTP, probe_views, watchdog_state

#: A mailbox whose last successful poll is older than this is not ready (polls run every few seconds).
MAX_POLL_AGE = timedelta(seconds=60)
#: An outgoing mail due this long without being sent means sending is stuck.
MAX_PENDING_AGE = timedelta(minutes=15)

BrokerCheck = Callable[[], str | None]  # None when the broker answers, else the reason


@dataclass(frozen=True)
class Readiness:
    ready: bool
    body: dict[str, Any]


def liveness() -> dict[str, str]:
    """The process is up (no dependency is checked)."""
    return {"status": "ok"}


def redis_broker_check(url: str, timeout_s: float = 2.0) -> BrokerCheck:
    """A broker check for ``CONSULTAS_BROKER_URL``: PING for Redis, always fine for the in-process one."""
    if url == "memory":
        return lambda: None

    def check() -> str | None:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        try:
            client.ping()
        except redis.RedisError as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            client.close()
        return None

    return check


def _age_s(now: datetime, at: datetime | None) -> float | None:
    return round((now - at).total_seconds(), 1) if at is not None else None


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def readiness(
    sessions: sessionmaker[Session],
    *,
    now: datetime,
    broker_check: BrokerCheck,
    imap_watched: bool,
    smtp_watched: bool,
) -> Readiness:
    """Check every dependency; ``ready`` is False when any check fails (``/readyz`` answers 503)."""
    body: dict[str, Any] = {"checked_at": now.isoformat()}
    broker_error = broker_check()
    body["broker"] = {"ok": broker_error is None, "error": broker_error}
    try:
        with sessions() as session:
            session.execute(text("SELECT 1"))
            body["database"] = {"ok": True, "error": None}
            body.update(
                _from_database(session, now=now, imap_watched=imap_watched, smtp_watched=smtp_watched)
            )
    except sa_exc.SQLAlchemyError as exc:
        body["database"] = {"ok": False, "error": type(exc).__name__}
        for key in ("mailbox", "smtp", "outbox"):
            body[key] = {"ok": False, "error": "database unavailable"}
        body["watchdog"] = {"ok": False, "incidents": []}
    checks = ("database", "broker", "mailbox", "smtp", "outbox", "watchdog")
    ready = all(body[key]["ok"] for key in checks)
    body["status"] = "ready" if ready else "not ready"
    return Readiness(ready, body)


def service_readiness(settings: Settings, sessions: sessionmaker[Session], *, now: datetime) -> Readiness:
    """``readiness`` as the settings configure the service (what ``GET /readyz`` calls)."""
    return readiness(
        sessions,
        now=now,
        broker_check=redis_broker_check(settings.broker_url),
        imap_watched=bool(settings.imap_host),
        smtp_watched=bool(settings.imap_host and settings.smtp_host),  # probed by the watchdog
    )


def _from_database(
    session: Session, *, now: datetime, imap_watched: bool, smtp_watched: bool
) -> dict[str, Any]:
    probes = probe_views(session)
    poll, login, smtp = probes.get(IMAP_POLL), probes.get(IMAP_LOGIN), probes.get(SMTP)
    last_poll = poll.last_success_at if poll else None
    poll_age = _age_s(now, last_poll)
    mailbox: dict[str, Any] = {
        "watched": imap_watched,
        "last_successful_poll": _iso(last_poll),
        "age_s": poll_age,
        "login_ok": None if login is None else not login.failing,
        "error": None,
    }
    if imap_watched:
        problems = []
        if last_poll is None or now - last_poll > MAX_POLL_AGE:
            problems.append("no successful poll in the last minute")
        if poll is not None and poll.failing:
            problems.append(f"poll failing: {poll.last_error}")
        if login is not None and login.failing:
            problems.append(f"login failing: {login.last_error}")
        mailbox["error"] = "; ".join(problems) or None
    mailbox["ok"] = mailbox["error"] is None

    last_sent = session.scalar(
        select(func.max(Outbox.sent_at)).where(
            Outbox.channel == Channel.EMAIL, Outbox.status == OutboxStatus.SENT
        )
    )
    last_smtp = max(
        (t for t in (last_sent, smtp.last_success_at if smtp else None) if t is not None), default=None
    )
    smtp_failing = smtp_watched and smtp is not None and smtp.failing
    smtp_body = {
        "watched": smtp_watched,
        "last_success": _iso(last_smtp),
        "age_s": _age_s(now, last_smtp),
        "ok": not smtp_failing,
        "error": smtp.last_error if smtp_failing and smtp is not None else None,
    }

    oldest = session.scalar(
        select(func.min(Outbox.next_attempt_at)).where(
            Outbox.status.in_((OutboxStatus.PENDING, OutboxStatus.SENDING)), Outbox.next_attempt_at <= now
        )
    )
    pending = session.scalar(
        select(func.count(Outbox.id)).where(Outbox.status.in_((OutboxStatus.PENDING, OutboxStatus.SENDING)))
    )
    outbox_ok = oldest is None or now - oldest <= MAX_PENDING_AGE
    outbox = {
        "pending": int(pending or 0),
        "oldest_pending_due_at": _iso(oldest),
        "oldest_pending_age_s": _age_s(now, oldest),
        "ok": outbox_ok,
        "error": None if outbox_ok else "outgoing mail waits longer than 15 minutes",
    }
    state = watchdog_state(session, now=now)
    watchdog = {"ok": not state["incidents"], "incidents": state["incidents"]}
    return {"mailbox": mailbox, "smtp": smtp_body, "outbox": outbox, "watchdog": watchdog}

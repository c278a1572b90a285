"""Prometheus metrics (``GET /metrics``), every name prefixed ``consultas_``.

The database is the source of truth, so the figures are read from it at scrape time by one
collector: any number of worker processes, pollers and web workers then agree without sharing
counters, and a restart loses nothing. Counters count rows that stay (retention anonymises rows,
never deletes them). When several processes also keep prometheus-client metrics of their own
(multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``), ``build_registry`` adds prometheus-client's
``MultiProcessCollector`` for that directory to the same registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, sessionmaker

from consultas.calendar import WorkingCalendar
from consultas.models import (
    OPEN_STATUSES,
    Channel,
    Consulta,
    Direction,
    Message,
    MessageKind,
    OpsIncident,
    OpsProbe,
    Outbox,
    OutboxStatus,
)
from consultas.watchdog import IMAP_POLL

PREFIX = "consultas_"
AUTOMATIC_KINDS = (MessageKind.AUTO_REPLY, MessageKind.BOUNCE, MessageKind.BULK, MessageKind.OWN)
#: ``organo`` label of consultas without órgano (administrativa: OGDAU answers them).
OGDAU_LABEL = "OGDAU"


class DatabaseCollector(Collector):
    """Reads every ``consultas_*`` figure from the database at each scrape."""

    def __init__(
        self, sessions: sessionmaker[Session], *, now: Callable[[], datetime], calendar: WorkingCalendar
    ) -> None:
        self._sessions = sessions
        self._now = now
        self._calendar = calendar

    def collect(self) -> Iterable[Metric]:
        now = self._now()
        today = self._calendar.local(now).date()
        with self._sessions() as session:
            yield from _mails(session)
            yield from _consultas(session, today)
            yield from _outgoing(session, now)
            yield from _operations(session)


def _mails(session: Session) -> Iterable[Metric]:
    inbound = (Message.direction == Direction.INBOUND) & (Message.channel == Channel.EMAIL)
    ingested, automatic, quarantined = session.execute(
        select(
            func.count(Message.id),
            func.sum(case((Message.kind.in_(AUTOMATIC_KINDS), 1), else_=0)),
            func.sum(case((Message.kind == MessageKind.QUARANTINED, 1), else_=0)),
        ).where(inbound)
    ).one()
    yield CounterMetricFamily(
        PREFIX + "mails_ingested", "Mails taken in from the mailbox.", value=ingested or 0
    )
    yield CounterMetricFamily(
        PREFIX + "mails_automatic", "Mails taken in that were automatic (auto-replies, bounces, lists).",
        value=automatic or 0,
    )  # fmt: skip
    yield CounterMetricFamily(
        PREFIX + "mails_quarantined",
        "Mails kept in quarantine (could not be processed).",
        value=quarantined or 0,
    )


def _consultas(session: Session, today: Any) -> Iterable[Metric]:
    admitted = CounterMetricFamily(
        PREFIX + "consultas_admitted", "Consultas numbered, by channel.", labels=["channel"]
    )
    for channel, n in session.execute(
        select(Consulta.channel, func.count(Consulta.id))
        .where(Consulta.number.is_not(None))
        .group_by(Consulta.channel)
    ):
        admitted.add_metric([channel.value], n)
    yield admitted
    pending = GaugeMetricFamily(PREFIX + "consultas_pending", "Open consultas, by órgano.", labels=["organo"])
    overdue = GaugeMetricFamily(
        PREFIX + "consultas_overdue", "Open consultas past their due date, by órgano.", labels=["organo"]
    )
    organo = func.coalesce(Consulta.organo_code, OGDAU_LABEL)
    for code, n, late in session.execute(
        select(organo, func.count(Consulta.id), func.sum(case((Consulta.due_on < today, 1), else_=0)))
        .where(Consulta.status.in_(OPEN_STATUSES))
        .group_by(organo)
        .order_by(organo)
    ):
        pending.add_metric([code], n)
        overdue.add_metric([code], late or 0)
    yield pending
    yield overdue


def _outgoing(session: Session, now: datetime) -> Iterable[Metric]:
    sent = CounterMetricFamily(
        PREFIX + "outgoing_sent", "Outgoing messages sent, by channel.", labels=["channel"]
    )
    failed = GaugeMetricFamily(
        PREFIX + "outgoing_failed",
        "Outgoing messages given up on (until retried), by channel.",
        labels=["channel"],
    )
    pending = GaugeMetricFamily(
        PREFIX + "outgoing_pending", "Outgoing messages waiting to be sent, by channel.", labels=["channel"]
    )
    by_status: dict[tuple[Channel, OutboxStatus], int] = {}
    for channel, status, n in session.execute(
        select(Outbox.channel, Outbox.status, func.count(Outbox.id)).group_by(Outbox.channel, Outbox.status)
    ):
        by_status[(channel, status)] = n
    for channel in (Channel.EMAIL, Channel.TELEGRAM):
        sent.add_metric([channel.value], by_status.get((channel, OutboxStatus.SENT), 0))
        failed.add_metric([channel.value], by_status.get((channel, OutboxStatus.FAILED), 0))
        waiting = by_status.get((channel, OutboxStatus.PENDING), 0) + by_status.get(
            (channel, OutboxStatus.SENDING), 0
        )
        pending.add_metric([channel.value], waiting)
    yield sent
    yield failed
    yield pending
    oldest = session.scalar(
        select(func.min(Outbox.next_attempt_at)).where(
            Outbox.status.in_((OutboxStatus.PENDING, OutboxStatus.SENDING)), Outbox.next_attempt_at <= now
        )
    )
    yield GaugeMetricFamily(
        PREFIX + "outgoing_oldest_pending_age_seconds",
        "Seconds the oldest due outgoing message has waited (0 when none).",
        value=max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0,
    )
    # Every claim is an attempt; a sent row's last one succeeded, a row being sent is in flight.
    attempts, done, in_flight = session.execute(
        select(
            func.coalesce(func.sum(Outbox.attempts), 0),
            func.sum(case((Outbox.status == OutboxStatus.SENT, 1), else_=0)),
            func.sum(case((Outbox.status == OutboxStatus.SENDING, 1), else_=0)),
        )
    ).one()
    yield CounterMetricFamily(
        PREFIX + "send_errors", "Failed attempts to send an outgoing message.",
        value=max(0, int(attempts or 0) - int(done or 0) - int(in_flight or 0)),
    )  # fmt: skip


def _operations(session: Session) -> Iterable[Metric]:
    probes = {row.name: row for row in session.scalars(select(OpsProbe))}
    poll = probes.get(IMAP_POLL)
    yield GaugeMetricFamily(
        PREFIX + "last_poll_timestamp_seconds",
        "Unix time of the last successful mailbox poll (0: never).",
        value=poll.last_success_at.timestamp() if poll is not None and poll.last_success_at else 0.0,
    )
    yield CounterMetricFamily(
        PREFIX + "poll_errors", "Mailbox polls that failed (connection, login, timeout).",
        value=poll.failures if poll is not None else 0,
    )  # fmt: skip
    probe_failures = CounterMetricFamily(
        PREFIX + "probe_failures", "Failed watchdog probes, by probe.", labels=["probe"]
    )
    for name, row in sorted(probes.items()):
        probe_failures.add_metric([name], row.failures)
    yield probe_failures
    incidents = GaugeMetricFamily(
        PREFIX + "incidents_open", "Open watchdog incidents, by kind.", labels=["kind"]
    )
    for kind, n in session.execute(
        select(OpsIncident.kind, func.count(OpsIncident.id))
        .where(OpsIncident.closed_at.is_(None))
        .group_by(OpsIncident.kind)
    ):
        incidents.add_metric([kind], n)
    yield incidents


def build_registry(
    sessions: sessionmaker[Session],
    *,
    now: Callable[[], datetime],
    calendar: WorkingCalendar,
    multiprocess_dir: str | None = None,
) -> CollectorRegistry:
    """A registry with the database collector (and the multiprocess one for ``multiprocess_dir``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(sessions, now=now, calendar=calendar))
    if multiprocess_dir:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]
    return registry


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The scrape body and its Content-Type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST

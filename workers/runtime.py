"""Process wiring: what actors need (settings, sessions, config, clock, transport), built once.

Actors receive ids only; they read everything else from the ``Runtime`` a process installs at start
with ``init_runtime(settings)`` (the worker entry module, ``consultas serve``, tests with their own
database URL and a ``FixedClock``). ``start_inprocess_workers`` runs the actors inside the calling
process (embedded mode) with a periodic outbox sweep in a thread.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import timedelta

import dramatiq
from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from consultas.clock import Clock, SystemClock
from consultas.context import ServiceConfig
from consultas.db import make_engine, make_sessionmaker
from consultas.errors import ConfigurationError
from consultas.settings import Settings
from workers.broker import ACTOR_MODULES, configure_broker
from workers.claims import ClaimKeeper
from workers.transport import MailTransport, build_transport

logger = logging.getLogger(__name__)

#: How often the in-process sweep looks for due outbox rows.
DEFAULT_SWEEP_INTERVAL_S = 5.0


@dataclass(frozen=True)
class Runtime:
    """Everything an actor needs besides its arguments; one per process."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    config: ServiceConfig
    clock: Clock
    transport: MailTransport
    claims: ClaimKeeper

    def close(self) -> None:
        """Stop refreshing claims, release the transport's connections and the engine's pool."""
        self.claims.close()
        self.transport.close()
        self.engine.dispose()


_current: Runtime | None = None
_current_lock = threading.Lock()


def init_runtime(
    settings: Settings, *, clock: Clock | None = None, transport: MailTransport | None = None
) -> Runtime:
    """Build and install this process's runtime (replacing and closing a previous one)."""
    global _current
    engine = make_engine(settings.resolved_database_url)
    sessions = make_sessionmaker(engine)
    clock = clock or SystemClock()
    runtime = Runtime(
        settings=settings,
        engine=engine,
        sessions=sessions,
        config=ServiceConfig.from_settings(settings),
        clock=clock,
        transport=transport or build_transport(settings),
        claims=ClaimKeeper(sessions, clock),
    )
    with _current_lock:
        previous, _current = _current, runtime
    if previous is not None:
        previous.close()
    return runtime


def get_runtime() -> Runtime:
    """The runtime installed by ``init_runtime``; ConfigurationError when the process forgot it."""
    runtime = _current
    if runtime is None:
        raise ConfigurationError("workers runtime not initialised: call workers.runtime.init_runtime()")
    return runtime


def close_runtime() -> None:
    """Close and forget the installed runtime (end of process or test)."""
    global _current
    with _current_lock:
        runtime, _current = _current, None
    if runtime is not None:
        runtime.close()


def worker_name() -> str:
    """Who claims an outbox row: host, process and thread, for ``Outbox.claimed_by``."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"[:120]


def import_actor_modules() -> None:
    """Import every module that declares actors (after ``configure_broker``)."""
    for name in ACTOR_MODULES:
        importlib.import_module(name)


def boot_worker_process(settings: Settings) -> dramatiq.Broker:
    """Wire a worker process: runtime, broker for ``CONSULTAS_BROKER_URL``, actor modules."""
    init_runtime(settings)
    broker = configure_broker(settings.broker_url)
    import_actor_modules()
    return broker


class InprocessWorkers:
    """A Dramatiq worker on the configured broker plus a sweep loop thread; ``stop()`` ends both."""

    def __init__(self, broker: dramatiq.Broker, *, threads: int, sweep_interval_s: float) -> None:
        self.broker = broker
        self.worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
        self.sweep_interval_s = sweep_interval_s
        self._stopping = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="outbox-sweep", daemon=True)
        self._scheduler: BaseScheduler | None = None

    def start(self, *, with_scheduler: bool = False) -> None:
        self.worker.start()
        self._sweeper.start()
        if with_scheduler:
            from workers.scheduler import build_scheduler

            runtime = get_runtime()
            self._scheduler = build_scheduler(runtime.config.calendar, runtime.clock, background=True)
            self._scheduler.remove_job("outbox_sweep")  # the sweep loop above already does this
            self._scheduler.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the periodic jobs and sweeping, let running actors finish, stop the worker threads."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        self._stopping.set()
        self._sweeper.join(timeout_s)
        self.worker.stop(timeout=int(timeout_s * 1000))

    def _sweep_loop(self) -> None:
        from workers.sweep import SWEEP_GRACE, enqueue_due

        # At start every due row is ours to re-enqueue (a previous process may have died with it);
        # afterwards only rows due for a while, so fresh rows are not enqueued twice (hint + sweep).
        grace = timedelta(0)
        while not self._stopping.is_set():
            try:
                enqueue_due(get_runtime(), grace=grace)
            except Exception:  # loop boundary: a failed sweep (DB down) is retried next tick
                logger.exception("outbox sweep failed")
            grace = SWEEP_GRACE
            self._stopping.wait(self.sweep_interval_s)


def start_inprocess_workers(
    settings: Settings,
    *,
    threads: int = 4,
    sweep_interval_s: float = DEFAULT_SWEEP_INTERVAL_S,
    clock: Clock | None = None,
    transport: MailTransport | None = None,
    with_scheduler: bool = False,
) -> InprocessWorkers:
    """Run the actors in this process on ``CONSULTAS_BROKER_URL`` (memory or Redis) and sweep.

    ``with_scheduler`` also runs the periodic jobs (reminders, digest, quarterly report) in this
    process: the embedded single-process mode (``consultas serve``) has no separate scheduler.
    """
    init_runtime(settings, clock=clock, transport=transport)
    broker = configure_broker(settings.broker_url)
    import_actor_modules()
    handle = InprocessWorkers(broker, threads=threads, sweep_interval_s=sweep_interval_s)
    handle.start(with_scheduler=with_scheduler)
    return handle


#: Top-level loggers of the service's own packages.
OWN_LOGGERS = ("consultas", "intake", "routing", "workers", "bot")


def boot_from_environment() -> None:
    """Entry of ``dramatiq workers.runtime:boot_from_environment`` (each worker process calls it)."""
    import logging

    from consultas.settings import load_settings

    settings = load_settings()
    # The Dramatiq CLI configured logging at INFO; our own loggers follow CONSULTAS_LOG_LEVEL
    # (Dramatiq's lifecycle lines keep its level).
    for package in OWN_LOGGERS:
        logging.getLogger(package).setLevel(settings.log_level)
    # httpx logs every request's URL at INFO; a relayed answer's Bot API URL carries the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    boot_worker_process(settings)

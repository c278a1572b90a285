"""Embedded mode: the actors run inside the calling process (``consultas serve``, ``consultas worker``
on the memory broker), with a periodic outbox sweep in a thread and, for ``serve``, the periodic jobs.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import dramatiq
from apscheduler.schedulers.base import BaseScheduler

import workers.actors  # noqa: F401  (declares every actor)
from consultas.clock import Clock
from consultas.settings import Settings
from workers.broker import configure_broker
from workers.runtime import get_runtime, init_runtime
from workers.scheduler import build_scheduler
from workers.sweep import SWEEP_GRACE, enqueue_due
from workers.transport import MailTransport

logger = logging.getLogger(__name__)

#: How often the in-process sweep looks for due outbox rows.
DEFAULT_SWEEP_INTERVAL_S = 5.0


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
    handle = InprocessWorkers(broker, threads=threads, sweep_interval_s=sweep_interval_s)
    handle.start(with_scheduler=with_scheduler)
    return handle

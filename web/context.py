"""What the web routes need, built once by the composition root (``WebContext.build``)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
from sqlalchemy.orm import Session, sessionmaker

from consultas.clock import Clock
from consultas.context import ServiceConfig
from consultas.errors import ConfigurationError
from consultas.health import Readiness, service_readiness
from consultas.metrics import build_registry, render
from consultas.settings import Settings
from web import store
from web.entities import EntityDirectory
from web.ratelimit import Limiter, RateLimiter, RedisRateLimiter
from web.security import Network, derive_key, parse_networks

#: Status look-ups per client address per hour (wrong guesses included: numbers cannot be probed).
STATUS_LOOKUPS_PER_HOUR = 30
HOUR_S = 3600.0
#: The topic list is read again after this long (a Red import shows within it).
TEMAS_TTL_S = 10.0
#: Admissions run at once: SQLite has one writer, so its queue is ours (first come, first served)
#: rather than its busy-wait, which under 50 writers starved some for 14 s; PostgreSQL serialises
#: on the year's counter row anyway, a few at once overlap the rest of their work.
SQLITE_REGISTRATIONS = 1
POSTGRESQL_REGISTRATIONS = 8

OnCommitted = Callable[[list[int]], object]


@dataclass
class WebContext:
    sessions: sessionmaker[Session]
    config: ServiceConfig
    clock: Clock
    csrf_key: bytes
    trusted_proxies: tuple[Network, ...]
    frame_ancestors: str
    entities: EntityDirectory | None
    by_address: Limiter
    by_email: Limiter
    lookups: Limiter
    on_committed: OnCommitted | None = None
    #: ``GET /readyz``'s check and ``GET /metrics``' body (None: not offered).
    readiness: Callable[[], Readiness] | None = None
    metrics: Callable[[], tuple[bytes, str]] | None = None
    #: Monotonic seconds (rate limits and token ages use the wall clock of the service's clock).
    seconds: Callable[[], float] = field(default=time.time)
    max_registrations: int = POSTGRESQL_REGISTRATIONS
    _registrations: asyncio.Semaphore | None = field(default=None, repr=False)
    _temas: tuple[float, dict[str, str]] | None = field(default=None, repr=False)
    _temas_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def registrations(self) -> asyncio.Semaphore:
        """The admissions' queue (created on first use, in the server's event loop)."""
        if self._registrations is None:
            self._registrations = asyncio.Semaphore(self.max_registrations)
        return self._registrations

    def temas(self) -> dict[str, str]:
        """code -> name of the form's topics, read at most every ``TEMAS_TTL_S`` (blocking: a thread)."""
        with self._temas_lock:
            cached = self._temas
            if cached is None or time.monotonic() - cached[0] > TEMAS_TTL_S:
                cached = self._temas = (time.monotonic(), store.temas(self.sessions))
            return dict(cached[1])

    @classmethod
    def build(
        cls,
        settings: Settings,
        sessions: sessionmaker[Session],
        config: ServiceConfig,
        clock: Clock,
        *,
        on_committed: OnCommitted | None = None,
    ) -> WebContext:
        """The context for ``settings``; an unreadable entities file is a ConfigurationError naming it."""
        try:
            entities = EntityDirectory.from_csv(settings.entities_file) if settings.entities_file else None
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc

        def seconds() -> float:
            return clock.now().timestamp()

        def ready() -> Readiness:
            return service_readiness(settings, sessions, now=clock.now())

        registry = build_registry(
            sessions,
            now=clock.now,
            calendar=config.calendar,
            multiprocess_dir=os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None,
        )

        def limiter(name: str, limit: int) -> Limiter:
            if settings.broker_url == "memory":
                return RateLimiter(limit, HOUR_S, now=seconds)
            client = redis.Redis.from_url(settings.broker_url, socket_connect_timeout=2, socket_timeout=2)
            return RedisRateLimiter(client, f"consultas:web:limit:{name}:", limit, HOUR_S, now=seconds)

        return cls(
            sessions=sessions,
            config=config,
            clock=clock,
            csrf_key=derive_key(config.secret_key, "csrf"),
            trusted_proxies=parse_networks(settings.trusted_proxies),
            frame_ancestors=settings.web_frame_ancestors,
            entities=entities,
            by_address=limiter("address", settings.web_rate_limit),
            by_email=limiter("email", settings.web_rate_limit),
            lookups=limiter("lookup", STATUS_LOOKUPS_PER_HOUR),
            on_committed=on_committed,
            readiness=ready,
            metrics=lambda: render(registry),
            seconds=seconds,
            max_registrations=(
                SQLITE_REGISTRATIONS
                if settings.resolved_database_url.startswith("sqlite")
                else POSTGRESQL_REGISTRATIONS
            ),
        )

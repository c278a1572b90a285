"""Process wiring: what actors need (settings, sessions, config, clock, transport), built once.

Actors receive ids only; they read everything else from the ``Runtime`` a process installs at start
with ``init_runtime(settings)`` (the worker entry module, ``consultas serve``, tests with their own
database URL and a ``FixedClock``). ``workers.embedded`` runs the actors inside the calling process.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from consultas.clock import Clock, SystemClock
from consultas.context import ServiceConfig
from consultas.db import make_engine, make_sessionmaker
from consultas.errors import ConfigurationError
from consultas.settings import Settings
from workers.claims import ClaimKeeper
from workers.transport import MailTransport, build_transport

logger = logging.getLogger(__name__)


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
    _load_decreed_days(runtime)
    with _current_lock:
        previous, _current = _current, runtime
    if previous is not None:
        previous.close()
    return runtime


def _load_decreed_days(runtime: Runtime) -> None:
    """The calendar closes the database's decreed days too (``consultas calendar``)."""
    from sqlalchemy import exc as sa_exc

    from consultas.decreed_days import refresh_calendar

    try:
        with runtime.sessions() as session:
            refresh_calendar(runtime.config.calendar, runtime.settings.non_working_days, session)
    except sa_exc.SQLAlchemyError as exc:  # no schema yet: commands that need it say so themselves
        logger.warning("decreed days not loaded: %s", type(exc).__name__)


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

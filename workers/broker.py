"""The only place that builds the Dramatiq broker, and the options every actor of ours declares.

Importing this module sets a default in-memory ``StubBroker`` as Dramatiq's global broker, so
actor modules (``workers.mail``, ``workers.sweep`` ...) import cleanly anywhere (tests, CLI) and
never fall back to Dramatiq's own default (RabbitMQ on localhost). Each process then calls
``configure_broker(settings.broker_url)`` once at start; it builds the real broker, makes it the
global one and re-binds every actor already declared, so the order of imports does not matter
(Dramatiq docs, "use actors from different files"). Dead-lettering is the brokers' own: a message
whose retries are exhausted is rejected into the queue's dead-letter queue (``dramatiq:<queue>.XQ``
in Redis, kept 7 days; ``StubBroker.dead_letters`` in memory).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.errors import BrokerError
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Middleware,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from consultas.errors import ConfigurationError

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

#: Queue of the outbox actors (sending mail and Telegram messages, the sweep).
OUTBOX_QUEUE = "outbox"
#: Modules whose import declares our actors; a worker process imports them after configure_broker.
#: The periodic-job modules (reminders, digest, reports) are added here by their owner.
ACTOR_MODULES: list[str] = [
    "workers.mail",
    "workers.sweep",
    "workers.reminders",
    "workers.digest",
    "workers.reports",
    "workers.retention",
]

#: Broker-wide defaults; every actor still sets its own options explicitly (STYLE 7).
DEFAULT_MAX_RETRIES = 5
DEFAULT_MIN_BACKOFF_MS = 1_000
DEFAULT_MAX_BACKOFF_MS = 5 * 60_000
DEFAULT_TIME_LIMIT_MS = 2 * 60_000
#: A message older than this is dropped (the sweep re-enqueues what is still due from the DB).
DEFAULT_MAX_AGE_MS = 24 * 3_600_000
#: Network timeouts of the Redis client: a Redis outage fails a send in seconds, never hangs it.
REDIS_CONNECT_TIMEOUT_S = 3.0
REDIS_SOCKET_TIMEOUT_S = 10.0

#: What a failed enqueue raises when the broker is unreachable (Redis down).
ENQUEUE_ERRORS: tuple[type[BaseException], ...] = (BrokerError, redis.RedisError, OSError)


def build_middleware() -> list[Middleware]:
    """The middleware stack of every broker we build: limits, retries with backoff, shutdown."""
    return [
        AgeLimit(max_age=DEFAULT_MAX_AGE_MS),
        TimeLimit(time_limit=DEFAULT_TIME_LIMIT_MS),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        Retries(
            max_retries=DEFAULT_MAX_RETRIES,
            min_backoff=DEFAULT_MIN_BACKOFF_MS,
            max_backoff=DEFAULT_MAX_BACKOFF_MS,
        ),
        CurrentMessage(),
    ]


def build_broker(url: str) -> dramatiq.Broker:
    """Build (without installing) the broker for ``url``: "memory" or redis://."""
    if url == "memory":
        return StubBroker(middleware=build_middleware())
    if url.startswith(("redis://", "rediss://")):
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
            socket_timeout=REDIS_SOCKET_TIMEOUT_S,
            health_check_interval=30,
        )
        broker: dramatiq.Broker = RedisBroker(  # type: ignore[no-untyped-call]
            client=client, middleware=build_middleware()
        )
        return broker
    raise ConfigurationError(f"CONSULTAS_BROKER_URL: must be 'memory' or a redis:// URL (got {url!r})")


def configure_broker(url: str) -> dramatiq.Broker:
    """Build the broker for ``url``, make it Dramatiq's global broker and re-bind declared actors."""
    broker = build_broker(url)
    install_broker(broker)
    return broker


def install_broker(broker: dramatiq.Broker) -> None:
    """Make ``broker`` the global one; actors declared on the previous broker move to it."""
    previous = dramatiq.get_broker()
    dramatiq.set_broker(broker)
    if previous is broker:
        return
    for actor in list(previous.actors.values()):
        actor.broker = broker
        broker.declare_actor(actor)


def actor(
    *,
    queue_name: str,
    max_retries: int,
    min_backoff_ms: int,
    max_backoff_ms: int,
    time_limit_ms: int,
    max_age_ms: int = DEFAULT_MAX_AGE_MS,
) -> Callable[[Callable[P, R]], dramatiq.Actor[P, R]]:
    """Declare an actor on the current global broker with every option spelled out (STYLE 7)."""

    def declare(fn: Callable[P, R]) -> dramatiq.Actor[P, R]:
        return dramatiq.actor(
            queue_name=queue_name,
            max_retries=max_retries,
            min_backoff=min_backoff_ms,
            max_backoff=max_backoff_ms,
            time_limit=time_limit_ms,
            max_age=max_age_ms,
        )(fn)

    return declare


def send_hint(actor: dramatiq.Actor[Any, Any], *args: Any) -> bool:
    """Enqueue ``actor(*args)`` as a hint; on a broker outage log it and return False.

    Only for work the database already holds (an outbox row): the periodic sweep re-enqueues it,
    so a lost hint delays the work and never loses it. Never raises a broker or Redis error.
    """
    try:
        actor.send(*args)
    except ENQUEUE_ERRORS as exc:
        logger.warning("broker unreachable, %s%r left to the sweep: %s", actor.actor_name, args, exc)
        return False
    return True


def _install_default() -> None:
    """Give Dramatiq an in-memory global broker at import (see the module docstring)."""
    if not isinstance(dramatiq.broker.global_broker, dramatiq.Broker):
        dramatiq.set_broker(StubBroker(middleware=build_middleware()))


_install_default()

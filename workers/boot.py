"""The entry of a Dramatiq worker process (``consultas worker`` runs ``dramatiq workers.boot:...``)."""

from __future__ import annotations

import logging

import dramatiq

import workers.actors  # noqa: F401  (declares every actor)
from consultas.settings import Settings, load_settings
from workers.broker import configure_broker
from workers.runtime import init_runtime


def boot_worker_process(settings: Settings) -> dramatiq.Broker:
    """Wire a worker process: runtime and the broker for ``CONSULTAS_BROKER_URL`` (the actors, declared
    by importing ``workers.actors``, are bound to it)."""
    init_runtime(settings)
    broker = configure_broker(settings.broker_url)
    return broker


#: Top-level loggers of the service's own packages.
OWN_LOGGERS = ("consultas", "intake", "routing", "workers", "bot")


def boot_from_environment() -> None:
    """Entry of ``dramatiq workers.boot:boot_from_environment`` (each worker process calls it)."""

    settings = load_settings()
    # The Dramatiq CLI configured logging at INFO; our own loggers follow CONSULTAS_LOG_LEVEL
    # (Dramatiq's lifecycle lines keep its level).
    for package in OWN_LOGGERS:
        logging.getLogger(package).setLevel(settings.log_level)
    # httpx logs every request's URL at INFO; a relayed answer's Bot API URL carries the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    boot_worker_process(settings)

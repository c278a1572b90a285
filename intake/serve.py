"""``consultas serve``: the whole service in one process (intake, workers, Telegram bot).

Owns the wiring only: the pieces are the Maildir loop (no IMAP host) or the IMAP poller
(``intake.imap_poller``), the in-process Dramatiq workers (``workers.runtime``) and the bot
(``bot.app``) when a token is set. Long-running pieces run under one ``asyncio.TaskGroup``; a crash
in one is logged and the piece restarted with backoff; SIGINT/SIGTERM stop everything cleanly.
The schema is never created implicitly: ``consultas db upgrade`` first.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from contextlib import suppress

from sqlalchemy.orm import Session, sessionmaker

from consultas.calendar import WorkingCalendar
from consultas.clock import Clock, SystemClock
from consultas.context import ServiceConfig
from consultas.db import open_database
from consultas.settings import Settings
from intake.batching import freeze_startup_objects

logger = logging.getLogger(__name__)

#: Restart backoff of a crashed piece: 1 s, 2 s, 4 s ... capped.
FIRST_RESTART_DELAY_S = 1.0
MAX_RESTART_DELAY_S = 60.0
#: A piece that ran this long before crashing starts again from the first delay.
HEALTHY_RUN_S = 60.0

Piece = Callable[[asyncio.Event], Awaitable[None]]


async def supervise(name: str, piece: Piece, stop: asyncio.Event, *, clock: Clock | None = None) -> None:
    """Run ``piece(stop)`` until ``stop`` is set, restarting it with backoff when it raises."""
    clock = clock or SystemClock()
    delay = FIRST_RESTART_DELAY_S
    while not stop.is_set():
        started = clock.now()
        try:
            await piece(stop)
        except asyncio.CancelledError:
            raise
        except Exception:  # supervisor boundary: log, back off, restart (STYLE 5)
            logger.exception("%s crashed; restarting in %.0f s", name, delay)
        else:
            if stop.is_set():
                return
            logger.warning("%s returned without being stopped; restarting in %.0f s", name, delay)
        if (clock.now() - started).total_seconds() >= HEALTHY_RUN_S:
            delay = FIRST_RESTART_DELAY_S
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
        delay = min(delay * 2, MAX_RESTART_DELAY_S)


def build_pieces(
    settings: Settings, sessions: sessionmaker[Session], config: ServiceConfig, clock: Clock
) -> dict[str, Piece]:
    """The long-running pieces this configuration asks for, by name."""
    from workers.mail import hint_send_batches

    pieces: dict[str, Piece] = {}
    if settings.imap_host:
        from intake.imap_poller import run_poller

        async def imap(stop: asyncio.Event) -> None:
            await run_poller(settings, sessions, config, clock, stop, on_committed=hint_send_batches)

        pieces["imap-poller"] = imap
    else:
        from intake.maildir_source import Maildir, run_maildir_loop

        maildir = Maildir(settings.maildir_path)

        async def maildir_loop(stop: asyncio.Event) -> None:
            await run_maildir_loop(
                sessions,
                maildir,
                mailbox=config.mailbox,
                config=config,
                clock=clock,
                stop=stop,
                on_committed=hint_send_batches,
            )

        pieces["maildir"] = maildir_loop
    if settings.imap_host:  # the watchdog guards a real mailbox (and its SMTP server)
        from intake.watchdog import run_watchdog

        async def watchdog(stop: asyncio.Event) -> None:
            await run_watchdog(settings, sessions, config, clock, stop, on_alert=hint_send_batches)

        pieces["watchdog"] = watchdog
    if settings.telegram_token.get_secret_value():
        from bot.app import run_bot

        async def bot(stop: asyncio.Event) -> None:
            await run_bot(settings, stop, sessions=sessions, clock=clock, on_committed=hint_send_batches)

        pieces["telegram-bot"] = bot
    return pieces


def load_decreed_days(settings: Settings, sessions: sessionmaker[Session], calendar: WorkingCalendar) -> None:
    """Close the decreed days of the database too (``consultas calendar``); the watchdog refreshes them."""
    from consultas.decreed_days import refresh_calendar

    with sessions() as session:
        refresh_calendar(calendar, settings.non_working_days, session)


def load_red_registry(settings: Settings, sessions: sessionmaker[Session], clock: Clock) -> None:
    """Import ``CONSULTAS_RED_FILE`` when set and changed since the last import."""
    if settings.red_file is None:
        return
    from routing.red_registry import ensure_registry_loaded

    with sessions.begin() as session:
        summary = ensure_registry_loaded(session, settings.red_file, clock.now())
    if summary is None:
        logger.info("Red registry %s unchanged", settings.red_file)
    else:
        logger.info("Red registry imported from %s", settings.red_file)


async def serve(settings: Settings, *, clock: Clock | None = None, stop: asyncio.Event | None = None) -> None:
    """Run intake, workers and bot until SIGINT/SIGTERM (or ``stop``)."""
    clock = clock or SystemClock()
    stop = stop or asyncio.Event()
    engine, sessions = open_database(settings.resolved_database_url)
    config = ServiceConfig.from_settings(settings)
    load_decreed_days(settings, sessions, config.calendar)
    load_red_registry(settings, sessions, clock)
    from workers.embedded import start_inprocess_workers
    from workers.runtime import close_runtime

    workers = start_inprocess_workers(settings, clock=clock)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    pieces = build_pieces(settings, sessions, config, clock)
    freeze_startup_objects()
    logger.info(
        "consultas serve: %s; outgoing mail via %s; started %s",
        ", ".join(pieces),
        f"SMTP {settings.smtp_host}:{settings.smtp_port}"
        if settings.smtp_host
        else f"files in {settings.outbox_dir}",
        clock.now().isoformat(timespec="seconds"),
    )
    try:
        async with asyncio.TaskGroup() as group:
            for name, piece in pieces.items():
                group.create_task(supervise(name, piece, stop, clock=clock), name=name)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
        await asyncio.to_thread(workers.stop)
        close_runtime()
        engine.dispose()
        logger.info("consultas serve: stopped")

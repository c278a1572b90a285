"""``consultas serve``: the whole service in one process (intake, workers, Telegram bot, web).

Owns the wiring only: the pieces are the Maildir loop (no IMAP host) or the IMAP poller
(``intake.imap_poller``), the in-process Dramatiq workers (``workers.runtime``) and the bot
(``bot.app``) when a token is set. Long-running pieces run under one ``asyncio.TaskGroup``; a crash
in one is logged and the piece restarted with backoff; SIGINT/SIGTERM stop everything cleanly.
The schema is never created implicitly: ``consultas db upgrade`` first.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from contextlib import suppress
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from consultas.calendar import WorkingCalendar
from consultas.clock import Clock, SystemClock
from consultas.context import ServiceConfig
from consultas.db import open_database
from consultas.settings import Settings, load_settings
from consultas.supervise import Piece, supervise
from intake.batching import freeze_startup_objects

logger = logging.getLogger(__name__)


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
    from web.app import create_app
    from web.context import WebContext
    from web.server import run_embedded

    app = create_app(WebContext.build(settings, sessions, config, clock, on_committed=hint_send_batches))

    async def web(stop: asyncio.Event) -> None:
        await run_embedded(app, host=settings.web_host, port=settings.web_port, stop=stop)

    pieces["web"] = web
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

    workers = start_inprocess_workers(settings, clock=clock, with_scheduler=True)
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


def register(subparsers: Any) -> None:
    """Add ``consultas serve`` to the ``consultas`` command."""
    serve = subparsers.add_parser(
        "serve",
        help="run the whole service in one process (intake, workers, Telegram bot)",
        description=(
            "Poll the mailbox (IMAP when CONSULTAS_IMAP_HOST is set, else the Maildir under "
            "CONSULTAS_VAR_DIR/maildir), send the outbox (SMTP when CONSULTAS_SMTP_HOST is set, else "
            ".eml files in CONSULTAS_VAR_DIR/outbox) and run the Telegram bot when "
            "CONSULTAS_TELEGRAM_TOKEN is set. Run `consultas db upgrade` first. Stops on SIGINT/SIGTERM."
        ),
    )
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    asyncio.run(serve(load_settings()))
    return 0

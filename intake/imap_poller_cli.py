"""The ``consultas poll`` subcommand: run the mailbox poller alone (production: its own process).

The workers run separately (``consultas workers``) and send the outbox. With
``CONSULTAS_IMAP_HOST`` set it polls IMAP (``intake.imap_poller.run_poller``); without it, the
embedded Maildir under ``CONSULTAS_VAR_DIR/maildir``. ``--once`` processes what is there and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from contextlib import suppress
from typing import Any

from consultas.clock import SystemClock
from consultas.context import ServiceConfig
from consultas.settings import Settings, load_settings

logger = logging.getLogger(__name__)


def register_poll(subparsers: Any) -> None:
    """Add ``poll`` to the ``consultas`` command."""
    poll = subparsers.add_parser(
        "poll",
        help="poll the mailbox and admit mail (the workers send the replies)",
        description=(
            "Poll the consultas mailbox: IMAP when CONSULTAS_IMAP_HOST is set (IDLE plus a catch-up poll "
            "every CONSULTAS_IMAP_POLL_INTERVAL_S; one poller per mailbox at a time), else the Maildir "
            "under CONSULTAS_VAR_DIR/maildir. Processed mail goes to CONSULTAS_IMAP_PROCESSED_FOLDER, "
            "mail that cannot be processed to CONSULTAS_IMAP_QUARANTINE_FOLDER. Run `consultas db "
            "upgrade` first; run the workers separately to send the outbox. Stops on SIGINT/SIGTERM."
        ),
    )
    poll.add_argument(
        "--once", action="store_true", help="process what is in the mailbox now, print the counts, exit"
    )
    poll.set_defaults(handler=_poll)


def _poll(args: argparse.Namespace) -> int:
    settings = load_settings()
    return asyncio.run(_run(settings, once=bool(args.once)))


async def _run(settings: Settings, *, once: bool) -> int:
    from consultas.db import open_database
    from intake.batching import freeze_startup_objects

    engine, sessions = open_database(settings.resolved_database_url)
    config = ServiceConfig.from_settings(settings)
    clock = SystemClock()
    hint = _send_hint(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    try:
        if settings.imap_host:
            from intake.imap_poller import check_imap_settings, poll_once, run_poller

            check_imap_settings(settings)
            freeze_startup_objects()
            if once:
                result = await poll_once(settings, sessions, config, clock, on_committed=hint)
                print(json.dumps(dict(sorted(result.counts.items()))))
                return 0
            logger.info(
                "consultas poll: IMAP %s@%s/%s", settings.imap_user, settings.imap_host, settings.imap_folder
            )
            from consultas.supervise import supervise
            from intake.watchdog import run_watchdog

            async def watchdog(stop: asyncio.Event) -> None:  # its lease keeps one per deployment
                await run_watchdog(settings, sessions, config, clock, stop, on_alert=hint)

            watching = asyncio.create_task(supervise("watchdog", watchdog, stop, clock=clock))
            try:
                await run_poller(settings, sessions, config, clock, stop, on_committed=hint)
            finally:
                stop.set()
                await watching
            return 0
        from intake.maildir_source import Maildir, poll_maildir_once, run_maildir_loop

        maildir = Maildir(settings.maildir_path)
        freeze_startup_objects()
        if once:
            counts = await asyncio.to_thread(
                poll_maildir_once,
                sessions,
                maildir,
                mailbox=config.mailbox,
                config=config,
                clock=clock,
                on_committed=hint,
            )
            print(
                json.dumps(
                    {
                        "processed": counts.processed,
                        "duplicates": counts.duplicates,
                        "quarantined": counts.quarantined,
                    }
                )
            )
            return 0
        logger.info("consultas poll: Maildir %s (no CONSULTAS_IMAP_HOST)", settings.maildir_path)
        await run_maildir_loop(
            sessions,
            maildir,
            mailbox=config.mailbox,
            config=config,
            clock=clock,
            stop=stop,
            on_committed=hint,
        )
        return 0
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
        engine.dispose()


def _send_hint(settings: Settings) -> Any:
    """With Redis, tell the separate workers about new outbox rows at once; else the sweep finds them."""
    from workers.mail import hint_for_separate_workers

    return hint_for_separate_workers(settings.broker_url)

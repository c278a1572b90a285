"""``consultas bot``: run the Telegram bot alone (``consultas serve`` runs it with the poller)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import Any


def register(subparsers: Any) -> None:
    """Add this package's subcommands to the ``consultas`` command."""
    bot = subparsers.add_parser(
        "bot",
        help="run the Telegram bot alone (needs CONSULTAS_TELEGRAM_TOKEN)",
        description=(
            "Run the Telegram bot (the Anexo N° 1 form, /estado) until Ctrl-C: long polling by default, "
            "a webhook when CONSULTAS_TELEGRAM_WEBHOOK_URL is set."
        ),
    )
    bot.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from consultas.errors import ConfigurationError
    from consultas.settings import load_settings

    settings = load_settings()
    if not settings.telegram_token.get_secret_value():
        raise ConfigurationError("invalid setting: CONSULTAS_TELEGRAM_TOKEN: required to run the bot")
    asyncio.run(_main(settings))
    return 0


async def _main(settings: Any) -> None:
    from bot.app import run_bot

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows / not main thread
            loop.add_signal_handler(signum, stop.set)
    from workers.mail import hint_for_separate_workers

    await run_bot(settings, stop, on_committed=hint_for_separate_workers(settings.broker_url))

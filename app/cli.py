"""The ``consultas`` command: one entry point, a subcommand per job.

Each package contributes its subcommands through a ``register(subparsers)`` function in its
``cli`` module (``serve``, which wires them all together, is this package's own); a subcommand's
handler takes the parsed arguments and returns the exit code.
Settings are loaded only by the subcommands that need them, and a wrong setting stops the
command with one line naming it (exit code 2), never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

import app.serve
import bot.cli
import consultas.commands
import intake.cli
import routing.cli
import web.cli
import workers.cli
from consultas.errors import ConfigurationError, ConsultasError
from consultas.logs import FORMATS, configure_logging

#: Each package's ``register(subparsers)``, in help order.
REGISTRARS = (
    consultas.commands.register,
    intake.cli.register,
    app.serve.register,
    routing.cli.register,
    workers.cli.register,
    bot.cli.register,
    web.cli.register,
)

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="consultas",
        description="Sistema de Atención de Consultas del MEF: intake, routing and follow-up of consultas.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in REGISTRARS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # The level is read before the settings so that loading them can log; a wrong value falls back
    # to INFO here and is then reported by the settings validation like any other.
    level = os.environ.get("CONSULTAS_LOG_LEVEL", "INFO").upper()
    log_format = os.environ.get("CONSULTAS_LOG_FORMAT", "text").lower()
    configure_logging(
        level if level in {"DEBUG", "INFO", "WARNING", "ERROR"} else "INFO",
        log_format if log_format in FORMATS else "text",
    )
    # Alembic narrates every migration step at INFO; our own lines say what matters.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # httpx logs every request's URL at INFO, and Bot API URLs carry the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # APScheduler (our scheduler, the bot's conversation timeouts) logs every job added and run.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigurationError as exc:
        print(f"consultas: error: {exc}", file=sys.stderr)
        return 2
    except ConsultasError as exc:
        print(f"consultas: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

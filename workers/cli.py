"""Subcommands of the workers package: ``worker`` (run the actors) and ``outbox`` (inspect, retry).

Each subcommand is added by one ``_register_*`` function listed in ``REGISTRARS``; the periodic
jobs' owner appends theirs (``digest``, ``report``) to that list.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from consultas.cliargs import REPEATABLE, Once
from consultas.settings import Settings, load_settings
from workers.followup_cli import register_followup_commands


def _register_worker(subparsers: Any) -> None:
    worker = subparsers.add_parser(
        "worker",
        help="run the workers that send the outbox (and the other actors)",
        description=(
            "With CONSULTAS_BROKER_URL=redis://... start a Dramatiq worker (N processes x N threads) "
            "for every actor module; with 'memory' run the actors in this process plus a periodic "
            "outbox sweep. Stop with Ctrl-C / SIGTERM (running sends finish first)."
        ),
    )
    worker.add_argument(
        "--processes", action=Once, type=int, default=1, help="worker processes (Redis only; default 1)"
    )
    worker.add_argument("--threads", action=Once, type=int, default=4, help="threads per process (default 4)")
    worker.set_defaults(handler=_worker)


def _register_outbox(subparsers: Any) -> None:
    outbox = subparsers.add_parser(
        "outbox",
        help="list pending or failed outgoing mails and put failed ones back in the queue",
        description="Without options: rows waiting to be sent. Failed rows keep their last error.",
    )
    outbox.add_argument("--failed", action="store_true", help="list failed rows instead of pending ones")
    retry = outbox.add_mutually_exclusive_group()
    retry.add_argument(
        "--retry",
        **REPEATABLE,
        type=int,
        metavar="ID",
        help="put failed rows back in the queue (repeatable: --retry 3 5 = --retry 3 --retry 5)",
    )
    retry.add_argument("--retry-all", action="store_true", help="put every failed row back in the queue")
    outbox.add_argument("--json", action="store_true", help="print JSON instead of a table")
    outbox.set_defaults(handler=_outbox)


#: One function per subcommand; each adds its parser to the ``consultas`` command.
REGISTRARS: list[Callable[[Any], None]] = [_register_worker, _register_outbox, register_followup_commands]


def register(subparsers: Any) -> None:
    """Add this package's subcommands to the ``consultas`` command."""
    for registrar in REGISTRARS:
        registrar(subparsers)


# worker -------------------------------------------------------------------------------------------


def _worker(args: argparse.Namespace) -> int:
    settings = load_settings()
    if settings.broker_url == "memory":
        return _run_inprocess(settings, threads=args.threads)
    command = [
        sys.executable, "-m", "dramatiq", "workers.boot:boot_from_environment",
        "--processes", str(args.processes), "--threads", str(args.threads),
    ]  # fmt: skip
    sys.stdout.flush()
    os.execv(sys.executable, command)  # the Dramatiq CLI supervises the worker processes from here


def _run_inprocess(settings: Settings, *, threads: int) -> int:
    from workers.embedded import start_inprocess_workers
    from workers.runtime import close_runtime

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    handle = start_inprocess_workers(settings, threads=threads)
    print(f"in-process workers running ({threads} threads, broker 'memory'); Ctrl-C to stop", flush=True)
    stop.wait()
    handle.stop()
    close_runtime()
    return 0


# outbox -------------------------------------------------------------------------------------------


def _outbox(args: argparse.Namespace) -> int:
    from consultas.clock import SystemClock
    from consultas.db import make_engine, make_sessionmaker
    from workers.outbox_admin import list_rows, retry_rows

    settings = load_settings()
    engine = make_engine(settings.resolved_database_url)
    sessions = make_sessionmaker(engine)
    try:
        if args.retry is not None or args.retry_all:
            wanted = None if args.retry is None else sorted(set(args.retry))
            ids = retry_rows(sessions, now=SystemClock().now(), outbox_ids=wanted)
            hinted = _hint(settings, ids)
            print(f"{len(ids)} row(s) back in the queue" + ("" if hinted else " (sent by the next sweep)"))
            not_failed = [str(i) for i in wanted or () if i not in ids]
            if not_failed:
                print(f"consultas: error: outbox row {', '.join(not_failed)} is not failed", file=sys.stderr)
                return 1
            return 0
        rows = list_rows(sessions, failed=args.failed)
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        _print_table(rows)
    return 0


def _hint(settings: Settings, ids: list[int]) -> bool:
    """Tell a Redis-backed worker at once; the in-memory broker lives in the serving process."""
    if not ids or settings.broker_url == "memory":
        return False
    from workers.broker import configure_broker

    configure_broker(settings.broker_url)
    from workers.mail import hint_send

    return hint_send(ids) == len(ids)


def _print_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("no rows")
        return
    columns = (
        "id",
        "consulta",
        "template",
        "recipient",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
    )
    table = [[_cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for line in table:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."

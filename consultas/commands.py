"""Subcommands of the shared core: ``db upgrade``, ``db current`` and ``deadline``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from consultas.cliargs import REPEATABLE, Once
from consultas.settings import load_settings


def register(subparsers: Any) -> None:
    db = subparsers.add_parser("db", help="database schema (Alembic migrations)")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = db_sub.add_parser("upgrade", help="create or migrate the schema to the latest version")
    upgrade.set_defaults(handler=_db_upgrade)
    current = db_sub.add_parser("current", help="print the schema version the database is at")
    current.set_defaults(handler=_db_current)

    deadline = subparsers.add_parser(
        "deadline",
        help="print the presented and due dates of a consulta received at an instant (JSON)",
        description="Directive 5.1/5.6.2: the day a reception counts as presented and the due date.",
    )
    deadline.add_argument(
        "--received",
        action=Once,
        required=True,
        help="ISO-8601 instant, e.g. 2024-11-27T17:00:00-05:00 (no offset: Lima)",
    )
    deadline.add_argument(
        "--non-working",
        **REPEATABLE,
        default=[],
        metavar="DATE",
        help="extra decreed non-working days (--non-working A B, or the option repeated)",
    )
    deadline.add_argument(
        "--days", action=Once, type=int, default=None, help="working days allowed (default 10)"
    )
    deadline.add_argument(
        "--explain", action="store_true", help='add "skipped": each day passed over and why (Spanish)'
    )
    deadline.set_defaults(handler=_deadline)

    from consultas import ops_cli

    ops_cli.register(subparsers)  # calendar, retention, citizen, watchdog


def _db_upgrade(args: argparse.Namespace) -> int:
    from consultas.db import upgrade

    settings = load_settings()
    upgrade(settings.resolved_database_url)
    print(f"schema up to date at {_redacted(settings.resolved_database_url)}")
    return 0


def _db_current(args: argparse.Namespace) -> int:
    from consultas.db import current_revision, make_engine

    settings = load_settings()
    engine = make_engine(settings.resolved_database_url)
    print(current_revision(engine) or "empty")
    engine.dispose()
    return 0


def _deadline(args: argparse.Namespace) -> int:
    from consultas.calendar import deadline_json

    settings = load_settings()
    non_working = [d.isoformat() for d in settings.non_working_days] + list(args.non_working)
    days = args.days if args.days is not None else settings.due_working_days
    try:
        result = deadline_json(args.received, non_working, days, settings.timezone, explain=args.explain)
    except ValueError as exc:
        print(f"consultas deadline: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)

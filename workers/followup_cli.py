"""Subcommands of the follow-up jobs: ``digest``, ``report``, ``reminders`` and ``scheduler``.

``workers.cli`` adds them with ``register_followup_commands(subparsers)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from consultas.cliargs import Once
from consultas.clock import SystemClock
from consultas.context import ServiceConfig
from consultas.errors import ConfigurationError
from consultas.settings import load_settings


def register_followup_commands(subparsers: Any) -> None:
    """Add ``digest``, ``report``, ``reminders`` and ``scheduler`` to the ``consultas`` command."""
    digest = subparsers.add_parser(
        "digest",
        help="print OGDAU's daily digest and queue it by mail (once per date)",
        description="Pending, due-soon and overdue per órgano; subsanación, quarantine, failed sends.",
    )
    digest.add_argument("--date", action=Once, type=_date, help="Lima date YYYY-MM-DD (default: today)")
    digest.add_argument("--dry-run", action="store_true", help="print only; queue no mail")
    digest.add_argument("--json", action="store_true", help="print JSON instead of text")
    digest.set_defaults(handler=_digest)

    report = subparsers.add_parser(
        "report",
        help="the quarterly report per órgano (directive 6.3)",
        description="Columns are defined in workers/reports.py and in the report mail itself.",
    )
    report.add_argument("--quarter", action=Once, required=True, help="e.g. 2024Q4")
    report.add_argument("--format", action=Once, choices=("text", "csv"), default="text")
    report.add_argument("--send", action="store_true", help="also mail it (CSV attached) to OGSU and OGDAU")
    report.set_defaults(handler=_report)

    reminders = subparsers.add_parser(
        "reminders",
        help="queue the reminders and escalations owed now (what the scheduler runs every 15 minutes)",
    )
    reminders.set_defaults(handler=_reminders)

    scheduler = subparsers.add_parser(
        "scheduler",
        help="run the periodic triggers (outbox sweep, reminders, digest, quarterly report)",
        description="Needs CONSULTAS_BROKER_URL=redis://...; run one per deployment.",
    )
    scheduler.set_defaults(handler=_scheduler)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None


@contextmanager
def _database() -> Iterator[tuple[sessionmaker[Session], ServiceConfig]]:
    from consultas.db import make_engine, make_sessionmaker

    settings = load_settings()
    engine = make_engine(settings.resolved_database_url)
    try:
        yield make_sessionmaker(engine), ServiceConfig.from_settings(settings)
    finally:
        engine.dispose()


def _digest(args: argparse.Namespace) -> int:
    from workers.digest import build_digest, digest_already_queued, queue_digest, render_digest

    now = SystemClock().now()
    with _database() as (sessions, config):
        on = args.date or config.calendar.local(now).date()
        with sessions.begin() as session:
            digest = build_digest(session, config=config, on=on)
            queued = None
            if not args.dry_run:
                queued = not digest_already_queued(session, on)
                queue_digest(session, digest, config=config, now=now)
    if args.json:
        print(json.dumps(digest.as_dict(), ensure_ascii=False, indent=2))
    else:
        print(render_digest(digest).text)
    if queued is not None:
        message = f"digest queued to {config.ogdau_email}" if queued else f"digest of {on} was already queued"
        print(message, file=sys.stderr)
    return 0


def _report(args: argparse.Namespace) -> int:
    from workers.reports import Quarter, build_report, queue_report, report_csv, report_text

    quarter = Quarter.parse(args.quarter)
    with _database() as (sessions, config), sessions.begin() as session:
        report = build_report(session, config=config, quarter=quarter)
        if args.send:
            if not config.ogsu_email:
                raise ConfigurationError("CONSULTAS_OGSU_EMAIL: must be set to send the quarterly report")
            queue_report(session, report, config=config, now=SystemClock().now())
    sys.stdout.write(report_csv(report) if args.format == "csv" else report_text(report))
    if args.send:
        print(f"report {quarter} queued to {config.ogsu_email} (Cc {config.ogdau_email})", file=sys.stderr)
    return 0


def _reminders(args: argparse.Namespace) -> int:
    from workers.reminders import run_reminders

    with _database() as (sessions, config), sessions.begin() as session:
        result = run_reminders(session, config=config, now=SystemClock().now())
    print(json.dumps(result.as_dict(), ensure_ascii=False))
    return 0


def _scheduler(args: argparse.Namespace) -> int:
    from workers.scheduler import run_scheduler

    try:
        run_scheduler(load_settings(), SystemClock())
    except KeyboardInterrupt:
        return 0
    return 0

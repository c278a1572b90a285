"""Operators' subcommands: ``calendar`` (decreed days), ``retention``, ``citizen export|erase``, ``watchdog``.

Thin: parse, open the database, call ``consultas.decreed_days`` / ``consultas.privacy`` /
``consultas.watchdog`` in one transaction, print one summary. Bad input is one line, exit 2.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from consultas.cliargs import Once
from consultas.clock import SystemClock
from consultas.settings import Settings, load_settings


def register(subparsers: Any) -> None:
    calendar = subparsers.add_parser(
        "calendar",
        help="decreed non-working days kept in the database (beside CONSULTAS_NON_WORKING_DAYS)",
        description="Adding or removing a day recomputes the due date of every open consulta it affects.",
    )
    calendar_sub = calendar.add_subparsers(dest="calendar_command", metavar="ACTION", required=True)
    add = calendar_sub.add_parser(
        "add-day", help="declare DATE non-working and move the deadlines it affects"
    )
    add.add_argument("day", metavar="DATE", type=_date_arg, help="YYYY-MM-DD")
    add.add_argument("--decree", action=Once, required=True, help='the decree, e.g. "D.S. N° 123-2025-PCM"')
    add.set_defaults(handler=_calendar_add)
    listing = calendar_sub.add_parser("list", help="print the decreed days (database and settings)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=_calendar_list)
    remove = calendar_sub.add_parser("remove-day", help="forget a decreed day and move the deadlines back")
    remove.add_argument("day", metavar="DATE", type=_date_arg, help="YYYY-MM-DD")
    remove.set_defaults(handler=_calendar_remove)

    retention = subparsers.add_parser(
        "retention",
        help="anonymise the consultas closed before DATE (Ley N° 29733)",
        description=(
            "Removes names, documents, contact data, mails, attachments and texts of the consultas "
            "answered or archived before DATE; numbers, dates, órgano, channel and status stay."
        ),
    )
    retention.add_argument(
        "--before", action=Once, required=True, type=_date_arg, metavar="DATE", help="YYYY-MM-DD"
    )
    retention.add_argument("--dry-run", action="store_true", help="count only, change nothing")
    retention.set_defaults(handler=_retention)

    citizen = subparsers.add_parser("citizen", help="a citizen's rights over their data: export, erase")
    citizen_sub = citizen.add_subparsers(dest="citizen_command", metavar="ACTION", required=True)
    export = citizen_sub.add_parser("export", help="print all of one person's consultas as JSON")
    export.add_argument("document", metavar="DOCUMENT", help="DNI, carné de extranjería or pasaporte")
    export.set_defaults(handler=_citizen_export)
    erase = citizen_sub.add_parser("erase", help="anonymise one person's closed consultas")
    erase.add_argument("document", metavar="DOCUMENT", help="DNI, carné de extranjería or pasaporte")
    erase.set_defaults(handler=_citizen_erase)

    watchdog = subparsers.add_parser(
        "watchdog", help="print the watchdog's state (probes, open incidents) as JSON"
    )
    watchdog.set_defaults(handler=_watchdog_status)


def _date_arg(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid date {text!r}: expected YYYY-MM-DD") from None


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry for the uid (containers)
        return "cli"


@contextmanager
def _database(settings: Settings) -> Iterator[tuple[Engine, sessionmaker[Session]]]:
    from consultas.db import open_database

    engine, sessions = open_database(settings.resolved_database_url)
    try:
        yield engine, sessions
    finally:
        engine.dispose()


# calendar ----------------------------------------------------------------------------------------


def _calendar_add(args: argparse.Namespace) -> int:
    return _calendar_change(args, adding=True)


def _calendar_remove(args: argparse.Namespace) -> int:
    return _calendar_change(args, adding=False)


def _calendar_change(args: argparse.Namespace, *, adding: bool) -> int:
    from consultas.context import ServiceConfig
    from consultas.decreed_days import add_decreed_day, refresh_calendar, remove_decreed_day

    settings = load_settings()
    config = ServiceConfig.from_settings(settings)
    now = SystemClock().now()
    with _database(settings) as (_, sessions), sessions.begin() as session:
        refresh_calendar(config.calendar, settings.non_working_days, session)
        if adding:
            moved = add_decreed_day(
                session,
                args.day,
                args.decree,
                calendar=config.calendar,
                identity=config.identity,
                actor=_actor(),
                now=now,
            )
        else:
            moved = remove_decreed_day(
                session,
                args.day,
                calendar=config.calendar,
                settings_days=settings.non_working_days,
                identity=config.identity,
                actor=_actor(),
                now=now,
            )
    what = "added" if adding else "removed"
    print(f"{args.day.isoformat()} {what}; {len(moved)} open consulta(s) got a new due date")
    for item in moved:
        print(f"  {item.number}: {item.old_due_on.isoformat()} -> {item.new_due_on.isoformat()}")
    return 0


def _calendar_list(args: argparse.Namespace) -> int:
    from consultas.decreed_days import decreed_days

    settings = load_settings()
    with _database(settings) as (_, sessions), sessions() as session:
        rows = [
            {"day": d.isoformat(), "decree": text, "source": "database"}
            for d, text in decreed_days(session).items()
        ]
    known = {row["day"] for row in rows}
    rows += [
        {"day": d.isoformat(), "decree": "", "source": "CONSULTAS_NON_WORKING_DAYS"}
        for d in settings.non_working_days
        if d.isoformat() not in known
    ]
    rows.sort(key=lambda row: row["day"])
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    elif not rows:
        print("no decreed days")
    else:
        for row in rows:
            print(f"{row['day']}  {row['decree'] or '(' + row['source'] + ')'}")
    return 0


# retention and the citizen's rights ---------------------------------------------------------------


def _retention(args: argparse.Namespace) -> int:
    from consultas.context import ServiceConfig
    from consultas.privacy import compact_storage, run_retention

    settings = load_settings()
    config = ServiceConfig.from_settings(settings)
    with _database(settings) as (engine, sessions):
        with sessions.begin() as session:
            result = run_retention(
                session,
                args.before,
                tz=config.calendar.tz,
                actor=_actor(),
                now=SystemClock().now(),
                dry_run=args.dry_run,
            )
        if not args.dry_run:
            compact_storage(engine)
    verb = "would be anonymised (dry run)" if args.dry_run else "anonymised"
    print(
        f"{result.consultas} consulta(s) closed before {args.before.isoformat()} {verb}; run {result.run_id}"
    )
    return 0


def _citizen_export(args: argparse.Namespace) -> int:
    from consultas.privacy import export_citizen

    settings = load_settings()
    with _database(settings) as (_, sessions), sessions.begin() as session:
        exported = export_citizen(session, args.document, actor=_actor(), now=SystemClock().now())
    print(json.dumps(exported, ensure_ascii=False, indent=2))
    if not exported:
        print("consultas: no consultas with that document", file=sys.stderr)
        return 1
    return 0


def _citizen_erase(args: argparse.Namespace) -> int:
    from consultas.privacy import compact_storage, erase_citizen

    settings = load_settings()
    with _database(settings) as (engine, sessions):
        with sessions.begin() as session:
            result, still_open = erase_citizen(
                session, args.document, actor=_actor(), now=SystemClock().now()
            )
        compact_storage(engine)
    print(
        f"{result.consultas} closed consulta(s) anonymised; {still_open} open one(s) kept until they close; "
        f"run {result.run_id}"
    )
    return 0


# watchdog ----------------------------------------------------------------------------------------


def _watchdog_status(args: argparse.Namespace) -> int:
    from consultas.watchdog import watchdog_state

    settings = load_settings()
    with _database(settings) as (_, sessions), sessions() as session:
        state = watchdog_state(session, now=SystemClock().now())
    print(json.dumps(state, ensure_ascii=False, indent=2))
    return 0

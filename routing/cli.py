"""Subcommands of the routing package: ``red import``, ``red list`` and ``classify``."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from consultas.cliargs import Once
from consultas.errors import RegistryError


def register(subparsers: Any) -> None:
    """Add this package's subcommands to the ``consultas`` command."""
    red = subparsers.add_parser(
        "red",
        help="the Red registry (titular and alterno of each organo)",
        description="Directive 4.2: load and show the Red para la Atención al Usuario.",
    )
    red_sub = red.add_subparsers(dest="red_command", metavar="ACTION", required=True)
    load = red_sub.add_parser(
        "import",
        help="load or refresh the Red from a YAML file and print what changed",
        description=(
            "Validate FILE and make the database's Red match it; changed titulares/alternos are "
            "kept as dated history. An invalid file changes nothing (exit code 1)."
        ),
    )
    load.add_argument("file", metavar="FILE", type=Path, help="the registry YAML (see docs/red.example.yaml)")
    load.set_defaults(handler=_red_import)
    listing = red_sub.add_parser(
        "list",
        help="show the organos with their current titular and alterno",
        description="Show the Red in the database: active organos with their current members.",
    )
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.add_argument(
        "--history", action="store_true", help="include past members and inactive organos (with dates)"
    )
    listing.set_defaults(handler=_red_list)

    classify = subparsers.add_parser(
        "classify",
        help="classify a mail as administrativa or técnica and print JSON; --retrain rebuilds the model",
        description=(
            'Directive 5.2: print {"type", "organo", "reason"} for a mail. The organos come from '
            "--red, else CONSULTAS_RED_FILE, else the registry in the database; the model is the "
            "database's newest (with --red: one trained from the file's topics and the labelled sets). "
            "--retrain trains a new model on the registry's topics, the labelled sets and every "
            "correction stored in the database, and stores it (the nightly job does the same)."
        ),
    )
    classify.add_argument("mail", metavar="FILE.eml", nargs="?", help="the mail to classify, or - for stdin")
    classify.add_argument(
        "--retrain", action="store_true", help="rebuild the classifier's model from the database and store it"
    )
    classify.add_argument("--red", action=Once, metavar="FILE.yaml", type=Path, help="use this registry file")
    classify.add_argument("--tema", action=Once, help="the bot theme (organo code or ADMINISTRATIVA)")
    classify.set_defaults(handler=_classify)


def _print_problems(command: str, exc: RegistryError) -> None:
    for problem in exc.problems:
        print(f"consultas {command}: error: {problem}", file=sys.stderr)


def _red_import(args: argparse.Namespace) -> int:
    from consultas.db import open_database
    from consultas.settings import load_settings
    from routing.corrections import retrain
    from routing.red_registry import apply_registry
    from routing.red_registry_file import parse_registry

    settings = load_settings()
    try:
        content = args.file.read_text(encoding="utf-8")
        registry = parse_registry(content)
    except OSError as exc:
        print(f"consultas red import: error: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except RegistryError as exc:
        _print_problems("red import", exc)
        print("consultas red import: the registry in force was not changed", file=sys.stderr)
        return 1
    engine, sessions = open_database(settings.resolved_database_url)
    try:
        with sessions.begin() as session:
            summary = apply_registry(
                session, registry, source=str(args.file), content=content, now=datetime.now(UTC)
            )
            # The registry's topics are part of what the classifier learns: retrain with them.
            model = retrain(session, now=datetime.now(UTC)) if registry.organos else None
    finally:
        engine.dispose()
    count = len(registry.organos)
    print(f"registry imported from {args.file} ({count} organos, import #{summary.import_id})")
    for line in summary.lines():
        print(f"  {line}")
    if model is not None:
        print(f"classifier model #{model.id} retrained ({model.examples} examples)")
    return 0


def _red_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from consultas.db import open_database
    from consultas.models import Organo, RedMember
    from consultas.settings import load_settings

    settings = load_settings()
    engine, sessions = open_database(settings.resolved_database_url)
    try:
        with sessions() as session:
            organos = session.scalars(select(Organo).order_by(Organo.code)).all()
            members = session.scalars(select(RedMember).order_by(RedMember.organo_code, RedMember.id)).all()
    finally:
        engine.dispose()
    rows: list[dict[str, Any]] = []
    for organo in organos:
        if not (organo.active or args.history):
            continue
        own = [
            _member_json(m)
            for m in members
            if m.organo_code == organo.code and (args.history or m.valid_to is None)
        ]
        rows.append(
            {
                "code": organo.code,
                "name": organo.name,
                "active": organo.active,
                "topics": organo.topics,
                "members": own,
            }
        )
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    if not rows:
        print("the Red registry is empty (load it with: consultas red import FILE)")
    for row in rows:
        print(f"{row['code']}  {row['name']}{'' if row['active'] else '  (inactive)'}")
        for member in row["members"]:
            flags = [
                flag for flag, on in (("ausente", member["absent"]), ("rebotó", member["bounced_at"])) if on
            ]
            until = (member["valid_to"] or "")[:10]
            period = f"  {member['valid_from'][:10]} - {until}" if args.history else ""
            shown = f"  [{', '.join(flags)}]" if flags else ""
            print(f"    {member['role']:<8} {member['name']} <{member['email']}>{shown}{period}")
    return 0


def _member_json(member: Any) -> dict[str, Any]:
    return {
        "role": member.role.value,
        "name": member.name,
        "cargo": member.cargo,
        "email": member.email,
        "phone": member.phone,
        "absent": member.absent,
        "bounced_at": member.bounced_at.isoformat() if member.bounced_at else None,
        "valid_from": member.valid_from.isoformat(),
        "valid_to": member.valid_to.isoformat() if member.valid_to else None,
    }


def _classify(args: argparse.Namespace) -> int:
    from consultas.errors import MalformedMailError
    from consultas.mime import parse_mail
    from consultas.settings import load_settings
    from routing.classify import OrganoTopics, classify
    from routing.learning import builtin_examples, train_model
    from routing.red_registry_file import load_registry_file

    if args.retrain:
        return _retrain(settings_url=load_settings().resolved_database_url)
    if args.mail is None:
        print("consultas classify: error: give FILE.eml (or - for stdin), or --retrain", file=sys.stderr)
        return 2
    raw = sys.stdin.buffer.read() if args.mail == "-" else _read_bytes(args.mail)
    if raw is None:
        return 1
    try:
        mail = parse_mail(raw)
    except MalformedMailError as exc:
        print(f"consultas classify: error: not a mail: {exc}", file=sys.stderr)
        return 1
    settings = load_settings()
    red_file = args.red or settings.red_file
    topics: tuple[OrganoTopics, ...]
    try:
        if red_file:
            topics = load_registry_file(red_file).organo_topics()
            model = train_model(builtin_examples(topics)) if topics else None
        else:
            topics, model = _topics_and_model_from_db(settings.resolved_database_url)
    except RegistryError as exc:
        _print_problems("classify", exc)
        return 1
    if not topics:
        print("consultas classify: error: no Red registry (use --red FILE.yaml)", file=sys.stderr)
        return 1
    result = classify(mail.subject, mail.text, topics, tema=args.tema, model=model)
    shown = {"type": result.type, "organo": result.organo, "reason": result.reason}
    print(json.dumps(shown, ensure_ascii=False))
    return 0


def _read_bytes(path: str) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        print(f"consultas classify: error: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return None


def _topics_and_model_from_db(url: str) -> Any:
    from consultas.db import open_database
    from routing.corrections import current_model
    from routing.red_registry import organo_topics

    engine, sessions = open_database(url)
    try:
        with sessions() as session:
            topics = organo_topics(session)
            return topics, current_model(session) if topics else None
    finally:
        engine.dispose()


def _retrain(settings_url: str) -> int:
    from consultas.db import open_database
    from routing.corrections import retrain

    engine, sessions = open_database(settings_url)
    try:
        with sessions.begin() as session:
            row = retrain(session, now=datetime.now(UTC))
            labels = len(row.summary.get("labels", {}))
            shown = (row.id, row.examples, row.corrections, labels)
    except ValueError as exc:
        print(f"consultas classify: error: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print("classifier model #{} trained on {} examples ({} corrections), {} labels".format(*shown))
    return 0

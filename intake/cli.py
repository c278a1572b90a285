"""Subcommands of the intake package: ``parse`` and ``poll``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from consultas.errors import MalformedMailError
from consultas.settings import load_settings
from intake.imap_poller_cli import register_poll


def register(subparsers: Any) -> None:
    """Add this package's subcommands to the ``consultas`` command."""
    parse = subparsers.add_parser(
        "parse",
        help="parse one mail and print its requisitos as JSON",
        description="Parse FILE.eml (or - for standard input) as the intake would and print one JSON object.",
    )
    parse.add_argument("file", metavar="FILE.eml", help="the mail, or - to read standard input")
    parse.set_defaults(handler=_parse)
    register_poll(subparsers)


def _parse(args: argparse.Namespace) -> int:
    from consultas.context import ServiceConfig
    from intake.parse_command import parse_to_json

    settings = load_settings()
    identity = ServiceConfig.from_settings(settings).identity
    try:
        raw = sys.stdin.buffer.read() if args.file == "-" else open(args.file, "rb").read()  # noqa: SIM115
    except OSError as exc:
        print(f"consultas parse: error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        result = parse_to_json(
            raw,
            own_addresses=frozenset({identity.address.lower()}),
            own_message_id_domain=identity.message_id_domain,
            max_attachment_bytes=settings.max_attachment_bytes,
        )
    except MalformedMailError as exc:
        print(f"consultas parse: error: not a mail: {exc}", file=sys.stderr)
        return 1
    try:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    except UnicodeEncodeError:
        # A terminal whose encoding lacks a character of the mail: the same JSON, escaped.
        print(json.dumps(result, ensure_ascii=True, indent=2))
    return 0

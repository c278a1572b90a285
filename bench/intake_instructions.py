"""The intake's cost per mail in CPU instructions (valgrind's callgrind): repeatable on a noisy machine.

Usage::

    .venv/bin/python bench/intake_instructions.py              # 100 and 300 mails, ~2 min
    .venv/bin/python bench/intake_instructions.py --small 200 --large 600

Timings on this shared machine vary by half within an hour, so a change worth 5% cannot be seen in
mails/s. Instructions can: callgrind counts the same total for the same program, inputs and
environment whatever else the machine does. This runs the Maildir intake (``poll_maildir_once``,
batches of 100, on PostgreSQL, as ``bench_intake.py`` does, without workers or SMTP: the outbox rows
are written, not sent) over the first ``--small`` and then the first ``--large`` mails of the
generated corpus, each in a fresh database cloned from one migrated template, and prints

    intake instructions per mail: 18.12 M (100 mails: 6.00 G, 300 mails: 9.63 G)

The difference between the two runs divided by the difference in mails leaves out start-up (imports,
connecting). Only this process is counted: PostgreSQL's own work is not. Python's hash seed is fixed
so that dict and set orders repeat. Needs ``valgrind`` (Debian package; on every machine here).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.bench_intake import (  # noqa: E402 (the repo root must be importable first)
    generate_corpus,
    throwaway_database,
)

BATCH_SIZE = 100


def run_intake(database_url: str, maildir_path: Path, var_dir: Path) -> int:
    """Process every mail in ``maildir_path`` into ``database_url``; returns how many (the measured part)."""
    from consultas.clock import SystemClock
    from consultas.context import ServiceConfig
    from consultas.db import open_database
    from consultas.settings import load_settings
    from intake.batching import freeze_startup_objects
    from intake.maildir_source import Maildir, poll_maildir_once

    settings = load_settings(
        database_url=database_url,
        var_dir=var_dir,
        secret_key="bench-secret",
        auto_reply_cap_per_day=10_000_000,
        log_level="WARNING",
    )
    config = ServiceConfig.from_settings(settings)
    engine, sessions = open_database(settings.resolved_database_url)
    maildir = Maildir(maildir_path)
    freeze_startup_objects()
    total = 0
    while counts := poll_maildir_once(
        sessions,
        maildir,
        mailbox=config.mailbox,
        config=config,
        clock=SystemClock(),
        batch_size=BATCH_SIZE,
        on_committed=lambda ids: None,  # as a source with workers does, minus the broker
    ).total:
        total += counts
    engine.dispose()
    return total


def callgrind_total(path: Path) -> int:
    """The instruction count a callgrind output file reports (its ``summary:`` or ``totals:`` line)."""
    for line in path.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise ValueError(f"{path} has no summary line")


def count_instructions(n: int, corpus: Path, template: str, work: Path) -> int:
    """Instructions of one intake run over the first ``n`` mails, in a fresh copy of ``template``."""
    with throwaway_database(keep=False, template=template) as url:
        maildir, var = work / f"maildir-{n}", work / f"var-{n}"
        for sub in ("new", "cur", "tmp"):
            (maildir / sub).mkdir(parents=True)
        var.mkdir()
        for mail in sorted(corpus.glob("*.eml"))[:n]:
            os.link(mail, maildir / "new" / mail.name)
        out = work / f"callgrind-{n}.out"
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             sys.executable, __file__, "--child", url, str(maildir), str(var)],
            check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": "0"},
        )  # fmt: skip
        left = list((maildir / "new").iterdir())
        if left:
            raise RuntimeError(f"{len(left)} mails were left unprocessed in {maildir}/new")
        return callgrind_total(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=100, help="mails in the first run (default 100)")
    parser.add_argument("--large", type=int, default=300, help="mails in the second run (default 300)")
    parser.add_argument("--child", nargs=3, metavar=("URL", "MAILDIR", "VAR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        url, maildir, var = args.child
        print(f"processed {run_intake(url, Path(maildir), Path(var))}", file=sys.stderr)
        return 0
    if not 0 < args.small < args.large:
        parser.error("--small must be positive and below --large")
    with tempfile.TemporaryDirectory() as tmp, throwaway_database(keep=False) as template_url:
        work = Path(tmp)
        template = template_url.rsplit("/", 1)[1]
        corpus = work / "corpus"
        generate_corpus(args.large, corpus)
        small = count_instructions(args.small, corpus, template, work)
        large = count_instructions(args.large, corpus, template, work)
    per_mail = (large - small) / (args.large - args.small)
    print(
        f"intake instructions per mail: {per_mail / 1e6:.2f} M "
        f"({args.small} mails: {small / 1e9:.2f} G, {args.large} mails: {large / 1e9:.2f} G)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Intake benchmark: N generated mails -> consultas on PostgreSQL -> confirmations at a local SMTP server.

Usage::

    .venv/bin/python bench/bench_intake.py --mode maildir --n 10000 --runs 3

Each run generates the corpus with /work/shared/bench/gen_corpus.py, loads it into a Maildir, creates
a throwaway PostgreSQL database (migrated with ``consultas.db.upgrade``, dropped at the end unless
``--keep``), runs the intake with the in-process workers sending through SMTP to an aiosmtpd sink in
a thread, and prints mails/s end to end (start of intake until the sink has received the last
confirmation), peak RSS and the checks (N consultas, N confirmations, fields equal to the manifest,
0 duplicates). One function per mode: ``run_maildir`` here; the IMAP mode joins as ``run_imap``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, func, select, text

GEN_CORPUS = Path("/work/shared/bench/gen_corpus.py")
PG_ADMIN_URL = os.environ.get("CONSULTAS_BENCH_PG_ADMIN_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")
CONFIRMATION_MARK = b"ha sido registrada"
DEADLINE_S = 1800.0


class _Sink:
    """aiosmtpd handler counting confirmations (and every mail) and when the last one arrived."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mails = 0
        self.confirmations = 0
        self.last_at = 0.0
        self.done = threading.Event()
        self.expected = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        head = bytes(envelope.content[:2048])
        with self.lock:
            self.mails += 1
            if CONFIRMATION_MARK in head:
                self.confirmations += 1
                self.last_at = time.perf_counter()
                if self.confirmations >= self.expected:
                    self.done.set()
        return "250 OK"


@dataclass
class RunResult:
    mails_per_s: float
    seconds: float
    checks: dict[str, Any]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _throwaway_database() -> tuple[str, Callable[[], None]]:
    from consultas.db import upgrade

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"consultas_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


def _manifest(folder: Path) -> Iterator[dict[str, Any]]:
    with (folder / "manifest.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            yield json.loads(line)


def _e164(digits: str) -> str:
    return "+51" + digits.lstrip("0")


def check_against_manifest(url: str, corpus: Path, n: int, sink: _Sink) -> dict[str, Any]:
    """Stream the consultas in arrival order next to the manifest and compare the fields."""
    from consultas.db import make_engine
    from consultas.models import Consulta

    engine = make_engine(url)
    mismatches: dict[str, int] = {}
    with engine.connect() as connection:
        numbered = connection.scalar(select(func.count(Consulta.id)).where(Consulta.number.is_not(None))) or 0
        distinct = connection.scalar(select(func.count(func.distinct(Consulta.origin_message_id)))) or 0
        total = connection.scalar(select(func.count(Consulta.id))) or 0
        rows = connection.execution_options(yield_per=2000).execute(
            select(
                Consulta.origin_message_id,
                Consulta.full_name,
                Consulta.document_number,
                Consulta.entity_ruc,
                Consulta.entity_name,
                Consulta.phone,
                Consulta.reply_address,
            ).order_by(Consulta.id)
        )
        for expected, row in zip(_manifest(corpus), rows, strict=False):
            pairs = {
                "message_id": (expected["message_id"], row.origin_message_id),
                "name": (expected["name"], row.full_name),
                "dni": (expected["dni"], row.document_number),
                "ruc": (expected["ruc"], row.entity_ruc),
                "entity": (expected["entity"], row.entity_name),
                "phone": (_e164(expected["phone"]), row.phone),
                "sender": (expected["sender"].lower(), row.reply_address),
            }
            for key, (want, got) in pairs.items():
                if want != got:
                    mismatches[key] = mismatches.get(key, 0) + 1
    engine.dispose()
    return {
        "consultas": numbered,
        "consultas_ok": numbered == n,
        "confirmations_received": sink.confirmations,
        "confirmations_ok": sink.confirmations == n,
        "mails_at_smtp": sink.mails,
        "field_mismatches": mismatches,
        "fields_ok": not mismatches,
        "duplicates": total - distinct,
    }


def run_maildir(n: int, corpus: Path, *, keep: bool, batch_size: int, threads: int) -> RunResult:
    """One Maildir run: fresh database and sink, the corpus copied into a fresh Maildir."""
    from consultas.clock import SystemClock
    from consultas.context import ServiceConfig
    from consultas.db import make_sessionmaker
    from consultas.settings import load_settings
    from intake.maildir_source import Maildir, poll_maildir_once
    from workers.mail import hint_send_batches
    from workers.runtime import close_runtime, start_inprocess_workers

    url, drop = _throwaway_database()
    sink = _Sink()
    sink.expected = n
    port = _free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    with tempfile.TemporaryDirectory() as var:
        maildir = Maildir(Path(var) / "maildir")
        for entry in os.scandir(corpus):
            if entry.name.endswith(".eml"):
                os.link(entry.path, maildir.new / entry.name)
        settings = load_settings(
            var_dir=Path(var),
            database_url=url,
            secret_key="bench-secret",
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_starttls=False,
            auto_reply_cap_per_day=10_000_000,  # the corpus reuses senders; the cap is tested elsewhere
            log_level="WARNING",
        )
        config = ServiceConfig.from_settings(settings)
        workers = start_inprocess_workers(settings, threads=threads)
        from workers.runtime import get_runtime

        sessions = make_sessionmaker(get_runtime().engine)
        clock = SystemClock()
        started = time.perf_counter()
        try:
            while True:
                counts = poll_maildir_once(
                    sessions,
                    maildir,
                    mailbox=config.mailbox,
                    config=config,
                    clock=clock,
                    batch_size=batch_size,
                    limit=batch_size * 20,
                    on_committed=hint_send_batches,
                )
                if not counts.total:
                    break
            if not sink.done.wait(DEADLINE_S):
                print(f"deadline: only {sink.confirmations} confirmations", file=sys.stderr)
            elapsed = (sink.last_at or time.perf_counter()) - started
        finally:
            workers.stop()
            close_runtime()
            controller.stop()
        checks = check_against_manifest(url, corpus, n, sink)
    if keep:
        print(f"kept database {url}", file=sys.stderr)
    else:
        drop()
    return RunResult(mails_per_s=n / elapsed, seconds=elapsed, checks=checks)


def peak_rss_mb() -> float:
    """Peak RSS of this process: the service (intake, workers, sending) runs in it."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss_text() -> str:
    """This process's peak RSS, and apart from it the largest waited-for child (the corpus generator,
    test servers): Linux reports the children's peak as the largest one, not a sum."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return f"peak RSS {peak_rss_mb():.0f} MB (service process; largest child process {children:.0f} MB)"


def main(argv: list[str] | None = None) -> int:
    """Generate the corpus once, run the chosen mode ``--runs`` times, print the median and checks."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=["maildir", "imap"], default="maildir")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the databases and print their URLs")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--threads", type=int, default=4, help="worker threads sending the outbox")
    args = parser.parse_args(argv)
    runners: dict[str, Callable[..., RunResult]] = {"maildir": run_maildir}
    if args.mode not in runners:
        print(f"mode {args.mode} is not implemented in this file yet", file=sys.stderr)
        return 2
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory() as corpus_dir:
        corpus = Path(corpus_dir)
        subprocess.run(
            [sys.executable, str(GEN_CORPUS), "--n", str(args.n), "--out", str(corpus)],
            check=True,
            capture_output=True,
        )
        for index in range(args.runs):
            result = runners[args.mode](
                args.n, corpus, keep=args.keep, batch_size=args.batch_size, threads=args.threads
            )
            print(
                f"run {index + 1}: {result.mails_per_s:.0f} mails/s ({result.seconds:.1f} s) "
                f"checks={json.dumps(result.checks, sort_keys=True)}"
            )
            results.append(result)
    median = statistics.median(r.mails_per_s for r in results)
    ok = all(
        r.checks["consultas_ok"]
        and r.checks["confirmations_ok"]
        and r.checks["fields_ok"]
        and not r.checks["duplicates"]
        for r in results
    )
    print(
        f"mode={args.mode} n={args.n} runs={args.runs}: median {median:.0f} mails/s end to end; "
        f"{peak_rss_text()}; checks {'OK' if ok else 'FAILED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Intake benchmark, IMAP mode: N generated mails in a real Dovecot -> consultas -> confirmations by SMTP.

Usage::

    .venv/bin/python bench/bench_intake_imap.py --n 5000 --runs 3

Each run starts a throwaway Dovecot (tests/servers/dovecot.py), delivers the corpus of
/work/shared/bench/gen_corpus.py into consultas@mef.gob.pe's INBOX over LMTP (not timed), creates a
throwaway PostgreSQL database, then times the IMAP poller (``intake.imap_poller.poll_once``: batched
UID FETCH, one transaction per batch, UID MOVE per batch) with the in-process workers sending the
confirmations to an aiosmtpd sink, until the sink has the last confirmation. It prints mails/s end
to end, peak RSS and the checks (N consultas, N confirmations, fields equal to the manifest, 0
duplicates, INBOX empty). Helpers are shared with bench/bench_intake.py (Maildir mode).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aiosmtpd.controller import Controller

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_intake import (  # noqa: E402 (the repo root must be importable first)
    DEADLINE_S,
    GEN_CORPUS,
    RunResult,
    _free_port,
    _Sink,
    _throwaway_database,
    check_against_manifest,
    peak_rss_text,
)
from tests.servers.dovecot import DovecotServer  # noqa: E402

MAILBOX = "consultas@mef.gob.pe"


def deliver_corpus(dovecot: DovecotServer, corpus: Path) -> int:
    """LMTP every .eml of the corpus into the INBOX, in file order, over one connection."""
    names = sorted(name for name in os.listdir(corpus) if name.endswith(".eml"))
    with smtplib.LMTP(dovecot.host, dovecot.lmtp_port, timeout=30) as lmtp:
        for name in names:
            lmtp.sendmail("remitente@example.pe", [MAILBOX], (corpus / name).read_bytes())
    return len(names)


def run_imap(n: int, corpus: Path, *, keep: bool, batch_size: int, threads: int) -> RunResult:
    """One IMAP run: fresh Dovecot, database and sink."""
    from consultas.clock import SystemClock
    from consultas.context import ServiceConfig
    from consultas.settings import load_settings
    from intake.imap_poller import poll_once
    from workers.mail import hint_send_batches
    from workers.runtime import close_runtime, get_runtime, start_inprocess_workers

    url, drop = _throwaway_database()
    sink = _Sink()
    sink.expected = n
    port = _free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    with DovecotServer() as dovecot, tempfile.TemporaryDirectory() as var:
        deliver_corpus(dovecot, corpus)
        settings = load_settings(
            var_dir=Path(var),
            database_url=url,
            secret_key="bench-secret",
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_starttls=False,
            imap_host=dovecot.host,
            imap_port=dovecot.imap_port,
            imap_user=MAILBOX,
            imap_password="secret",
            imap_ssl=False,
            auto_reply_cap_per_day=10_000_000,  # the corpus reuses senders; the cap is tested elsewhere
            log_level="WARNING",
        )
        config = ServiceConfig.from_settings(settings)
        workers = start_inprocess_workers(settings, threads=threads)
        sessions = get_runtime().sessions
        started = time.perf_counter()
        try:
            counts = asyncio.run(
                poll_once(
                    settings,
                    sessions,
                    config,
                    SystemClock(),
                    batch_size=batch_size,
                    on_committed=hint_send_batches,
                )
            )
            polled_at = time.perf_counter()
            if not sink.done.wait(DEADLINE_S):
                print(f"deadline: only {sink.confirmations} confirmations", file=sys.stderr)
            elapsed = (sink.last_at or time.perf_counter()) - started
        finally:
            workers.stop()
            close_runtime()
            controller.stop()
        checks = check_against_manifest(url, corpus, n, sink)
        checks["inbox_left"] = dovecot.message_count(MAILBOX, "INBOX")
        checks["processed_folder"] = dovecot.message_count(MAILBOX, "Procesados")
        checks["poll_counts"] = dict(counts.counts)
        checks["intake_only_mails_per_s"] = round(n / (polled_at - started))
    if keep:
        print(f"kept database {url}", file=sys.stderr)
    else:
        drop()
    return RunResult(mails_per_s=n / elapsed, seconds=elapsed, checks=checks)


def main(argv: list[str] | None = None) -> int:
    """Generate the corpus once, run ``--runs`` times, print each run, the median and the checks."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the databases and print their URLs")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--threads", type=int, default=4, help="worker threads sending the outbox")
    args = parser.parse_args(argv)
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory() as corpus_dir:
        corpus = Path(corpus_dir)
        subprocess.run(
            [sys.executable, str(GEN_CORPUS), "--n", str(args.n), "--out", str(corpus)],
            check=True,
            capture_output=True,
        )
        for index in range(args.runs):
            result = run_imap(
                args.n, corpus, keep=args.keep, batch_size=args.batch_size, threads=args.threads
            )
            print(
                f"run {index + 1}: {result.mails_per_s:.0f} mails/s ({result.seconds:.1f} s) "
                f"checks={json.dumps(result.checks, sort_keys=True)}",
                flush=True,
            )
            results.append(result)
    median = statistics.median(r.mails_per_s for r in results)
    ok = all(
        r.checks["consultas_ok"]
        and r.checks["confirmations_ok"]
        and r.checks["fields_ok"]
        and not r.checks["duplicates"]
        and r.checks["inbox_left"] == 0
        for r in results
    )
    print(
        f"mode=imap n={args.n} runs={args.runs}: median {median:.0f} mails/s end to end; "
        f"{peak_rss_text()}; checks {'OK' if ok else 'FAILED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

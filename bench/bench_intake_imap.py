"""Intake benchmark, IMAP mode: N generated mails in a real Dovecot -> consultas -> confirmations by SMTP.

Usage::

    .venv/bin/python bench/bench_intake_imap.py --n 5000 --runs 3
    .venv/bin/python bench/bench_intake_imap.py --n 5000 --workers process --worker-processes 2
    .venv/bin/python bench/bench_intake_imap.py --n 5000 --workers inprocess --sink thread  # one process

Each run starts a throwaway Dovecot (tests/servers/dovecot.py), delivers the corpus of
/work/shared/bench/gen_corpus.py into consultas@mef.gob.pe's INBOX over LMTP (not timed), creates a
throwaway PostgreSQL database, starts the topology's sink and workers, then times the IMAP poller
(``intake.imap_poller.poll_once``: batched UID FETCH, one transaction per batch, UID MOVE per batch,
``hint_send_batches`` as ``on_committed``) in this process until the sink has the last confirmation.

Measured: mails/s end to end (``intake_only_mails_per_s`` in the checks stops when the poll ends),
peak RSS per process and the checks (N consultas, N confirmations, fields equal to the manifest, 0
duplicates, INBOX empty).

Topologies, as in bench/bench_intake.py (whose helpers this file reuses) and printed in the summary
line: ``--workers process`` (default: ``consultas worker --processes K --threads T`` subprocesses on
the Redis broker ``--redis-url``, database 7 by default, flushed each run; the poller hints the sends
through it) or ``--workers inprocess`` (the memory broker in this process); ``--sink process``
(default: the aiosmtpd sink in its own process) or ``--sink thread``. Peak RSS: this (poller)
process from ``getrusage``, the worker processes, the Dramatiq supervisor and the sink process from
``VmHWM`` (the largest value over the runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import smtplib
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_intake import (  # noqa: E402 (the repo root must be importable first)
    RunResult,
    Topology,
    add_topology_arguments,
    all_ok,
    check_against_manifest,
    frozen_startup,
    generate_corpus,
    running_service,
    summary_line,
    throwaway_database,
    topology_from_args,
    wait_for_confirmations,
)
from bench.intake_topology import CpuMeter, PeakRss, exit_on_sigterm, monotonic_s  # noqa: E402
from intake.imap_poller import DEFAULT_BATCH_SIZE  # noqa: E402
from tests.servers.dovecot import DovecotServer  # noqa: E402

MAILBOX = "consultas@mef.gob.pe"


def deliver_corpus(dovecot: DovecotServer, corpus: Path) -> int:
    """LMTP every .eml of the corpus into the INBOX, in file order, over one connection."""
    names = sorted(name for name in os.listdir(corpus) if name.endswith(".eml"))
    with smtplib.LMTP(dovecot.host, dovecot.lmtp_port, timeout=30) as lmtp:
        for name in names:
            lmtp.sendmail("remitente@example.pe", [MAILBOX], (corpus / name).read_bytes())
    return len(names)


def run_imap(
    n: int, corpus: Path, *, keep: bool, batch_size: int, topology: Topology, peak: PeakRss
) -> RunResult:
    """One IMAP run: fresh Dovecot, database, sink and workers."""
    from consultas.clock import SystemClock
    from intake.imap_poller import poll_once

    with (
        throwaway_database(keep=keep) as url,
        DovecotServer() as dovecot,
        tempfile.TemporaryDirectory() as var,
    ):
        deliver_corpus(dovecot, corpus)
        overrides = {
            "var_dir": Path(var),
            "database_url": url,
            "imap_host": dovecot.host,
            "imap_port": dovecot.imap_port,
            "imap_user": MAILBOX,
            "imap_password": "secret",
            "imap_ssl": False,
        }
        with (
            running_service(topology, expected=n, overrides=overrides, peak=peak) as service,
            frozen_startup(),
        ):
            cpu = CpuMeter()
            cpu.start()
            started = monotonic_s()
            counts = asyncio.run(
                poll_once(
                    service.settings,
                    service.sessions,
                    service.config,
                    SystemClock(),
                    batch_size=batch_size,
                    on_committed=service.on_committed,
                )
            )
            polled_at = monotonic_s()
            elapsed = wait_for_confirmations(service, started)
            cpu.stop()
        checks = check_against_manifest(url, corpus, n, service.sink)
        checks["inbox_left"] = dovecot.message_count(MAILBOX, "INBOX")
        checks["processed_folder"] = dovecot.message_count(MAILBOX, "Procesados")
        checks["poll_counts"] = dict(counts.counts)
        checks["intake_only_mails_per_s"] = round(n / (polled_at - started))
    return RunResult(mails_per_s=n / elapsed, seconds=elapsed, checks=checks, cpu=cpu)


def main(argv: list[str] | None = None) -> int:
    """Generate the corpus once, run ``--runs`` times, print each run, the median and the checks."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the databases and print their URLs")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="mails per transaction")
    add_topology_arguments(parser)
    args = parser.parse_args(argv)
    exit_on_sigterm()
    topology = topology_from_args(args)
    peak = PeakRss()
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory() as corpus_dir:
        corpus = Path(corpus_dir)
        generate_corpus(args.n, corpus)
        for index in range(args.runs):
            result = run_imap(
                args.n, corpus, keep=args.keep, batch_size=args.batch_size, topology=topology, peak=peak
            )
            print(
                f"run {index + 1}: {result.mails_per_s:.0f} mails/s ({result.seconds:.1f} s) "
                f"{result.cpu_text(args.n)} checks={json.dumps(result.checks, sort_keys=True)}",
                flush=True,
            )
            results.append(result)
    ok = all_ok(results) and all(r.checks["inbox_left"] == 0 for r in results)
    print(summary_line("mode=imap", args.n, results, topology, peak, ok=ok))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Intake benchmark: N generated mails -> consultas on PostgreSQL -> confirmations at a local SMTP sink.

Usage::

    .venv/bin/python bench/bench_intake.py --n 10000 --runs 3
    .venv/bin/python bench/bench_intake.py --n 10000 --workers process --worker-processes 2 --threads 4
    .venv/bin/python bench/bench_intake.py --n 10000 --workers inprocess --sink thread  # one process
    .venv/bin/python bench/bench_intake.py --n 10000 --sink smtp-sink  # Postfix's smtp-sink receives

Each run generates the corpus with /work/shared/bench/gen_corpus.py (once), links it into a fresh
Maildir, creates a throwaway PostgreSQL database (migrated with ``consultas.db.upgrade`` in a
subprocess, dropped at the end unless ``--keep``), starts the topology's sink and workers, runs the
intake (``poll_maildir_once`` with ``hint_send_batches`` as ``on_committed``) in this process and
waits until the SMTP sink has every confirmation.

Measured: mails/s end to end (start of the intake until the sink received the last confirmation;
``intake_only_mails_per_s`` in the checks stops when the Maildir is empty), peak RSS per process and
the checks (N consultas, N confirmations, fields equal to the manifest, 0 duplicates).

Topologies (printed in the summary line, e.g. ``workers=process(1) sink=process``):

- ``--workers process`` (default, as in production): ``consultas worker --processes K --threads T``
  (``--worker-processes K``, ``--threads T``) with ``CONSULTAS_BROKER_URL`` set to ``--redis-url``
  (default redis://127.0.0.1:6379/7, flushed at the start of each run; databases 0 and 15 are
  refused) and the same database and SMTP settings; this process configures the same Redis broker
  and hints the sends through it (``hint_send_batches``), like ``consultas poll``. No outbox sweep
  runs (the scheduler's job in production): every row is hinted. The Dramatiq CLI configures the
  worker processes' logging (INFO, one line per mail sent, as in production), written to
  ``consultas-worker.log`` in the run's temporary directory. The workers are stopped with SIGTERM
  at the end of each run, also on errors; a worker that dies mid-run fails the run at once.
- ``--workers inprocess``: ``start_inprocess_workers`` on the memory broker in this process (the
  embedded ``consultas serve`` mode): intake and sending share one interpreter and one GIL.
- ``--sink process`` (default): the aiosmtpd sink is its own process (bench/intake_topology.py),
  which reports its counts and the arrival time of the last confirmation; ``--sink thread``: a
  thread of this process; ``--sink smtp-sink``: Postfix's ``smtp-sink`` (C; from the ``postfix``
  Debian package, which scripts/install-test-deps.sh installs) dumping every mail to a file that
  this process counts. aiosmtpd costs this machine ~1.5 ms of CPU per mail received, as much as
  the worker that sends it, and competes for the same two cores; smtp-sink costs a fraction of it.
- The intake freezes its start-up objects as ``consultas serve`` and ``poll`` do
  (``intake.batching.freeze_startup_objects``).

Peak RSS: this (intake) process from ``getrusage(RUSAGE_SELF)`` (with the in-process workers or the
sink thread when those run here), every worker process, the Dramatiq supervisor and the sink process
from ``VmHWM`` just before they are stopped; the largest value over the runs. The service's target
is "peak RSS <= 150 MB": compare it with the intake and the worker figures separately.
The IMAP mode is bench/bench_intake_imap.py; it reuses this file's helpers.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, func, select, text

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.intake_topology import (  # noqa: E402 (the repo root must be importable first)
    CPU_ROLES,
    DEFAULT_REDIS_URL,
    SINK_KINDS,
    CpuMeter,
    PeakRss,
    Sink,
    SinkCounts,
    WorkerProcesses,
    exit_on_sigterm,
    flush_redis,
    make_sink,
    monotonic_s,
    settings_env,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from consultas.context import ServiceConfig
    from consultas.settings import Settings

GEN_CORPUS = Path("/work/shared/bench/gen_corpus.py")
PG_ADMIN_URL = os.environ.get("CONSULTAS_BENCH_PG_ADMIN_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")
DEADLINE_S = 1800.0


@dataclass
class RunResult:
    mails_per_s: float
    seconds: float
    checks: dict[str, Any]
    cpu: CpuMeter

    def cpu_text(self, n: int) -> str:
        """E.g. ``cpu ms/mail {"intake": 6.4, ..., "total": 14.1}, 1.9 cores busy``."""
        return f"cpu ms/mail {json.dumps(self.cpu.ms_per_mail(n))}, {self.cpu.cores_busy:.1f} cores busy"


@dataclass(frozen=True)
class Topology:
    """Where the sending workers and the SMTP sink run (see the module docstring)."""

    workers: str = "process"
    sink: str = "process"
    worker_processes: int = 1
    threads: int = 4
    redis_url: str = DEFAULT_REDIS_URL

    def label(self) -> str:
        workers = f"process({self.worker_processes})" if self.workers == "process" else "inprocess"
        return f"workers={workers} sink={self.sink}"


@dataclass
class Service:
    """What a run's intake needs from the running topology."""

    settings: Settings
    sessions: sessionmaker[Session]
    config: ServiceConfig
    sink: Sink
    on_committed: Callable[[list[int]], object]
    check_alive: Callable[[], None]


def add_topology_arguments(parser: argparse.ArgumentParser) -> None:
    """``--workers``, ``--sink``, ``--worker-processes``, ``--threads``, ``--redis-url``."""
    parser.add_argument(
        "--workers",
        choices=["process", "inprocess"],
        default="process",
        help="process: `consultas worker` subprocess(es) on Redis (default); inprocess: memory broker here",
    )
    parser.add_argument(
        "--sink",
        choices=SINK_KINDS,
        default="process",
        help="SMTP sink: aiosmtpd in its own process (default) or in a thread of the benchmark process, "
        "or Postfix's smtp-sink (C, far less CPU per mail)",
    )
    parser.add_argument(
        "--worker-processes", type=int, default=1, help="`consultas worker --processes` (default 1)"
    )
    parser.add_argument(
        "--threads", type=int, default=4, help="sending threads per worker process (default 4)"
    )
    parser.add_argument(
        "--redis-url", default=DEFAULT_REDIS_URL, help="broker of --workers process; flushed every run"
    )


def topology_from_args(args: argparse.Namespace) -> Topology:
    return Topology(
        workers=args.workers,
        sink=args.sink,
        worker_processes=args.worker_processes,
        threads=args.threads,
        redis_url=args.redis_url,
    )


@contextmanager
def frozen_startup() -> Iterator[None]:
    """What ``consultas serve`` and ``poll`` do once started (``freeze_startup_objects``), for a run."""
    from intake.batching import freeze_startup_objects

    freeze_startup_objects()
    try:
        yield
    finally:
        gc.unfreeze()


@contextmanager
def running_service(
    topology: Topology, *, expected: int, overrides: dict[str, Any], peak: PeakRss
) -> Iterator[Service]:
    """Start the sink and the workers of ``topology``; on exit stop them all (also on errors).

    ``overrides`` are the run's own settings (``var_dir``, ``database_url``, IMAP ...); the SMTP,
    broker and bench settings are added here and given to the worker processes as ``CONSULTAS_*``.
    """
    from consultas.context import ServiceConfig
    from consultas.settings import load_settings
    from workers.mail import hint_send_batches

    port = _free_port()
    sink = make_sink(topology.sink, port, expected)
    sink.start()
    overrides = {
        **overrides,
        "secret_key": "bench-secret",
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_starttls": False,
        "auto_reply_cap_per_day": 10_000_000,  # the corpus reuses senders; the cap is tested elsewhere
        "log_level": "WARNING",
        "broker_url": topology.redis_url if topology.workers == "process" else "memory",
    }
    try:
        settings = load_settings(**overrides)
        config = ServiceConfig.from_settings(settings)
        if topology.workers == "process":
            from consultas.db import open_database
            from workers.broker import configure_broker

            flush_redis(topology.redis_url)
            workers = WorkerProcesses(
                env=settings_env(overrides),
                processes=topology.worker_processes,
                threads=topology.threads,
                log_path=Path(overrides["var_dir"]) / "consultas-worker.log",
            )
            try:
                workers.start()
                broker = configure_broker(topology.redis_url)
                engine, sessions = open_database(settings.resolved_database_url)

                def check_alive() -> None:
                    sink.check_alive()
                    workers.check_alive()

                try:
                    yield Service(settings, sessions, config, sink, hint_send_batches, check_alive)
                finally:
                    engine.dispose()
                    broker.close()
            finally:
                workers.stop()
                peak.record_workers(workers)
        else:
            from workers.embedded import start_inprocess_workers
            from workers.runtime import close_runtime, get_runtime

            handle = start_inprocess_workers(settings, threads=topology.threads)
            try:
                yield Service(
                    settings, get_runtime().sessions, config, sink, hint_send_batches, sink.check_alive
                )
            finally:
                handle.stop()
                close_runtime()
    finally:
        peak.record_intake()
        sink.stop()
        peak.record_sink(sink)


def wait_for_confirmations(service: Service, started: float) -> float:
    """Seconds from ``started`` until the sink had the last expected confirmation (or the deadline).

    Raises RuntimeError as soon as the sink or worker processes have died.
    """
    deadline = started + DEADLINE_S
    while not service.sink.wait(1.0):
        service.check_alive()
        if monotonic_s() > deadline:
            print(f"deadline: not every confirmation arrived within {DEADLINE_S:.0f} s", file=sys.stderr)
            return monotonic_s() - started
    return service.sink.last_at - started


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def throwaway_database(*, keep: bool, template: str | None = None) -> Iterator[str]:
    """The URL of a new migrated database, dropped when the block ends unless ``keep``.

    The migration runs in a subprocess (production runs it once, apart from the service) so that
    Alembic's memory does not count in the intake process's peak RSS. With ``template`` (the name
    of a migrated database) the new one is a copy of it, not migrated again.
    """
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"consultas_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(
            text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        )
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        if template is None:
            upgrade = "import sys; from consultas.db import upgrade; upgrade(sys.argv[1])"
            subprocess.run([sys.executable, "-c", upgrade, url], check=True)
        yield url
    finally:
        if keep:
            print(f"kept database {url}", file=sys.stderr)
        else:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _manifest(folder: Path) -> Iterator[dict[str, Any]]:
    with (folder / "manifest.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            yield json.loads(line)


def _e164(digits: str) -> str:
    return "+51" + digits.lstrip("0")


def check_against_manifest(url: str, corpus: Path, n: int, sink: SinkCounts) -> dict[str, Any]:
    """Stream the consultas in arrival order next to the manifest and compare the fields.

    ``sink`` is stopped already: its counts are final (a sink process reports them when it ends).
    """
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


def run_maildir(
    n: int, corpus: Path, *, keep: bool, batch_size: int, topology: Topology, peak: PeakRss
) -> RunResult:
    """One Maildir run: fresh database, sink and workers, the corpus linked into a fresh Maildir."""
    from consultas.clock import SystemClock
    from intake.maildir_source import Maildir, poll_maildir_once

    with throwaway_database(keep=keep) as url, tempfile.TemporaryDirectory() as var:
        maildir = Maildir(Path(var) / "maildir")
        for entry in os.scandir(corpus):
            if entry.name.endswith(".eml"):
                os.link(entry.path, maildir.new / entry.name)
        overrides = {"var_dir": Path(var), "database_url": url}
        with (
            running_service(topology, expected=n, overrides=overrides, peak=peak) as service,
            frozen_startup(),
        ):
            clock = SystemClock()
            cpu = CpuMeter()
            cpu.start()
            started = monotonic_s()
            while True:
                counts = poll_maildir_once(
                    service.sessions,
                    maildir,
                    mailbox=service.config.mailbox,
                    config=service.config,
                    clock=clock,
                    batch_size=batch_size,
                    limit=batch_size * 20,
                    on_committed=service.on_committed,
                )
                if not counts.total:
                    break
            polled_at = monotonic_s()
            elapsed = wait_for_confirmations(service, started)
            cpu.stop()
        checks = check_against_manifest(url, corpus, n, service.sink)
        checks["intake_only_mails_per_s"] = round(n / (polled_at - started))
    return RunResult(mails_per_s=n / elapsed, seconds=elapsed, checks=checks, cpu=cpu)


def all_ok(results: list[RunResult]) -> bool:
    """Every run admitted and confirmed N mails with the manifest's fields and no duplicate."""
    return all(
        r.checks["consultas_ok"]
        and r.checks["confirmations_ok"]
        and r.checks["fields_ok"]
        and not r.checks["duplicates"]
        for r in results
    )


def generate_corpus(n: int, out: Path) -> None:
    subprocess.run(
        [sys.executable, str(GEN_CORPUS), "--n", str(n), "--out", str(out)], check=True, capture_output=True
    )


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
    add_topology_arguments(parser)
    args = parser.parse_args(argv)
    exit_on_sigterm()
    if args.mode != "maildir":
        print("the IMAP mode is bench/bench_intake_imap.py", file=sys.stderr)
        return 2
    topology = topology_from_args(args)
    peak = PeakRss()
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory() as corpus_dir:
        corpus = Path(corpus_dir)
        generate_corpus(args.n, corpus)
        for index in range(args.runs):
            result = run_maildir(
                args.n, corpus, keep=args.keep, batch_size=args.batch_size, topology=topology, peak=peak
            )
            print(
                f"run {index + 1}: {result.mails_per_s:.0f} mails/s ({result.seconds:.1f} s) "
                f"{result.cpu_text(args.n)} checks={json.dumps(result.checks, sort_keys=True)}",
                flush=True,
            )
            results.append(result)
    ok = all_ok(results)
    print(summary_line(f"mode={args.mode}", args.n, results, topology, peak, ok=ok))
    return 0 if ok else 1


def summary_line(
    mode: str, n: int, results: list[RunResult], topology: Topology, peak: PeakRss, *, ok: bool
) -> str:
    """The median figures of the runs, peak RSS, the median CPU per role and the checks."""
    median = statistics.median(r.mails_per_s for r in results)
    roles = sorted({role for r in results for role in r.cpu.ms_per_mail(n)}, key=_role_order)
    per_run = [r.cpu.ms_per_mail(n) for r in results]
    cpu = {role: round(statistics.median(ms.get(role, 0.0) for ms in per_run), 2) for role in roles}
    cores = statistics.median(r.cpu.cores_busy for r in results)
    return (
        f"{mode} n={n} runs={len(results)} {topology.label()}: median {median:.0f} mails/s end to end; "
        f"{peak.text(workers=topology.workers, sink=topology.sink)}; median cpu ms/mail {json.dumps(cpu)}, "
        f"{cores:.1f} cores busy; checks {'OK' if ok else 'FAILED'}"
    )


def _role_order(role: str) -> int:
    return (*CPU_ROLES, "total").index(role)


if __name__ == "__main__":
    sys.exit(main())

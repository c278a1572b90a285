"""The intake benchmarks themselves, at a small N: they run, their checks hold, their figures add up.

The figures quoted in README come from these scripts at large N; this keeps them runnable on a
clean checkout (real PostgreSQL, Redis, SMTP sink process, worker processes and, for IMAP, Dovecot).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from bench.intake_topology import CpuMeter, DumpedMails
from tests.plugins.database import PG_ADMIN_URL
from tests.servers.dovecot import DovecotServer

pytestmark = pytest.mark.slow  # runs the benchmarks

REPO = Path(__file__).resolve().parents[1]
GEN_CORPUS = Path("/work/shared/bench/gen_corpus.py")
#: A Redis database of its own: the suite flushes 15, the benchmark refuses 0 and 15.
BENCH_REDIS_URL = "redis://127.0.0.1:6379/13"
N = 25


def run_bench(script: str, *options: str) -> tuple[dict[str, Any], str]:
    """Run ``bench/<script> [options]`` at N mails, once; return the run's checks and the summary line."""
    if not GEN_CORPUS.exists():
        pytest.skip(f"{GEN_CORPUS} is not available")
    env = {**os.environ, "CONSULTAS_BENCH_PG_ADMIN_URL": PG_ADMIN_URL}
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), "--n", str(N), "--runs", "1",
         "--redis-url", BENCH_REDIS_URL, *options],
        check=False, capture_output=True, text=True, timeout=300, env=env, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    run_line, summary = result.stdout.strip().splitlines()[-2:]
    checks = json.loads(run_line.split(" checks=", 1)[1])
    return checks, summary


def cpu_figures(summary: str) -> tuple[dict[str, float], float]:
    """The median CPU milliseconds per mail by role, and the busy cores, from the summary line."""
    match = re.search(r"median cpu ms/mail (\{.*?\}), ([0-9.]+) cores busy", summary)
    assert match, summary
    return json.loads(match.group(1)), float(match.group(2))


def assert_counted_every_part(cpu: dict[str, float], cores: float, roles: tuple[str, ...]) -> None:
    """``roles`` each cost something, the parts add up to the total, and the busy cores are possible.

    Only parts well above /proc's 10 ms tick at N mails belong in ``roles``: PostgreSQL's share at
    25 mails (~0.4 ms a mail) is one tick or none, so it is checked by
    ``test_the_cpu_meter_counts_a_postgresql_backends_work_as_postgres`` instead.
    """
    for role in roles:
        assert cpu.get(role, 0.0) > 0, (role, cpu)
    parts = sum(ms for role, ms in cpu.items() if role != "total")
    assert cpu["total"] == pytest.approx(parts, abs=0.1)
    assert 0 < cores <= (os.cpu_count() or 1) + 0.05


def test_the_maildir_benchmark_admits_and_confirms_every_mail_and_reports_cpu_per_part(
    postgres_url: str, redis_server_url: str
) -> None:
    checks, summary = run_bench("bench_intake.py")

    assert checks["consultas"] == N and checks["confirmations_received"] == N
    assert checks["fields_ok"] and checks["duplicates"] == 0
    assert "checks OK" in summary and "peak RSS intake" in summary
    cpu, cores = cpu_figures(summary)
    assert_counted_every_part(cpu, cores, ("intake", "workers", "sink"))


def test_the_maildir_benchmark_counts_every_mail_at_postfix_smtp_sink(
    postgres_url: str, redis_server_url: str
) -> None:
    checks, summary = run_bench("bench_intake.py", "--sink", "smtp-sink")

    assert checks["consultas"] == N and checks["confirmations_received"] == N
    assert checks["mails_at_smtp"] == 2 * N  # the confirmation and the routed mail of each consulta
    assert checks["fields_ok"] and checks["duplicates"] == 0
    assert "sink=smtp-sink" in summary and re.search(r"smtp-sink \d+ MB", summary), summary
    cpu, cores = cpu_figures(summary)
    # smtp-sink's share at 25 mails is a tick or two of /proc's 10 ms: not asserted here.
    assert_counted_every_part(cpu, cores, ("intake", "workers"))


def test_the_imap_benchmark_empties_the_inbox_and_confirms_every_mail(
    postgres_url: str, redis_server_url: str, dovecot_server: DovecotServer
) -> None:
    checks, summary = run_bench("bench_intake_imap.py")

    assert checks["consultas"] == N and checks["confirmations_received"] == N
    assert checks["inbox_left"] == 0 and checks["processed_folder"] == N
    assert "checks OK" in summary
    cpu, cores = cpu_figures(summary)
    # Dovecot's share at 25 mails is below the 10 ms tick of /proc: not asserted here.
    assert_counted_every_part(cpu, cores, ("intake", "workers", "sink"))


def test_the_cpu_meter_counts_a_postgresql_backends_work_as_postgres(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))  # the backend exists before the meter starts and after it stops
        meter = CpuMeter()
        meter.start()
        # Work only the server does: a few hundred ms of CPU in the backend, nothing for the client.
        connection.execute(text("SELECT count(*) FROM generate_series(1, 5000000) AS g WHERE g % 7 = 3"))
        meter.stop()
    engine.dispose()

    assert meter.seconds["postgres"] >= 0.05, meter.seconds
    assert meter.seconds["postgres"] > meter.seconds["intake"], meter.seconds


def test_the_attachment_memory_benchmark_reads_large_mails_in_byte_bounded_batches() -> None:
    env = {**os.environ, "CONSULTAS_BENCH_PG_ADMIN_URL": PG_ADMIN_URL}
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "batch_memory.py"), "--mails", "6", "--attachment-kb", "2048"],
        check=False, capture_output=True, text=True, timeout=300, env=env, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    line = re.compile(r"^(.+): (\d+) batches, (\d+) processed, peak RSS (\d+) MB$", re.MULTILINE)
    by_label = {
        label: (int(batches), int(done), int(peak))
        for label, batches, done, peak in line.findall(result.stdout)
    }
    bounded, unbounded = by_label["byte bound 8 MiB"], by_label["mail count only"]
    assert bounded[1] == unbounded[1] == 6
    assert bounded[0] == 3 and unbounded[0] == 1  # two ~2.8 MB mails per 8 MiB batch; else one batch of six
    assert bounded[2] > 0 and unbounded[2] > 0


def test_a_mail_smtp_sink_is_still_writing_is_counted_once_its_headers_are_complete(tmp_path: Path) -> None:
    dumped = DumpedMails(tmp_path)
    confirmation = tmp_path / "m.1a2b3c"
    confirmation.write_bytes(b"X-Client-Addr: 127.0.0.1\nSubject: [CONS-2026-000001] Su consulta ")

    assert dumped.read_new() == 0
    assert (dumped.mails, dumped.confirmations) == (0, 0)

    confirmation.write_bytes(
        b"X-Client-Addr: 127.0.0.1\nSubject: [CONS-2026-000001] Su consulta ha sido registrada\n\nBody\n"
    )
    (tmp_path / "m.4d5e6f").write_bytes(b"X-Client-Addr: 127.0.0.1\nSubject: Nueva consulta\n\nBody\n")

    assert dumped.read_new() == 2
    assert (dumped.mails, dumped.confirmations) == (2, 1)
    assert dumped.last_at > 0
    assert dumped.read_new() == 0  # each file counted once (and removed)
    assert list(tmp_path.iterdir()) == []


def test_the_instruction_benchmark_runs_the_intake_over_its_maildir_and_reads_callgrind_totals(
    tmp_path: Path, db_url: str
) -> None:
    from bench.intake_instructions import callgrind_total, run_intake

    maildir = tmp_path / "maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for name in ("outlook_alternative_labelled.eml", "gmail_alternative_prose.eml"):
        (maildir / "new" / name).write_bytes((REPO / "tests" / "fixtures" / "mails" / name).read_bytes())

    assert run_intake(db_url, maildir, tmp_path / "var") == 2
    assert not list((maildir / "new").iterdir())
    engine = create_engine(db_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM consulta")).scalar() == 2
    engine.dispose()

    out = tmp_path / "callgrind.out"
    out.write_text("# callgrind format\nversion: 1\ncmd: python\nevents: Ir\nsummary: 123456789\n")
    assert callgrind_total(out) == 123_456_789

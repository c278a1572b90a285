"""Benchmark the follow-up jobs on 1,000,000 consultas in a throwaway PostgreSQL database.

    .venv/bin/python bench/bench_followup.py [--rows 1000000] [--admin-url postgresql+psycopg://root@127.0.0.1:5432/test]

Creates ``consultas_bench_<random>``, migrates it, seeds it with one INSERT ... SELECT over
generate_series (15 órganos + administrativa, two years of presentations up to 2025-08-18, ~3%
in subsanación, older consultas mostly answered, ~1.5% of them still open and overdue, recent ones
mostly open), runs ANALYZE, then times (median of 5):
- the daily digest (``build_digest``) for 2025-08-18,
- the quarterly report (``build_report``) for 2025Q2,
- the reminder sweep (``run_reminders``) at 2025-08-18 10:00 Lima: the first run (which queues
  every owed mail) once, then 5 re-runs (the steady state every 15 minutes: nothing new owed),
and drops the database (``--keep`` keeps it; ``--db NAME`` reuses a kept one without reseeding:
the follow-up mails earlier runs queued are deleted and ``outbox``/``message`` re-analyzed empty,
so the first run is measured again from the same state as after a seed).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consultas.calendar import WorkingCalendar
from consultas.context import ServiceConfig
from consultas.db import make_engine, make_sessionmaker, upgrade
from consultas.outbox import MailIdentity
from workers.digest import build_digest
from workers.reminders import run_reminders
from workers.reports import Quarter, build_report

TODAY = date(2025, 8, 18)
NOW = datetime(2025, 8, 18, 15, 0, tzinfo=UTC)  # 10:00 in Lima
ORGANOS = [f"ORG{n:02d}" for n in range(1, 16)]

SEED_SQL = """
INSERT INTO consulta (number, channel, status, tipo, organo_code, subject, represents_entity,
                      missing, invalid, received_at, presented_on, due_on, answered_on,
                      created_at, updated_at)
SELECT
  CASE WHEN s.kind = 'subsanacion' THEN NULL
       ELSE 'CONS-' || extract(year FROM s.presented)::int || '-' || lpad((s.i % 1000000)::text, 6, '0') END,
  'email',
  s.kind,
  CASE WHEN s.org IS NULL THEN 'administrativa' ELSE 'tecnica' END,
  s.org,
  'Consulta de prueba ' || s.i,
  false, '[]', '[]',
  s.presented::timestamp + interval '15 hours',
  CASE WHEN s.kind = 'subsanacion' THEN NULL ELSE s.presented END,
  CASE WHEN s.kind = 'subsanacion' THEN NULL ELSE s.presented + 14 END,
  CASE WHEN s.kind = 'respondida' THEN s.presented + (s.r2 * 20)::int END,
  now(), now()
FROM (
  SELECT g.i, p.presented, g.r2,
    CASE WHEN g.r0 < 0.03 THEN 'subsanacion'
         WHEN p.presented > :today - 14 AND g.r1 < 0.7 THEN 'asignada'
         WHEN p.presented <= :today - 14 AND g.r1 < 0.015 THEN 'asignada'
         ELSE 'respondida' END AS kind,
    CASE WHEN g.r3 < 0.15 THEN NULL
         ELSE 'ORG' || lpad((1 + floor(g.r4 * 15))::int::text, 2, '0') END AS org
  FROM (SELECT i, random() AS r0, random() AS r1, random() AS r2, random() AS r3, random() AS r4,
               (random() * 730)::int AS back
        FROM generate_series(1, :rows) AS i) AS g
  CROSS JOIN LATERAL (
    SELECT CASE extract(isodow FROM (:today - g.back))
             WHEN 6 THEN (:today - g.back) + 2 WHEN 7 THEN (:today - g.back) + 1
             ELSE (:today - g.back) END AS presented
  ) AS p
) AS s
"""


def config() -> ServiceConfig:
    return ServiceConfig(
        identity=MailIdentity(address="consultas@mef.gob.pe", name="Consultas MEF"),
        calendar=WorkingCalendar(),
        number_prefix="CONS",
        due_working_days=10,
        ogdau_email="ogdau@mef.gob.pe",
        ogsu_email="ogsu@mef.gob.pe",
        secret_key=b"b" * 32,
        auto_reply_cap=5,
        max_attachment_bytes=10_000_000,
        reminder_offsets=(3, 0),
        subsanacion_expiry_working_days=10,
    )


def timed(fn: Callable[[], object], runs: int = 5) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--admin-url", default="postgresql+psycopg://root@127.0.0.1:5432/test")
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    parser.add_argument(
        "--db",
        metavar="NAME",
        help="reuse a database kept with --keep: no seeding; the follow-up mails a previous run "
        "queued are deleted first (then VACUUM ANALYZE, as after the seed) so the first run is "
        "measured again; implies --keep",
    )
    args = parser.parse_args()
    print("$", shlex.join([".venv/bin/python", "bench/bench_followup.py", *sys.argv[1:]]))

    admin = create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    name = args.db or f"consultas_bench_{uuid.uuid4().hex[:8]}"
    keep = args.keep or args.db is not None
    url = args.admin_url.rsplit("/", 1)[0] + f"/{name}"
    if args.db is None:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(url)
    try:
        if args.db is None:
            seed(engine, url, rows=args.rows)
        else:
            reset_followup(engine)
        run_benchmarks(engine)
    finally:
        engine.dispose()
        if keep:
            print(f"kept database {name}: rerun with --db {name}")
        else:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return 0


def seed(engine: Engine, url: str, *, rows: int) -> None:
    """Migrate and fill the database, then ANALYZE it (the planner's view right after a load)."""
    upgrade(url)
    start = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO organo (code, name, topics, active, updated_at) "
                "SELECT c, 'Órgano ' || c, '[]', true, now() FROM unnest(CAST(:codes AS text[])) AS c"
            ),
            {"codes": ORGANOS},
        )
        connection.execute(text(SEED_SQL), {"rows": rows, "today": TODAY})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ANALYZE"))
    print(f"seeded {rows:,} consultas in {time.perf_counter() - start:.1f} s")


def reset_followup(engine: Engine) -> None:
    """Delete what earlier sweeps queued, so the next run is a first run again."""
    with engine.begin() as connection:
        connection.execute(
            text(
                "WITH gone AS (DELETE FROM outbox WHERE template IN ('recordatorio_red', 'escalamiento') "
                "RETURNING message_pk) DELETE FROM message WHERE id IN (SELECT message_pk FROM gone)"
            )
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE outbox"))
        connection.execute(text("VACUUM ANALYZE message"))
    print("deleted the follow-up mails of earlier runs; VACUUM ANALYZE outbox, message")


def run_benchmarks(engine: Engine) -> None:
    with engine.connect() as connection:
        for status, n in connection.execute(
            text("SELECT status, count(*) FROM consulta GROUP BY 1 ORDER BY 1")
        ):
            print(f"  {status:<12} {n:>9,}")

    sessions = make_sessionmaker(engine)
    cfg = config()

    def digest() -> object:
        with sessions() as session:
            return build_digest(session, config=cfg, on=TODAY)

    def report() -> object:
        with sessions() as session:
            return build_report(session, config=cfg, quarter=Quarter(2025, 2))

    def sweep() -> object:
        with sessions.begin() as session:
            return run_reminders(session, config=cfg, now=NOW)

    seconds, result = timed(digest)
    print(f"digest  (build_digest 2025-08-18):   median {seconds * 1000:8.1f} ms  "
          f"pendientes={result.total_pendientes} vencidas={result.total_vencidas}")  # type: ignore[attr-defined]  # fmt: skip
    seconds, result = timed(report)
    print(f"report  (build_report 2025Q2):       median {seconds * 1000:8.1f} ms  "
          f"recibidas={result.total.recibidas} promedio={result.total.promedio_dias_habiles}")  # type: ignore[attr-defined]  # fmt: skip
    seconds, result = timed(sweep, runs=1)
    print(f"sweep   (run_reminders, first run):         {seconds * 1000:8.1f} ms  {result.as_dict()}")  # type: ignore[attr-defined]
    seconds, result = timed(sweep)
    print(f"sweep   (run_reminders, re-run):     median {seconds * 1000:8.1f} ms  {result.as_dict()}")  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())

"""Time one ``/metrics`` scrape and one ``/readyz`` check on a large throwaway PostgreSQL database.

    .venv/bin/python bench/bench_metrics.py [--rows 1000000] [--admin-url postgresql+psycopg://root@127.0.0.1:5432/test]

Creates ``consultas_bench_<random>``, migrates it, seeds ``--rows`` consultas (15 órganos plus
administrativa, ~2% still open) with two mails each (the citizen's, our confirmation) and one sent
outbox row each, runs ANALYZE, then prints the median of 5 of: the whole scrape
(``consultas.metrics.build_registry`` + ``render``) and ``consultas.health.readiness``; then drops
the database (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consultas.calendar import WorkingCalendar
from consultas.db import make_engine, make_sessionmaker, upgrade
from consultas.health import readiness
from consultas.metrics import build_registry, render

NOW = datetime(2025, 8, 18, 15, 0, tzinfo=UTC)

SEED_SQL = """
INSERT INTO consulta (id, number, channel, status, tipo, organo_code, represents_entity, missing, invalid,
                      received_at, presented_on, due_on, created_at, updated_at)
SELECT i, 'CONS-2025-' || lpad(i::text, 7, '0'), 'email',
       CASE WHEN i % 50 = 0 THEN 'asignada' ELSE 'respondida' END,
       'tecnica', CASE WHEN i % 16 = 0 THEN NULL ELSE 'ORG' || lpad((i % 16)::text, 2, '0') END,
       false, '[]', '[]', now(), DATE '2025-08-01' - (i % 500), DATE '2025-08-15' - (i % 500), now(), now()
FROM generate_series(1, :rows) AS i;
INSERT INTO message (id, consulta_id, direction, channel, kind, mailbox, message_id, "references", recipients,
                     received_at)
SELECT 2 * i - d, i, CASE WHEN d = 1 THEN 'inbound' ELSE 'outbound' END, 'email',
       CASE WHEN d = 1 THEN 'citizen' ELSE 'outgoing' END, 'consultas@mef.gob.pe',
       '<m' || i || '.' || d || '@example.pe>', '[]', '[]', now()
FROM generate_series(1, :rows) AS i, (VALUES (0), (1)) AS v(d);
INSERT INTO outbox (id, idempotency_key, consulta_id, message_pk, channel, template, envelope_to, payload,
                    automatic, status, attempts, next_attempt_at, sent_at, created_at)
SELECT i, 'recibida:' || i, i, 2 * i, 'email', 'consulta_recibida', '[]', '{}', true, 'sent', 1,
       now(), now(), now()
FROM generate_series(1, :rows) AS i;
"""


def median_s(fn: Callable[[], object], runs: int = 5) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--admin-url", default="postgresql+psycopg://root@127.0.0.1:5432/test")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    name = f"consultas_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = args.admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade(url)
        engine = make_engine(url)
        with engine.begin() as connection:
            for statement in filter(str.strip, SEED_SQL.split(";")):
                connection.execute(text(statement), {"rows": args.rows})
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("ANALYZE")
        sessions = make_sessionmaker(engine)
        registry = build_registry(sessions, now=lambda: NOW, calendar=WorkingCalendar())
        scrape = median_s(lambda: render(registry))
        ready = median_s(
            lambda: readiness(
                sessions, now=NOW, broker_check=lambda: None, imap_watched=True, smtp_watched=True
            )
        )
        body, _ = render(registry)
        print(f"rows={args.rows} scrape_s={scrape:.3f} readyz_s={ready:.3f} scrape_bytes={len(body)}")
        engine.dispose()
    finally:
        if not args.keep:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())

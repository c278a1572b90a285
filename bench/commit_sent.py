"""The cost of the outbox's per-mail "sent" record, with and without an autocommit connection.

Usage::

    .venv/bin/python bench/commit_sent.py --n 3000 --rounds 2

A sender records each accepted mail (``consultas.outbox.commit_sent``) before the next one goes to
the server. This script fills a throwaway PostgreSQL database's outbox with N claimed rows and
records them one by one, alternating a plain connection (implicit BEGIN, UPDATE, COMMIT) and
``consultas.outbox.sent_recorder``'s autocommit connection (the UPDATE alone), and prints per
record: the client's CPU, the PostgreSQL backend's CPU (from ``/proc``) and the wall time. The
figures of each mode are medians over the rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, insert, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_intake import throwaway_database
from consultas.models import Outbox
from consultas.outbox import commit_sent, sent_recorder


def _backend_cpu_s(connection: Connection) -> float:
    pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _claimed_rows(engine: Engine, n: int, now: datetime) -> None:
    rows = [
        {"id": i, "idempotency_key": f"bench:{i}", "message_pk": i, "channel": "email",
         "template": "recibida", "envelope_to": ["c@example.org"], "primary_recipient": "c@example.org",
         "payload": {}, "automatic": True, "status": "sending", "attempts": 1,
         "next_attempt_at": now, "claimed_at": now, "claimed_by": "bench", "created_at": now}
        for i in range(1, n + 1)
    ]  # fmt: skip
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM outbox"))
        # The rows name messages that do not exist: only the outbox's own cost is measured.
        connection.execute(text("SET LOCAL session_replication_role = replica"))
        connection.execute(insert(Outbox), rows)


def one_round(engine: Engine, n: int, *, autocommit: bool) -> tuple[float, float, float]:
    """Microseconds per record: client CPU, backend CPU, wall."""
    now = datetime.now(UTC)
    _claimed_rows(engine, n, now)
    connection = sent_recorder(engine) if autocommit else engine.connect()
    with connection:
        backend_before = _backend_cpu_s(connection)
        connection.commit()
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        for outbox_id in range(1, n + 1):
            commit_sent(connection, outbox_id, now=now)
        cpu, wall = time.process_time() - cpu_before, time.perf_counter() - wall_before
        backend = _backend_cpu_s(connection) - backend_before
        connection.commit()
    return 1e6 * cpu / n, 1e6 * backend / n, 1e6 * wall / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    figures: dict[bool, list[tuple[float, float, float]]] = {False: [], True: []}
    with throwaway_database(keep=False) as url:
        engine = create_engine(url)
        try:
            for _ in range(args.rounds):
                for autocommit in (False, True):
                    figures[autocommit].append(one_round(engine, args.n, autocommit=autocommit))
        finally:
            engine.dispose()
    for autocommit, runs in figures.items():
        client, backend, wall = (statistics.median(run[i] for run in runs) for i in range(3))
        label = "autocommit (sent_recorder)" if autocommit else "BEGIN + UPDATE + COMMIT"
        print(
            f"{label:28s} client {client:5.0f} us  postgres {backend:5.0f} us  wall {wall:5.0f} us per record"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

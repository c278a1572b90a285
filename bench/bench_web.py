"""Web API load test on loopback: N submissions from C concurrent clients against ``consultas serve``.

Usage::

    .venv/bin/python bench/bench_web.py                       # embedded default (SQLite) and PostgreSQL
    .venv/bin/python bench/bench_web.py --db sqlite --n 2000 --clients 50
    .venv/bin/python bench/bench_web.py --production --web-workers 2   # PostgreSQL + Redis, as compose

Each run starts the real service as a newcomer does (``consultas db upgrade`` then ``consultas
serve``, a subprocess; the web app embedded at a free loopback port, the in-process workers, the
example Red, outgoing mail as .eml files under the run's var dir) on a fresh database: the SQLite
file of the embedded default, or a throwaway PostgreSQL database (dropped at the end). C clients
(one ``httpx.AsyncClient`` each, keep-alive) share N ``POST /api/v1/consultas`` with distinct
citizens; ``CONSULTAS_WEB_RATE_LIMIT`` is raised so that all of them come from 127.0.0.1.

Printed: submissions/s, p50/p95/max latency of the 201s, and the checks: N answers 201, N distinct
numbers (from the answers and from the database), N confirmations written by the workers (waited for,
bounded by ``--timeout``). Exit 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import create_engine, func, select, text

from consultas.db import make_engine
from consultas.models import Consulta

REPO = Path(__file__).resolve().parents[1]
#: The production topology's broker (flushed at the start of the run; never database 0).
REDIS_URL = os.environ.get("CONSULTAS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/10")
PG_ADMIN_URL = os.environ.get("CONSULTAS_BENCH_PG_ADMIN_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")
CONFIRMATION_SUBJECT = "Su consulta ha sido registrada"
TEMAS = ("DGPMI", "DGTP", "DGPP", "ADMINISTRATIVA")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _dni(i: int) -> str:
    return f"{40_000_000 + i:08d}"


def _submission(i: int) -> dict[str, Any]:
    return {
        "represents_entity": False,
        "document_type": "DNI",
        "document_number": _dni(i),
        "names": "Rosa María",
        "paternal_surname": "Quispe",
        "maternal_surname": "Huamán",
        "email": f"ciudadano{i}@example.pe",
        "phone": "987654321",
        "tema": TEMAS[i % len(TEMAS)],
        "question": f"¿Cómo registro el formato 12-B de la inversión número {i} en el Banco de Inversiones?",
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _load(
    base: str, n: int, clients: int
) -> tuple[list[float], list[dict[str, Any]], list[int], float]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    latencies: list[float] = []
    bodies: list[dict[str, Any]] = []
    failures: list[int] = []

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                started = time.perf_counter()
                response = await http.post("/api/v1/consultas", json=_submission(i))
                elapsed = time.perf_counter() - started
                if response.status_code == 201:
                    latencies.append(elapsed)
                    bodies.append(response.json())
                else:
                    failures.append(response.status_code)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, bodies, failures, time.perf_counter() - started


def _count_confirmations(outbox: Path) -> int:
    count = 0
    for path in outbox.glob("*.eml") if outbox.exists() else ():
        if path.name.startswith("."):  # a file still being written (renamed into place when complete)
            continue
        try:
            count += CONFIRMATION_SUBJECT.encode() in path.read_bytes()[:4000]
        except FileNotFoundError:
            continue
    return count


def _wait_port(port: int, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"consultas serve exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)  # polling a port the other process opens, with a deadline
    raise SystemExit("the web app did not start listening in time")


def run(
    db: str,
    n: int,
    clients: int,
    timeout_s: float,
    *,
    keep: bool = False,
    production: bool = False,
    web_workers: int = 2,
) -> bool:
    work = Path(tempfile.mkdtemp(prefix=f"bench-web-{db}-"))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSULTAS_")}
    env.update(
        PYTHONPATH=str(REPO),
        CONSULTAS_VAR_DIR=str(work / "var"),
        CONSULTAS_RED_FILE=str(REPO / "docs" / "red.example.yaml"),
        CONSULTAS_WEB_PORT=str(port),
        CONSULTAS_WEB_RATE_LIMIT=str(n * 10),
        CONSULTAS_LOG_LEVEL="WARNING",
    )
    admin = pg_name = None
    if db == "postgresql":
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        pg_name = f"bench_web_{uuid.uuid4().hex[:8]}"
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{pg_name}"'))
        env["CONSULTAS_DATABASE_URL"] = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{pg_name}"
        env["CONSULTAS_SECRET_KEY"] = "bench-web-secret"
    url = env.get("CONSULTAS_DATABASE_URL") or f"sqlite:///{work / 'var' / 'consultas.sqlite3'}"
    command = [sys.executable, "-m", "app.cli"]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run([*command, "db", "upgrade"], env=env, check=True, capture_output=True)
        log = (work / "serve.log").open("wb")
        if production:
            # `consultas web --workers W` + `consultas worker` on Redis, as docker/compose.yml runs them.
            if REDIS_URL.rstrip("/").endswith("/0") or REDIS_URL.count("/") < 3:
                raise SystemExit(
                    "CONSULTAS_BENCH_REDIS_URL must name a database other than 0 (it is flushed)"
                )
            env["CONSULTAS_BROKER_URL"] = REDIS_URL
            redis.Redis.from_url(REDIS_URL).flushdb()
            subprocess.run([*command, "red", "import", env.pop("CONSULTAS_RED_FILE")], env=env, check=True)
            for args in (
                ["worker", "--processes", "1", "--threads", "4"],
                ["web", "--workers", str(web_workers)],
            ):
                processes.append(
                    subprocess.Popen(
                        [*command, *args], env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT
                    )
                )
        else:
            processes.append(
                subprocess.Popen([*command, "serve"], env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT)
            )
        _wait_port(port, processes[-1], 60)
        latencies, bodies, failures, elapsed = asyncio.run(_load(f"http://127.0.0.1:{port}", n, clients))
        deadline = time.monotonic() + timeout_s
        confirmations = _count_confirmations(work / "var" / "outbox")
        while confirmations < n and time.monotonic() < deadline:
            time.sleep(0.5)  # the workers write the confirmations; bounded wait
            confirmations = _count_confirmations(work / "var" / "outbox")
        engine = make_engine(url)
        with engine.connect() as connection:
            stored = connection.execute(select(func.count(func.distinct(Consulta.number)))).scalar_one()
        engine.dispose()
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(60)
        if admin is not None:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
            admin.dispose()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    numbers = {body["number"] for body in bodies}
    checks = {
        "answers_201": len(bodies) == n and not failures,
        "distinct_numbers": len(numbers) == n,
        "numbers_in_db": stored == n,
        "confirmations": confirmations == n,
    }
    summary = {
        "db": "embedded default (SQLite)" if db == "sqlite" else "PostgreSQL",
        "topology": f"web --workers {web_workers} + worker (Redis)" if production else "consultas serve",
        "n": n,
        "clients": clients,
        "submissions_per_s": round(n / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "p95_ms": round(_percentile(latencies, 0.95) * 1000, 1) if latencies else None,
        "max_ms": round(max(latencies) * 1000, 1) if latencies else None,
        "distinct_numbers": len(numbers),
        "confirmations": confirmations,
        "failures": sorted(set(failures)),
        "checks": checks,
    }
    print(json.dumps(summary, ensure_ascii=False))
    return all(checks.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the confirmations")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder (var dir, serve.log)")
    parser.add_argument(
        "--production",
        action="store_true",
        help="PostgreSQL with `consultas web --workers W` and `consultas worker` on Redis instead of serve",
    )
    parser.add_argument("--web-workers", type=int, default=2, metavar="W")
    args = parser.parse_args()
    targets = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    if args.production:
        targets = ["postgresql"]
    results = [
        run(
            db,
            args.n,
            args.clients,
            args.timeout,
            keep=args.keep,
            production=args.production,
            web_workers=args.web_workers,
        )
        for db in targets
    ]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())

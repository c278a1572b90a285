"""Crash test: the poller killed at each step, over repeated runs, loses and duplicates nothing.

Each run is a real process (``os._exit(137)`` at the chosen step, like a SIGKILL: no cleanup, no
rollback handlers, no logout) against Dovecot and the database; then a normal run finishes the job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from consultas.models import Consulta, Direction, Message, Outbox
from intake.imap_poller import CRASH_STEPS
from tests.intake_imap_support import MAILBOX, NOW, citizen_mail
from tests.servers.dovecot import DovecotServer

REPO = Path(__file__).resolve().parents[1]
KILLED = 137
ROUNDS = 3
MAILS_PER_ROUND = 3

#: The child: one poll_once, dying with os._exit(137) when the poller reaches the chosen step.
CHILD = """
import asyncio, json, os, sys
from datetime import datetime
from consultas.clock import FixedClock
from consultas.context import ServiceConfig
from consultas.db import make_engine, make_sessionmaker
from consultas.settings import Settings
from intake.imap_poller import poll_once

args = json.loads(sys.argv[1])
step = args.pop("crash_at")
batch_size = args.pop("batch_size")
now = datetime.fromisoformat(args.pop("now"))
settings = Settings(_env_file=None, **args)
engine = make_engine(settings.resolved_database_url)

def crash(reached):
    if reached == step:
        os._exit(137)

result = asyncio.run(poll_once(settings, make_sessionmaker(engine), ServiceConfig.from_settings(settings),
                               FixedClock(now), crash_at=crash if step else None, batch_size=batch_size))
print(json.dumps(dict(result.counts)))
"""


def _run_child(dovecot: DovecotServer, db_url: str, var_dir: Path, crash_at: str | None) -> int:
    args = {
        "crash_at": crash_at,
        "batch_size": 2,  # several batches per run: the crash can land mid-way
        "now": NOW.isoformat(),
        "database_url": db_url,
        "var_dir": str(var_dir),
        "secret_key": "crash-test-secret",
        "imap_host": dovecot.host,
        "imap_port": dovecot.imap_port,
        "imap_user": MAILBOX,
        "imap_password": "secret",
        "imap_ssl": False,
        "imap_timeout_s": 10.0,
    }
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "CONSULTAS_LOG_LEVEL": "WARNING"}
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    if completed.returncode not in {0, KILLED}:
        raise AssertionError(f"poller child failed ({completed.returncode}):\n{completed.stderr.decode()}")
    return completed.returncode


@pytest.mark.parametrize("step", CRASH_STEPS)
def test_a_poller_killed_at_any_step_loses_no_mail_and_duplicates_no_consulta(
    step: str, dovecot: DovecotServer, db_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    delivered: list[str] = []
    for round_ in range(ROUNDS):
        # Given a few new mails (and, from the second round, a re-delivery of an earlier one)
        for n in range(MAILS_PER_ROUND):
            number = round_ * MAILS_PER_ROUND + n
            dovecot.deliver(citizen_mail(number), MAILBOX)
            delivered.append(f"<consulta-{number}@example.pe>")
        if round_:
            dovecot.deliver(citizen_mail(0), MAILBOX)
        # When the poller dies at the step
        assert _run_child(dovecot, db_url, tmp_path / "var", crash_at=step) == KILLED
        # Then nothing is ever half-done: every consulta has exactly one confirmation so far
        assert set(_confirmations(sessions).values()) <= {1}
    # And a normal run afterwards finishes the job
    assert _run_child(dovecot, db_url, tmp_path / "var", crash_at=None) == 0

    assert dovecot.message_count(MAILBOX, "INBOX") == 0
    assert dovecot.message_count(MAILBOX, "Procesados") == len(delivered) + ROUNDS - 1
    with sessions() as session:
        stored = set(
            session.scalars(select(Message.message_id).where(Message.direction == Direction.INBOUND)).all()
        )
        consultas = session.scalar(select(func.count()).select_from(Consulta))
    assert stored == set(delivered)  # 0 lost
    assert consultas == len(delivered)  # 0 duplicated
    confirmations = _confirmations(sessions)
    assert len(confirmations) == len(delivered)
    assert set(confirmations.values()) == {1}


def _confirmations(sessions: sessionmaker[Session]) -> dict[int, int]:
    """Consulta id -> its confirmation outbox rows."""
    with sessions() as session:
        rows = session.execute(
            select(Outbox.consulta_id, func.count(Outbox.id))
            .where(Outbox.template == "consulta_recibida")
            .group_by(Outbox.consulta_id)
        ).all()
    return {int(consulta_id or 0): int(count) for consulta_id, count in rows}

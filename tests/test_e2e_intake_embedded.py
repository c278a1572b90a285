"""`consultas serve` as a newcomer runs it: only CONSULTAS_VAR_DIR set, a mail dropped in, the reply read.

Runs the real command in a subprocess (``consultas db upgrade`` then ``consultas serve``), waits with a
deadline for the confirmation, and stops it with SIGTERM expecting a clean exit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from tests.e2e_support import consultas, drop_mail, stop, written_mails
from tests.intake_support import citizen_mail
from tests.servers.smtp_sink import SmtpSink

pytestmark = pytest.mark.slow  # runs `consultas` in subprocesses

DEADLINE_S = 30.0
CONFIRMATION_SUBJECT = "Su consulta ha sido registrada"


@pytest.fixture
def embedded_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSULTAS_")}
    env["CONSULTAS_VAR_DIR"] = str(tmp_path / "var")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    return env


@pytest.fixture
def served(
    embedded_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    def start(extra: dict[str, str]) -> subprocess.Popen[str]:
        env = {**embedded_env, **extra}
        upgrade = consultas("db", "upgrade", env=env)
        assert upgrade.returncode == 0, upgrade.stderr
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=tmp_path,
        )

    processes: list[subprocess.Popen[str]] = []

    def factory(extra: dict[str, str]) -> subprocess.Popen[str]:
        process = start(extra)
        processes.append(process)
        return process

    yield factory, embedded_env  # type: ignore[misc]
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def wait_for_confirmation(outbox: Path, process: subprocess.Popen[str]) -> bytes:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        for path in written_mails(outbox):
            raw = path.read_bytes()
            if CONFIRMATION_SUBJECT.encode() in raw:
                return raw
        time.sleep(0.1)  # polling a folder with a deadline (the other process writes it)
    pytest.fail("no confirmation .eml within the deadline")


def test_a_mail_dropped_in_the_maildir_gets_its_confirmation_as_an_eml_file(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    factory, env = served
    process = factory({})
    var_dir = Path(env["CONSULTAS_VAR_DIR"])
    drop_mail(var_dir, citizen_mail(), "1.eml")

    raw = wait_for_confirmation(var_dir / "outbox", process)

    confirmation = message_from_bytes(raw, policy=policy.default)
    assert "CONS-" in str(confirmation["Subject"]) and confirmation["To"] == "jose.perez@example.pe"
    output = stop(process)
    assert "45678912" not in output  # log lines never carry the DNI
    assert list((var_dir / "maildir" / ".Procesados" / "cur").iterdir())


def test_serve_sends_through_smtp_when_a_host_is_set(served, smtp_sink: SmtpSink) -> None:  # type: ignore[no-untyped-def]
    factory, env = served
    process = factory(
        {
            "CONSULTAS_SMTP_HOST": smtp_sink.host,
            "CONSULTAS_SMTP_PORT": str(smtp_sink.port),
            "CONSULTAS_SMTP_STARTTLS": "false",
        }
    )
    drop_mail(Path(env["CONSULTAS_VAR_DIR"]), citizen_mail(), "1.eml")

    received = smtp_sink.wait_for(2, timeout=DEADLINE_S)  # confirmation + routed mail to OGDAU

    [confirmation] = [m for m in received if CONFIRMATION_SUBJECT in m.subject]
    assert confirmation.rcpt_tos == ["jose.perez@example.pe"] and "CONS-" in confirmation.subject
    stop(process)


def test_serve_without_a_schema_says_to_run_db_upgrade(embedded_env: dict[str, str]) -> None:
    result = consultas("serve", env=embedded_env)
    assert result.returncode == 2
    assert "consultas db upgrade" in result.stderr

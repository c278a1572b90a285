"""Helpers for the end-to-end tests: the real `consultas` command, a Maildir drop, a clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def consultas(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def drop_mail(var_dir: Path, raw: bytes, name: str) -> None:
    maildir = var_dir / "maildir"
    (maildir / "tmp").mkdir(parents=True, exist_ok=True)
    (maildir / "new").mkdir(parents=True, exist_ok=True)
    (maildir / "tmp" / name).write_bytes(raw)
    os.replace(maildir / "tmp" / name, maildir / "new" / name)


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    return output


def written_mails(outbox: Path) -> list[Path]:
    """The mails the file transport has finished writing to ``outbox``, by name.

    Its temporary files (``.tmp-*.eml``, renamed into place once written) are left out: one may
    vanish between listing and reading.
    """
    if not outbox.exists():
        return []
    return sorted(path for path in outbox.glob("*.eml") if not path.name.startswith("."))

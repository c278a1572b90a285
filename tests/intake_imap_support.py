"""Helpers for the IMAP intake tests: citizen mails as bytes, settings for the test Dovecot, waiting."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import formataddr
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from consultas.models import Consulta, Outbox
from consultas.settings import Settings
from tests.servers.dovecot import DovecotServer
from tests.servers.smtp_sink import SmtpSink

MAILBOX = "consultas@mef.gob.pe"
#: Wednesday 12 March 2025, 10:00 in Lima: a working day in office hours.
NOW = datetime(2025, 3, 12, 15, 0, tzinfo=UTC)
#: How long a test waits for something the service does "within seconds".
WAIT_S = 20.0


def citizen_mail(
    n: int,
    *,
    sender: str | None = None,
    name: str = "José Pérez Quispe",
    dni: str | None = "45678912",
    phone: str = "987654321",
    subject: str | None = None,
    message_id: str | None = None,
    in_reply_to: str | None = None,
    extra_headers: dict[str, str] | None = None,
) -> bytes:
    """A citizen's mail to the consultas mailbox: complete unless ``dni=None`` (then a subsanación)."""
    sender = sender or f"ciudadano{n}@example.pe"
    msg = EmailMessage()
    msg["From"] = formataddr((name, sender))
    msg["To"] = MAILBOX
    msg["Subject"] = subject or f"Consulta {n} sobre el formato 12-B"
    msg["Message-ID"] = message_id or f"<consulta-{n}@example.pe>"
    msg["Date"] = "Wed, 12 Mar 2025 10:00:00 -0500"
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    for header, value in (extra_headers or {}).items():
        msg[header] = value
    lines = ["Buenos días:", "", f"Nombres y apellidos: {name}"]
    if dni is not None:
        lines.append(f"DNI: {dni}")
    lines += [
        f"Teléfono: {phone}",
        f"Correo: {sender}",
        "",
        f"¿Cómo registro el formato 12-B número {n} de una IOARR en el Banco de Inversiones de "
        "Invierte.pe? Necesito saber los plazos.",
        "",
        "Gracias.",
    ]
    msg.set_content("\n".join(lines))
    return msg.as_bytes()


def with_attachment(raw: bytes, size: int) -> bytes:
    """``raw`` with a PDF of ``size`` random bytes attached (base64 makes the mail ~4/3 of that)."""
    mail = message_from_bytes(raw, policy=policy.default)
    assert isinstance(mail, EmailMessage)
    mail.add_attachment(os.urandom(size), maintype="application", subtype="pdf", filename="anexo.pdf")
    return mail.as_bytes()


#: Bytes that are not a mail at all (no headers): the pipeline raises MalformedMailError.
#: (No NUL bytes or bare LFs: IMAP servers rewrite those, and tests compare the bytes kept.)
BROKEN_MAIL = b"\x89PNG\r\n\x1a\r\n\xff\xd8\xff\xe0IHDR\x10\x10\x08\x06\r\n"


def append_raw(dovecot: DovecotServer, raw: bytes, user: str = MAILBOX, folder: str = "INBOX") -> None:
    """APPEND bytes as they are (LMTP delivery would add headers and make broken bytes a mail)."""
    with dovecot.imap(user) as client:
        typ, data = client.append(f'"{folder}"', "", None, raw)
        if typ != "OK":
            raise RuntimeError(f"APPEND failed: {data!r}")


def imap_settings(dovecot: DovecotServer, db_url: str, tmp_var: Any, **overrides: Any) -> Settings:
    """Settings pointing at the test Dovecot's consultas mailbox, without TLS."""
    values: dict[str, Any] = {
        "database_url": db_url,
        "var_dir": tmp_var,
        "secret_key": "imap-test-secret",
        "imap_host": dovecot.host,
        "imap_port": dovecot.imap_port,
        "imap_user": MAILBOX,
        "imap_password": "secret",
        "imap_ssl": False,
        "imap_poll_interval_s": 0.5,
        "imap_timeout_s": 10.0,
        "mailbox_address": MAILBOX,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def wait_until(predicate: Callable[[], bool], *, timeout_s: float = WAIT_S, what: str = "condition") -> None:
    """Poll ``predicate`` until true; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def count_consultas(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Consulta)) or 0)


def confirmations_per_consulta(sessions: sessionmaker[Session]) -> dict[str, int]:
    """Consulta number -> how many confirmation (consulta_recibida) outbox rows it has."""
    with sessions() as session:
        rows = session.execute(
            select(Consulta.number, func.count(Outbox.id))
            .join(Outbox, Outbox.consulta_id == Consulta.id)
            .where(Outbox.template == "consulta_recibida")
            .group_by(Consulta.number)
        ).all()
        return {str(number): int(count) for number, count in rows}


# `consultas serve` as a black box --------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def serve_env(
    db_url: str, dovecot: DovecotServer, smtp_sink: SmtpSink, var_dir: Path, **extra: str
) -> dict[str, str]:
    """CONSULTAS_* settings (nothing else) for `consultas serve` on the test Dovecot and SMTP sink."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO),
        "CONSULTAS_DATABASE_URL": db_url,
        "CONSULTAS_VAR_DIR": str(var_dir),
        "CONSULTAS_SECRET_KEY": "e2e-secret",
        "CONSULTAS_IMAP_HOST": dovecot.host,
        "CONSULTAS_IMAP_PORT": str(dovecot.imap_port),
        "CONSULTAS_IMAP_USER": MAILBOX,
        "CONSULTAS_IMAP_PASSWORD": "secret",
        "CONSULTAS_IMAP_SSL": "false",
        "CONSULTAS_IMAP_POLL_INTERVAL_S": "0.5",
        "CONSULTAS_SMTP_HOST": smtp_sink.host,
        "CONSULTAS_SMTP_PORT": str(smtp_sink.port),
        "CONSULTAS_SMTP_STARTTLS": "false",
        "CONSULTAS_MAILBOX_ADDRESS": MAILBOX,
        **extra,
    }


@contextmanager
def serving(env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`consultas db upgrade`, then `consultas serve` for the block; it must stop cleanly on SIGTERM."""
    command = [sys.executable, "-m", "app.cli"]
    upgrade = [*command, "db", "upgrade"]
    subprocess.run(upgrade, env=env, cwd=cwd, check=True, capture_output=True, timeout=120)
    log_path = cwd / "serve.log"
    log = log_path.open("wb")
    process = subprocess.Popen([*command, "serve"], env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            returncode = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
            log.close()
        assert returncode == 0, log_path.read_text(errors="replace")[-3000:]


@contextmanager
def collector_off() -> Iterator[None]:
    """The automatic garbage collector off, so only the collections the code asks for run."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def garbage_holding_large_buffers(min_bytes: int = 100_000) -> int:
    """Unreachable objects (cycles not collected yet) that hold a buffer of ``min_bytes`` or more."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return sum(
            any(isinstance(ref, (bytes, str)) and len(ref) >= min_bytes for ref in gc.get_referents(obj))
            for obj in gc.garbage
        )
    finally:
        gc.set_debug(0)
        gc.garbage.clear()

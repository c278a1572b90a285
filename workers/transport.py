"""Mail transports: SMTP (aiosmtplib) in production, .eml files in ``var/outbox`` when embedded.

A transport takes a finished mail (raw bytes with its deterministic Message-ID) and an envelope,
and either delivers it, returns which recipients were refused while others accepted it, or raises
``TransientError`` (retry later: connection refused, timeout, 4xx) or ``PermanentError`` (5xx:
retrying cannot help). aiosmtplib exceptions are translated here, once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Protocol

import aiosmtplib

from consultas.errors import PermanentError, TransientError
from consultas.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SendResult:
    """A delivered mail; ``refused`` maps recipients the server refused permanently to its reply."""

    refused: dict[str, str] = field(default_factory=dict)


class RecipientsRefusedError(PermanentError):
    """Raised when the server permanently refused every recipient of a mail."""

    def __init__(self, refused: dict[str, str]) -> None:
        super().__init__("recipients refused: " + "; ".join(f"{a}: {r}" for a, r in refused.items()))
        self.refused = refused


@dataclass(frozen=True)
class Delivery:
    """One finished mail and its envelope, for ``MailTransport.send_many``."""

    raw: bytes
    sender: str
    recipients: Sequence[str]


#: ``on_result(index, result)`` of ``MailTransport.send_many``.
ResultHook = Callable[[int, "SendResult | Exception"], None]


class MailTransport(Protocol):
    """Anything that can deliver a raw mail; implementations are safe to share between threads."""

    def send(self, raw: bytes, *, sender: str, recipients: Sequence[str]) -> SendResult: ...

    def send_many(
        self, deliveries: Sequence[Delivery], *, on_result: ResultHook | None = None
    ) -> list[SendResult | Exception]:
        """Send each mail in order; each gets its result or the exception its send raised.

        One mail refused or failing does not stop the next. ``on_result(index, result)`` is called
        after each mail and before the next one is handed to the server, so that the caller can
        record a mail as sent before anything else can go wrong; an exception it raises stops the
        sending there and propagates. Over SMTP the mails share one connection and one run of the
        thread's event loop.
        """
        ...

    def close(self) -> None: ...


def build_transport(settings: Settings) -> MailTransport:
    """SMTP when ``CONSULTAS_SMTP_HOST`` is set, else .eml files under ``var_dir/outbox``."""
    if settings.smtp_host:
        return SmtpTransport.from_settings(settings)
    return FileTransport(settings.outbox_dir)


# Files (embedded default) --------------------------------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]+")


def eml_name(raw: bytes) -> str:
    """The file name of a mail: its Message-ID without brackets, unsafe characters replaced."""
    message_id = BytesHeaderParser().parsebytes(raw).get("Message-ID", "")
    cleaned = _UNSAFE.sub("_", str(message_id).strip().strip("<>")).strip("._")
    if not cleaned:
        raise PermanentError("the mail has no Message-ID; cannot name its .eml file")
    return f"{cleaned[:200]}.eml"


class FileTransport:
    """Write each mail once as ``<dir>/<Message-ID>.eml`` (temp file + rename, so never half-written)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, raw: bytes, *, sender: str, recipients: Sequence[str]) -> SendResult:
        """Write the mail; a second send of the same Message-ID leaves the first file as it is."""
        target = self.directory / eml_name(raw)
        if target.exists():
            return SendResult()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle, temp_name = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".eml")
            with os.fdopen(handle, "wb") as temp_file:
                temp_file.write(raw)
                temp_file.flush()
                os.fsync(temp_file.fileno())
            os.replace(temp_name, target)
        except OSError as exc:  # disk full, permissions: may pass, so retry later
            raise TransientError(f"cannot write {target}: {exc}") from exc
        return SendResult()

    def send_many(
        self, deliveries: Sequence[Delivery], *, on_result: ResultHook | None = None
    ) -> list[SendResult | Exception]:
        """``send`` for each mail (see ``MailTransport.send_many``)."""
        results: list[SendResult | Exception] = []
        for index, delivery in enumerate(deliveries):
            result: SendResult | Exception
            try:
                result = self.send(delivery.raw, sender=delivery.sender, recipients=delivery.recipients)
            except Exception as exc:  # per-mail boundary: the caller records it on the mail's row
                result = exc
            results.append(result)
            if on_result is not None:
                on_result(index, result)
        return results

    def close(self) -> None:
        """Nothing to release."""


# SMTP ---------------------------------------------------------------------------------------------


class SmtpTransport:
    """Deliver over SMTP, keeping one open connection (and event loop) per worker thread.

    Reusing the connection across sends is what makes hundreds of mails a second possible; a
    connection the server closed is reopened once, transparently.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str = "",
        password: str = "",
        starttls: bool = True,
        ssl: bool = False,
        timeout_s: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.starttls = starttls
        self.ssl = ssl
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._lock = threading.Lock()
        self._threads: list[_ThreadConnection] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpTransport:
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_user,
            password=settings.smtp_password.get_secret_value(),
            starttls=settings.smtp_starttls and not settings.smtp_ssl,
            ssl=settings.smtp_ssl,
            timeout_s=settings.smtp_timeout_s,
        )

    def send(self, raw: bytes, *, sender: str, recipients: Sequence[str]) -> SendResult:
        """Send ``raw`` to ``recipients``; raise TransientError or PermanentError (see module doc)."""
        connection = self._connection()
        return connection.runner.run(connection.send(raw, sender, list(recipients)))

    def send_many(
        self, deliveries: Sequence[Delivery], *, on_result: ResultHook | None = None
    ) -> list[SendResult | Exception]:
        """Send each mail in order over this thread's connection (see ``MailTransport.send_many``)."""
        connection = self._connection()
        return connection.runner.run(connection.send_each(deliveries, on_result))

    def close(self) -> None:
        """Close the connections of every thread (call when the process stops)."""
        with self._lock:
            threads, self._threads = self._threads, []
        for connection in threads:
            connection.close()

    def _connection(self) -> _ThreadConnection:
        connection: _ThreadConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = _ThreadConnection(self)
            self._local.connection = connection
            with self._lock:
                self._threads.append(connection)
        return connection


class _ThreadConnection:
    """One thread's event loop and SMTP client (aiosmtplib objects belong to one loop)."""

    def __init__(self, transport: SmtpTransport) -> None:
        self.transport = transport
        self.runner = asyncio.Runner()
        self.client: aiosmtplib.SMTP | None = None

    async def send_each(
        self, deliveries: Sequence[Delivery], on_result: ResultHook | None
    ) -> list[SendResult | Exception]:
        results: list[SendResult | Exception] = []
        for index, delivery in enumerate(deliveries):
            result: SendResult | Exception
            try:
                result = await self.send(delivery.raw, delivery.sender, list(delivery.recipients))
            except Exception as exc:  # per-mail boundary, as in FileTransport.send_many
                result = exc
            results.append(result)
            if on_result is not None:
                # Synchronous on purpose: the next mail waits until this one is recorded. The loop
                # is this thread's own, so blocking it stalls nothing else.
                on_result(index, result)
        return results

    async def send(self, raw: bytes, sender: str, recipients: list[str]) -> SendResult:
        if not recipients:
            raise PermanentError("the mail has no recipients")
        try:
            try:
                client = await self._connected()
                errors, _reply = await client.sendmail(sender, recipients, raw)
            except aiosmtplib.SMTPServerDisconnected:
                # The server closed an idle connection between two sends: reconnect once.
                await self._drop()
                client = await self._connected()
                errors, _reply = await client.sendmail(sender, recipients, raw)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            await self._reset_after_error()
            raise _refused_error({r.recipient: f"{r.code} {r.message}" for r in exc.recipients}) from exc
        except aiosmtplib.SMTPResponseException as exc:
            await self._reset_after_error()
            kind = PermanentError if exc.code >= 500 and not _is_auth(exc) else TransientError
            raise kind(f"SMTP {type(exc).__name__}: {exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            await self._drop()
            raise TransientError(f"SMTP {self.transport.host}:{self.transport.port}: {exc}") from exc
        refused = {address: f"{r.code} {r.message}" for address, r in errors.items()}
        return SendResult(refused={a: reply for a, reply in refused.items() if reply[:1] == "5"})

    async def _connected(self) -> aiosmtplib.SMTP:
        if self.client is not None and self.client.is_connected:
            return self.client
        t = self.transport
        client = aiosmtplib.SMTP(
            hostname=t.host,
            port=t.port,
            username=t.username or None,
            password=t.password or None,
            use_tls=t.ssl,
            start_tls=t.starttls,
            timeout=t.timeout_s,
        )
        await client.connect()
        self.client = client
        return client

    async def _reset_after_error(self) -> None:
        """After a refusal the connection is fine: RSET so the next mail starts clean."""
        if self.client is None or not self.client.is_connected:
            return
        try:
            await self.client.rset()
        except (aiosmtplib.SMTPException, OSError):
            await self._drop()

    async def _drop(self) -> None:
        client, self.client = self.client, None
        if client is not None and client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()

    def close(self) -> None:
        drop = self._drop()
        try:
            self.runner.run(drop)
        except RuntimeError:  # the owning thread is using the loop right now; let it be collected
            drop.close()  # never started: close it so it is not reported as never awaited
            return
        self.runner.close()


def _is_auth(exc: aiosmtplib.SMTPResponseException) -> bool:
    # A wrong SMTP password is our configuration, not the mail's fault: keep the rows retrying.
    return isinstance(exc, aiosmtplib.SMTPAuthenticationError)


def _refused_error(refused: dict[str, str]) -> TransientError | RecipientsRefusedError:
    """All recipients refused: permanent if any refusal is 5xx, else (all 4xx) retry later."""
    permanent = {a: reply for a, reply in refused.items() if reply[:1] == "5"}
    if permanent:
        return RecipientsRefusedError(permanent)
    return TransientError("recipients temporarily refused: " + "; ".join(refused.values()))

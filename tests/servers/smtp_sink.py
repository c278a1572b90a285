"""An SMTP sink for edge tests: aiosmtpd on 127.0.0.1 that captures every mail it accepts.

It can require AUTH without TLS (like a relay on a private network), refuse chosen recipients
(permanent or transient codes), answer DATA slowly, call a hook before accepting each mail, and be
stopped and started again on the same port (outage tests: while stopped, connections are refused).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.servers._net import free_port, wait_for_port

#: Default deadline for wait_for().
WAIT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Captured:
    """One mail the sink accepted: the SMTP envelope, the raw bytes and the parsed message."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage
    auth_login: str | None = None

    @property
    def subject(self) -> str:
        """The decoded Subject header ('' when missing)."""
        return str(self.message.get("Subject", ""))


@dataclass
class _Rules:
    rejected_rcpts: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None
    data_delay_s: float = 0.0
    before_accept: Callable[[Captured], None] | None = None


class _Handler:
    """aiosmtpd handler: applies the rejection rules and hands accepted mail to the sink."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_MAIL(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        # AUTH is enforced here rather than with auth_required=True, which makes aiosmtpd warn
        # about AUTH without TLS on every connection (an error under filterwarnings=error).
        if self._sink.auth is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        refusal = self._sink._refusal_for(address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        refusal = self._sink._data_refusal()
        if refusal is not None:
            return refusal
        rules = self._sink._current_rules()
        if rules.data_delay_s:
            await asyncio.sleep(rules.data_delay_s)
        raw = envelope.original_content or b""
        if isinstance(envelope.content, bytes) and not raw:
            raw = envelope.content
        login = session.auth_data.login if isinstance(session.auth_data, LoginPassword) else None
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        captured = Captured(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            raw=raw,
            message=message,
            auth_login=login.decode() if isinstance(login, bytes) else None,
        )
        if rules.before_accept is not None:
            rules.before_accept(captured)
        self._sink._capture(captured)
        return "250 Message accepted for delivery"


class SmtpSink:
    """A capturing SMTP server on 127.0.0.1 with a fixed free port across stop()/start()."""

    def __init__(self, *, auth: tuple[str, str] | None = None, port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port(self.host)
        self.auth = auth
        self._condition = threading.Condition()
        self._captured: list[Captured] = []
        self._rules = _Rules()
        self._controller: Controller | None = None

    # Lifecycle ------------------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        """Tell whether the sink is accepting connections."""
        return self._controller is not None

    def start(self) -> None:
        """Start listening on ``self.port`` (the same port every time)."""
        if self._controller is not None:
            return
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": True}
        if self.auth is not None:
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        controller = Controller(_Handler(self), hostname=self.host, port=self.port, **kwargs)
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        """Stop listening; until start(), connections to the port are refused."""
        if self._controller is None:
            return
        self._controller.stop()
        self._controller = None
        wait_for_port(self.host, self.port, open_=False)

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # Test-side API ------------------------------------------------------------------------------

    @property
    def messages(self) -> list[Captured]:
        """Every mail captured so far, in arrival order."""
        with self._condition:
            return list(self._captured)

    def wait_for(self, count: int = 1, timeout: float = WAIT_TIMEOUT_S) -> list[Captured]:
        """Wait until at least ``count`` mails were captured; return them all.

        Raises AssertionError (listing what did arrive) when the deadline passes first.
        """
        deadline = time.monotonic() + timeout
        with self._condition:
            while len(self._captured) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    subjects = [c.subject for c in self._captured]
                    raise AssertionError(f"expected {count} mail(s) within {timeout} s, got {subjects}")
                self._condition.wait(remaining)
            return list(self._captured)

    def clear(self) -> None:
        """Forget the captured mails."""
        with self._condition:
            self._captured.clear()

    def reject_rcpt(self, address: str, code: int = 550, message: str | None = None) -> None:
        """Refuse ``address`` at RCPT TO with ``code`` (5xx permanent, 4xx transient)."""
        text = message or ("5.1.1 User unknown" if code >= 500 else "4.2.1 Mailbox busy, try later")
        with self._condition:
            self._rules.rejected_rcpts[address.lower()] = f"{code} {text}"

    def reject_data(self, code: int = 451, message: str | None = None) -> None:
        """Refuse every mail at DATA with ``code`` until reset()."""
        text = message or ("4.3.0 Temporary failure" if code < 500 else "5.7.1 Message refused")
        with self._condition:
            self._rules.data_reply = f"{code} {text}"

    def slow_down(self, data_delay_s: float) -> None:
        """Answer every DATA only after ``data_delay_s`` seconds (a slow or distant server) until reset()."""
        with self._condition:
            self._rules.data_delay_s = data_delay_s

    def before_accept(self, hook: Callable[[Captured], None]) -> None:
        """Call ``hook(mail)`` in the server's thread before each mail is accepted, until reset()."""
        with self._condition:
            self._rules.before_accept = hook

    def reset(self) -> None:
        """Forget captured mails and every rejection rule."""
        with self._condition:
            self._captured.clear()
            self._rules = _Rules()

    # Internals (called from the server thread) ----------------------------------------------------

    def _refusal_for(self, address: str) -> str | None:
        with self._condition:
            return self._rules.rejected_rcpts.get(address.lower())

    def _current_rules(self) -> _Rules:
        with self._condition:
            return self._rules

    def _data_refusal(self) -> str | None:
        with self._condition:
            return self._rules.data_reply

    def _capture(self, captured: Captured) -> None:
        with self._condition:
            self._captured.append(captured)
            self._condition.notify_all()

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if self.auth is None or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = self.auth
        ok = auth_data.login == user.encode() and auth_data.password == password.encode()
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

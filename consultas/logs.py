"""Log output: ``CONSULTAS_LOG_FORMAT=text`` (one line per record) or ``json`` (one object per line).

Both go through ``RedactingFilter``: the code logs consulta numbers and Message-IDs, never a
citizen's name, document, phone or address; the filter is the net under that rule for text
that comes from elsewhere (a server's error reply quoting a recipient, an exception message).
It replaces e-mail addresses (outside ``<Message-ID>`` brackets), 8-digit document numbers and
Peruvian mobile numbers. JSON records carry ``consulta`` and ``message_id`` when the message
names them (or a caller passes them with ``extra=``).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import TextIO

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Libraries whose DEBUG output is the wire itself; never below INFO.
QUIET_LIBRARIES = ("aioimaplib", "aiosmtplib", "mail.log")

#: ``<...>`` tokens: Message-IDs are logged on purpose (STYLE 4) and kept as they are.
_BRACKETED_RE = re.compile(r"<[^<>\s]{1,300}>")
_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
#: A DNI (8 digits) or carné de extranjería (9 digits) standing alone.
_DOCUMENT_RE = re.compile(r"(?<![\w.\-])\d{8,9}(?![\w\-]|\.\d)")
#: Mobiles: 9 digits starting with 9, optionally +51 and separators.
_PHONE_RE = re.compile(r"(?<![\w])(?:\+?51[\s\-]?)?9\d{2}[\s\-]?\d{3}[\s\-]?\d{3}(?![\w])")
_NUMBER_RE = re.compile(r"\b[A-Z]{2,10}-\d{4}-\d{6}\b")


def redact(text: str) -> str:
    """``text`` without e-mail addresses (Message-IDs kept), documents or mobile numbers."""
    kept: list[str] = []

    def keep(match: re.Match[str]) -> str:
        kept.append(match.group(0))
        return f"\x00{len(kept) - 1}\x00"

    text = _BRACKETED_RE.sub(keep, text)
    text = _EMAIL_RE.sub("[correo]", text)
    text = _PHONE_RE.sub("[telefono]", text)
    text = _DOCUMENT_RE.sub("[documento]", text)
    return re.sub(r"\x00(\d+)\x00", lambda m: kept[int(m.group(1))], text)


class RedactingFilter(logging.Filter):
    """Redact each record's message (arguments merged) and note its consulta number and Message-ID."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not hasattr(record, "consulta"):
            found = _NUMBER_RE.search(message)
            record.consulta = found.group(0) if found else None
        if not hasattr(record, "message_id"):
            found = _BRACKETED_RE.search(message)
            record.message_id = found.group(0) if found and "@" in found.group(0) else None
        record.msg = redact(message)
        record.args = None
        return True


class TextFormatter(logging.Formatter):
    """The text format, its tracebacks redacted too."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatException(self, ei: logging._SysExcInfoType) -> str:  # noqa: N802 (logging's name)
        return redact(super().formatException(ei))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, consulta, message_id (and exc)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "consulta": getattr(record, "consulta", None),
            "message_id": getattr(record, "message_id", None),
        }
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, log_format: str, stream: TextIO | None = None) -> logging.Handler | None:
    """Send every record to ``stream`` in ``log_format`` at ``level``; returns the handler.

    Without ``stream``, like ``logging.basicConfig``: stderr, and nothing changes when the process
    already has a handler (a test runner's, an embedding application's), not even the level. With
    ``stream``, it replaces them.
    """
    root = logging.getLogger()
    handler: logging.Handler | None = None
    if stream is not None or not root.handlers:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
        handler.addFilter(RedactingFilter())
        for previous in list(root.handlers):
            root.removeHandler(previous)
        root.addHandler(handler)
        root.setLevel(level)
        # At DEBUG the IMAP and SMTP clients log whole protocol exchanges: mails, passwords.
        for name in QUIET_LIBRARIES:
            logging.getLogger(name).setLevel(max(logging.INFO, root.level))
    return handler

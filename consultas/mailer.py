"""Render the mails in ``templates_mail/`` and build them as MIME messages.

One name, three files: ``<name>.subject.txt``, ``<name>.txt``, ``<name>.html``. Text and subject
use a non-escaping environment; HTML autoescapes. Both are StrictUndefined, so a missing context
key is an error at render time, not a blank in a citizen's mail.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import quopri
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from email.charset import BASE64, Charset
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message
from email.policy import SMTP, Compat32
from email.utils import encode_rfc2231, format_datetime, formataddr
from io import BytesIO
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates_mail"
LIMA = ZoneInfo("America/Lima")

MONTHS_ES = (
    "enero", "febrero", "marzo", "abril", "mayo", "junio",
    "julio", "agosto", "septiembre", "octubre", "noviembre", "diciembre",
)  # fmt: skip
WEEKDAYS_ES = ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo")


def fecha(value: date | datetime | str | None, with_time: bool = False) -> str:
    """Spanish long date in Lima ("jueves 28 de noviembre de 2024"), independent of OS locale."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
    if isinstance(value, datetime):
        moment = value.astimezone(LIMA) if value.tzinfo else value
        text = _long_date(moment.date())
        return f"{text}, {moment:%H:%M}" if with_time else text
    return _long_date(value)


def _long_date(day: date) -> str:
    return f"{WEEKDAYS_ES[day.weekday()]} {day.day} de {MONTHS_ES[day.month - 1]} de {day.year}"


def _environment(autoescape: bool) -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        undefined=StrictUndefined,
        autoescape=autoescape,
        trim_blocks=not autoescape,
        lstrip_blocks=not autoescape,
        keep_trailing_newline=True,
        auto_reload=False,  # templates ship with the code: no stat() per render to see if they changed
    )
    env.filters["fecha"] = fecha
    return env


_TEXT_ENV = _environment(autoescape=False)
_HTML_ENV = _environment(autoescape=True)


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    text: str
    html: str | None


def render(template: str, context: Mapping[str, Any]) -> RenderedMail:
    """Render ``template``'s subject, text and (if present) HTML parts with ``context``."""
    subject = _TEXT_ENV.get_template(f"{template}.subject.txt").render(context)
    text = _TEXT_ENV.get_template(f"{template}.txt").render(context)
    html = _HTML_ENV.get_template(f"{template}.html").render(context) if _has_html(template) else None
    return RenderedMail(subject=" ".join(subject.split()), text=text, html=html)


@functools.cache
def _has_html(template: str) -> bool:
    return (TEMPLATES_DIR / f"{template}.html").exists()


@dataclass(frozen=True)
class OutgoingAttachment:
    filename: str
    content_type: str
    content: bytes


@dataclass(frozen=True)
class Envelope:
    """Who a mail goes to and how it threads."""

    to: Sequence[str]
    cc: Sequence[str] = ()
    reply_to: str | None = None
    in_reply_to: str | None = None
    references: Sequence[str] = ()
    attachments: Sequence[OutgoingAttachment] = field(default_factory=tuple)


def deterministic_message_id(idempotency_key: str, domain: str) -> str:
    """The same key always gives the same Message-ID, so a rare double send is recognisable."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"<consultas.{digest}@{domain}>"


def build_message(
    rendered: RenderedMail,
    envelope: Envelope,
    *,
    sender: str,
    sender_name: str,
    message_id: str,
    now: datetime,
) -> Message:
    """A complete MIME mail marked as automatic (RFC 3834) and threaded.

    Built with the legacy (compat32) email API, several times faster than ``EmailMessage`` with
    ``set_content``, which parsed every header into an object to fold it again: header values
    are stored as they are when ASCII and encoded here once otherwise (RFC 2047), and the bodies
    are encoded with the C codecs. The recipient parses back the same mail; the bytes have CRLF
    line ends, lines within 998 octets, and are 7-bit (quoted-printable or base64 bodies).
    """
    message = Message(policy=_POLICY)
    message["From"] = _from_header(sender_name, sender)
    message["To"] = _structured("To", ", ".join(envelope.to))
    if envelope.cc:
        message["Cc"] = _structured("Cc", ", ".join(envelope.cc))
    if envelope.reply_to:
        message["Reply-To"] = _structured("Reply-To", envelope.reply_to)
    message["Subject"] = _unstructured("Subject", rendered.subject)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = _structured("Message-ID", message_id)
    if envelope.in_reply_to:
        message["In-Reply-To"] = _structured("In-Reply-To", envelope.in_reply_to)
    if envelope.references:
        message["References"] = _structured("References", " ".join(envelope.references))
    # RFC 3834: our mail is automatic; Exchange-specific header keeps out-of-office replies away.
    message["Auto-Submitted"] = "auto-replied"
    message["X-Auto-Response-Suppress"] = "All"
    message["MIME-Version"] = "1.0"
    if not envelope.attachments:
        return _set_body(message, rendered)
    _set_multipart(message, "mixed")
    message.attach(_set_body(Message(policy=_POLICY), rendered))
    for attachment in envelope.attachments:
        message.attach(_attachment_part(attachment))
    return message


#: SMTP's limit on a line (RFC 5321 4.5.3.1.6), without its CRLF; the line length to fold at.
_MAX_LINE = 998
_FOLD_AT = 78


class _SMTPCompat32(Compat32):
    """compat32 (header values stored as given) with CRLF line ends and no ``>From`` mangling.

    When the mail is written compat32 refolds every header value through ``email.header.Header``.
    An ASCII value whose lines already fit ``max_line_length``, or a single word that cannot be
    folded (a long Message-ID), is written as it is instead; others go through ``Header``.
    """

    def _as_is(self, name: str, value: str) -> str | None:
        if not isinstance(value, str) or not value.isascii():
            return None
        first, *rest = value.splitlines() or [""]
        limit = self.max_line_length or _MAX_LINE
        fits = len(name) + 2 + len(first) <= limit and all(len(line) <= limit for line in rest)
        one_word = not rest and len(name) + 2 + len(first) <= _MAX_LINE and len(first.split()) == 1
        if not (fits or one_word):
            return None
        # A value folded before its first word (as policy.SMTP does) starts with an empty line.
        return self.linesep.join([f"{name}: {first}" if first else f"{name}:", *rest, ""])

    def fold(self, name: str, value: str) -> str:
        folded = self._as_is(name, value)
        return super().fold(name, value) if folded is None else folded

    def fold_binary(self, name: str, value: str) -> bytes:
        folded = self._as_is(name, value)
        return super().fold_binary(name, value) if folded is None else folded.encode("ascii")


_POLICY = _SMTPCompat32(linesep="\r\n", mangle_from_=False, max_line_length=_FOLD_AT)
#: UTF-8 for headers, as base64 encoded words: ``Header`` splits those several times faster than
#: quoted-printable ones.
_UTF8_HEADER = Charset("utf-8")
_UTF8_HEADER.header_encoding = BASE64
#: The longest word of a header value stored as it is; ``Header`` only folds between words.
_LONGEST_WORD = 900
_ASCII = bytes(range(128))
#: An RFC 2231 ``filename*=`` value longer than this is left to ``policy.SMTP``, which splits it
#: in numbered sections; shorter ones stay on one line.
_LONG_PARAMETER = 400


def _checked(value: str) -> str:
    """``value``, refused if it would break the header onto a new line (as ``policy.SMTP`` does)."""
    if len(value.splitlines()) > 1:
        raise ValueError(f"header value contains a line break: {value!r}")
    return value


def _foldable_ascii(value: str) -> bool:
    return value.isascii() and all(len(word) <= _LONGEST_WORD for word in value.split())


def _unstructured(name: str, text: str) -> str:
    """Free text for header ``name``: as it is when ASCII, else folded RFC 2047 encoded words."""
    if _foldable_ascii(_checked(text)):
        return text
    return Header(text, _UTF8_HEADER, header_name=name).encode()


def _structured(name: str, value: str) -> str:
    """Addresses or Message-IDs: as they are when ASCII (always, in practice).

    Anything else (a non-ASCII address) is encoded and folded by ``policy.SMTP`` as before.
    """
    if _foldable_ascii(_checked(value)):
        return value
    return _folded(name, value)


@functools.lru_cache(maxsize=16)
def _from_header(name: str, address: str) -> str:
    """``Name <address>`` encoded and folded by ``policy.SMTP``; computed once per identity.

    Not ``Header``: Python's parser (3.11) reads the space between two encoded words of a display
    name as part of the name, so a long non-ASCII name would come back with a stray space.
    """
    return _folded("From", formataddr((_checked(name), _checked(address))))


def _folded(name: str, value: str) -> str:
    """The value of header ``name`` as ``policy.SMTP`` encodes and folds it, folds kept."""
    folded: str = SMTP.header_factory(name, value).fold(policy=SMTP)
    return folded[len(name) + 1 :].removeprefix(" ").removesuffix(SMTP.linesep)


def _set_multipart(part: Message, subtype: str) -> Message:
    # Our own random boundary: the generator's would cost a regex compiled and run over the text
    # to check it. "=_" never occurs in quoted-printable or base64, and a 7bit part cannot contain
    # 96 random bits drawn after it was written.
    part.add_header("Content-Type", f"multipart/{subtype}", boundary=f"=_{secrets.token_hex(12)}")
    return part


def _set_body(part: Message, rendered: RenderedMail) -> Message:
    """Make ``part`` the text, or a multipart/alternative of the text and the HTML."""
    if rendered.html is None:
        return _set_text(part, rendered.text, "plain")
    _set_multipart(part, "alternative")
    part.attach(_set_text(Message(policy=_POLICY), rendered.text, "plain"))
    part.attach(_set_text(Message(policy=_POLICY), rendered.html, "html"))
    return part


def _set_text(part: Message, text: str, subtype: str) -> Message:
    """Make ``part`` a UTF-8 text part whose content reads back as ``text``.

    As ``set_content`` does: line ends normalised and a final one added; 7bit when ASCII with
    lines within 78 characters, else quoted-printable when under one byte in six needs escaping
    (Spanish text) and base64 otherwise, the smaller then (base64 text is encoded with CRLF line
    ends, its canonical form). Unlike ``set_content``, which sent non-ASCII text with short lines
    as 8bit, the result is always 7-bit.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    data = text.encode()
    part.add_header("Content-Type", f"text/{subtype}", charset="utf-8")
    if data.isascii() and max(map(len, text.split("\n"))) <= _FOLD_AT:
        part["Content-Transfer-Encoding"] = "7bit"
        part.set_payload(text)
    elif 6 * len(data.translate(None, _ASCII)) <= len(data):  # non-ASCII bytes, each escaped
        part["Content-Transfer-Encoding"] = "quoted-printable"
        part.set_payload(quopri.encodestring(data).decode("ascii"))
    else:
        part["Content-Transfer-Encoding"] = "base64"
        part.set_payload(base64.encodebytes(data.replace(b"\n", b"\r\n")).decode("ascii"))
    return part


def _attachment_part(attachment: OutgoingAttachment) -> Message:
    """A base64 part named ``attachment.filename`` (RFC 2231 encoded unless printable ASCII)."""
    maintype, _, subtype = attachment.content_type.partition("/")
    part = Message(policy=_POLICY)
    part.add_header("Content-Type", f"{maintype or 'application'}/{subtype or 'octet-stream'}")
    filename = attachment.filename
    if filename.isascii() and filename.isprintable():
        part.add_header("Content-Disposition", "attachment", filename=filename)
    elif len(encoded := encode_rfc2231(filename, "utf-8")) <= _LONG_PARAMETER:
        part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", filename))
    else:
        part["Content-Disposition"] = _folded("Content-Disposition", f"attachment; filename*={encoded}")
    part["Content-Transfer-Encoding"] = "base64"
    part.set_payload(base64.encodebytes(attachment.content).decode("ascii"))
    return part


#: Any line end (``email.generator`` splits text on the same ones).
_LINE_END = re.compile(r"\r\n|\r|\n")


class _WholeTextGenerator(BytesGenerator):
    """``BytesGenerator`` writing each text block at once instead of line by line.

    The standard ``_write_lines`` splits a body into lines and writes each with its line end (two
    calls per line); one substitution of the line ends gives the same bytes in one call.
    """

    def _write_lines(self, lines: str) -> None:
        if lines:
            assert self.policy is not None  # set by flatten() for the whole walk
            self.write(_LINE_END.sub(self.policy.linesep, lines))


def message_bytes(message: Message) -> bytes:
    """``message.as_bytes()``, the same bytes, written faster (the outbox stores every mail so)."""
    out = BytesIO()
    _WholeTextGenerator(out, mangle_from_=False, policy=message.policy).flatten(message)
    return out.getvalue()

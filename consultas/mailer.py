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
import secrets
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from email.policy import SMTP, Compat32
from email.utils import encode_rfc2231, format_datetime, formataddr, quote
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


#: Names ``getattr`` finds on a plain dict (its methods): for these Jinja's attribute comes first.
_DICT_ATTRIBUTES = frozenset(dir(dict))


class _MailEnvironment(Environment):
    """Jinja's environment, with ``foo.bar`` on a plain dict (what mail contexts are) looked up faster.

    Jinja tries ``getattr(foo, "bar")`` first and the item ``foo["bar"]`` when that raises
    ``AttributeError``: for a dict key that is one raised and caught exception per lookup, half of
    the time a confirmation mail took to render (measured: its HTML part 27 -> 13 us). On a plain
    dict ``getattr`` can only find its methods, so for any other name the item is what Jinja would
    give, and it is read first; methods, other objects and missing keys go Jinja's way.
    """

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        """A template's globals as one plain dict, not Jinja's ``ChainMap`` over the environment's.

        Every render copies them into its context: from a dict that is one C-level copy, from a
        ``ChainMap`` a walk of every map (a confirmation's three parts: 32 -> 21 us). The ChainMap
        only matters to see environment globals changed after a template is loaded, which Jinja
        advises against and this module never does (the environments are set up once, below).
        """
        return {**self.globals, **(d or {})}

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


def _environment(autoescape: bool) -> Environment:
    env = _MailEnvironment(
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


#: A rendered subject is cut to this (the message.subject column; RFC 5322's line length): a
#: citizen's subject of that length quoted after our prefix would not fit.
MAX_SUBJECT_CHARS = 998


def render(template: str, context: Mapping[str, Any]) -> RenderedMail:
    """Render ``template``'s subject, text and (if present) HTML parts with ``context``."""
    subject = _TEXT_ENV.get_template(f"{template}.subject.txt").render(context)
    text = _TEXT_ENV.get_template(f"{template}.txt").render(context)
    html = _HTML_ENV.get_template(f"{template}.html").render(context) if _has_html(template) else None
    return RenderedMail(subject=" ".join(subject.split())[:MAX_SUBJECT_CHARS], text=text, html=html)


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


def build_mail(
    rendered: RenderedMail,
    envelope: Envelope,
    *,
    sender: str,
    sender_name: str,
    message_id: str,
    now: datetime,
) -> bytes:
    """The bytes of a complete MIME mail marked as automatic (RFC 3834) and threaded.

    Written directly, part by part, as ``email.generator.BytesGenerator`` writes the same mail
    built with the legacy (compat32) API, without building that object tree and walking it: every
    header goes through the policy's ``fold_binary`` (the generator's own call), bodies are encoded
    with the C codecs, and multiparts are laid out as RFC 2046 and the generator lay them out.
    Header values are stored as they are when ASCII and encoded once otherwise (RFC 2047). The
    recipient parses back the same mail; the bytes have CRLF line ends, lines within 998 octets,
    and are 7-bit (quoted-printable or base64 bodies).
    """
    headers = [("From", _from_header(sender_name, sender)), ("To", _structured("To", ", ".join(envelope.to)))]
    if envelope.cc:
        headers.append(("Cc", _structured("Cc", ", ".join(envelope.cc))))
    if envelope.reply_to:
        headers.append(("Reply-To", _structured("Reply-To", envelope.reply_to)))
    headers += [
        ("Subject", _unstructured("Subject", rendered.subject)),
        ("Date", format_datetime(now)),
        ("Message-ID", _structured("Message-ID", message_id)),
    ]
    if envelope.in_reply_to:
        headers.append(("In-Reply-To", _structured("In-Reply-To", envelope.in_reply_to)))
    if envelope.references:
        headers.append(("References", _structured("References", " ".join(envelope.references))))
    # RFC 3834: our mail is automatic; Exchange-specific header keeps out-of-office replies away.
    headers += [
        ("Auto-Submitted", "auto-replied"),
        ("X-Auto-Response-Suppress", "All"),
        ("MIME-Version", "1.0"),
    ]
    body = _body(rendered)
    if envelope.attachments:
        body = _multipart("mixed", [_entity(*body), *map(_attachment_part, envelope.attachments)])
    body_headers, payload = body
    return _entity(headers + body_headers, payload)


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
        limit = self.max_line_length or _MAX_LINE
        if value and value.isprintable() and len(name) + 2 + len(value) <= limit:
            return f"{name}: {value}{self.linesep}"  # one short line, most headers: no splitting
        first, *rest = value.splitlines() or [""]
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
#: The longest word of a header value stored as it is; the policy only folds between words.
_LONGEST_WORD = 900
#: An RFC 2047 encoded word of UTF-8 text in base64, around the encoded bytes; and the length of a
#: folded header line it keeps within (RFC 2047 section 2: 76, continuation space included).
_WORD_START, _WORD_END = "=?utf-8?b?", "?="
_ENCODED_LINE = 76
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
    return _encoded_words(name, text)


def _encoded_words(name: str, text: str) -> str:
    """``text`` as UTF-8 base64 encoded words, one per line (lines joined by LF and a space).

    Each word takes as many whole characters as fit its line: ``name: `` and the word on the first
    line, a space and the word on the others, within ``_ENCODED_LINE`` characters (at least one
    character per word). A reader joins adjacent encoded words without the space between them
    (RFC 2047 section 6.2).
    """
    chrome = len(_WORD_START) + len(_WORD_END)
    room = _ENCODED_LINE - len(name) - 2 - chrome  # base64 characters the first word may have
    data = text.encode()
    words: list[bytes] = []
    start = 0
    while start < len(data) or not words:
        # base64 of n bytes is 4 * ceil(n / 3) characters: the most bytes a word of ``room`` holds.
        fits = max(room, 0) // 4 * 3
        # The longest run of whole characters within ``fits`` bytes ("ignore" drops a cut one).
        word = data[start : start + fits].decode("utf-8", "ignore").encode()
        if not word and start < len(data):  # a character longer than the room: it goes alone
            word = data[start : start + 4].decode("utf-8", "ignore")[0].encode()
        words.append(word)
        start += len(word)
        room = _ENCODED_LINE - 1 - chrome
    return "\n ".join(f"{_WORD_START}{base64.b64encode(w).decode('ascii')}{_WORD_END}" for w in words)


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


#: A MIME entity before it is written: its headers (name, value) and its body, CRLF line ends.
_Part = tuple[list[tuple[str, str]], bytes]
_CRLF = b"\r\n"


def _entity(headers: list[tuple[str, str]], body: bytes) -> bytes:
    """Headers folded by the policy, the blank line, the body (as the generator writes a part)."""
    return b"".join([*(_POLICY.fold_binary(name, value) for name, value in headers), _CRLF, body])


def _multipart(subtype: str, parts: list[bytes]) -> _Part:
    """A multipart of written ``parts``, delimited as RFC 2046 (and the generator) do.

    Our own random boundary: "=_" never occurs in quoted-printable or base64, and a 7bit part
    cannot contain 96 random bits drawn after it was written.
    """
    boundary = f"=_{secrets.token_hex(12)}"
    delimiter = b"--" + boundary.encode("ascii")
    body = delimiter + _CRLF + (_CRLF + delimiter + _CRLF).join(parts) + _CRLF + delimiter + b"--" + _CRLF
    return [("Content-Type", f'multipart/{subtype}; boundary="{boundary}"')], body


def _body(rendered: RenderedMail) -> _Part:
    """The text, or a multipart/alternative of the text and the HTML."""
    if rendered.html is None:
        return _text_part(rendered.text, "plain")
    return _multipart("alternative", [_entity(*_text_part(rendered.text, "plain")),
                                      _entity(*_text_part(rendered.html, "html"))])  # fmt: skip


def _text_part(text: str, subtype: str) -> _Part:
    """A UTF-8 text part whose content reads back as ``text``.

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
    headers = [("Content-Type", f'text/{subtype}; charset="utf-8"')]
    if data.isascii() and max(map(len, text.split("\n"))) <= _FOLD_AT:
        encoding, body = "7bit", data
    elif 6 * len(data.translate(None, _ASCII)) <= len(data):  # non-ASCII bytes, each escaped
        encoding, body = "quoted-printable", quopri.encodestring(data)
    else:
        encoding, body = "base64", base64.encodebytes(data.replace(b"\n", b"\r\n"))
    headers.append(("Content-Transfer-Encoding", encoding))
    return headers, _crlf(body)


def _attachment_part(attachment: OutgoingAttachment) -> bytes:
    """A base64 part named ``attachment.filename`` (RFC 2231 encoded unless printable ASCII)."""
    maintype, _, subtype = attachment.content_type.partition("/")
    content_type = f"{maintype or 'application'}/{subtype or 'octet-stream'}"
    filename = attachment.filename
    if not filename:
        disposition = "attachment; filename"  # as ``add_header`` writes an empty parameter
    elif filename.isascii() and filename.isprintable():
        disposition = f'attachment; filename="{quote(filename)}"'
    elif len(encoded := encode_rfc2231(filename, "utf-8")) <= _LONG_PARAMETER:
        disposition = f"attachment; filename*={encoded}"
    else:
        disposition = _folded("Content-Disposition", f"attachment; filename*={encoded}")
    headers = [
        ("Content-Type", content_type),
        ("Content-Disposition", disposition),
        ("Content-Transfer-Encoding", "base64"),
    ]
    return _entity(headers, _crlf(base64.encodebytes(attachment.content)))


def _crlf(body: bytes) -> bytes:
    """``body``, whose lines end in LF alone (normalised text, the codecs' output), with CRLF."""
    return body.replace(b"\n", _CRLF)

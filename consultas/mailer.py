"""Render the mails in ``templates_mail/`` and build them as MIME messages.

One name, three files: ``<name>.subject.txt``, ``<name>.txt``, ``<name>.html``. Text and subject
use a non-escaping environment; HTML autoescapes. Both are StrictUndefined, so a missing context
key is an error at render time, not a blank in a citizen's mail.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
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
    )
    env.filters["fecha"] = fecha
    return env


class _HeaderClasses(HeaderRegistry):
    """The standard header registry, making each header's class once instead of on every header.

    ``HeaderRegistry[name]`` builds a new class with ``type()`` at each call, a third of the cost
    of building a mail; the classes are stateless, so the same mail comes out.
    """

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made


#: ``email.policy.SMTP`` with the header classes made once.
_SMTP = SMTP.clone(header_factory=_HeaderClasses())

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
    html_path = TEMPLATES_DIR / f"{template}.html"
    html = _HTML_ENV.get_template(f"{template}.html").render(context) if html_path.exists() else None
    return RenderedMail(subject=" ".join(subject.split()), text=text, html=html)


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
) -> EmailMessage:
    """A complete MIME mail marked as automatic (RFC 3834) and threaded."""
    message = EmailMessage(policy=_SMTP)
    message["From"] = formataddr((sender_name, sender))
    message["To"] = ", ".join(envelope.to)
    if envelope.cc:
        message["Cc"] = ", ".join(envelope.cc)
    if envelope.reply_to:
        message["Reply-To"] = envelope.reply_to
    message["Subject"] = rendered.subject
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id
    if envelope.in_reply_to:
        message["In-Reply-To"] = envelope.in_reply_to
    if envelope.references:
        message["References"] = " ".join(envelope.references)
    # RFC 3834: our mail is automatic; Exchange-specific header keeps out-of-office replies away.
    message["Auto-Submitted"] = "auto-replied"
    message["X-Auto-Response-Suppress"] = "All"
    message.set_content(rendered.text)
    if rendered.html is not None:
        message.add_alternative(rendered.html, subtype="html")
    for attachment in envelope.attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        message.add_attachment(
            attachment.content,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=attachment.filename,
        )
    return message

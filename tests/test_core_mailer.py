"""build_mail: what a recipient sees after the stored bytes are parsed back, and SMTP-safe bytes."""

from __future__ import annotations

import base64
import itertools
import quopri
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from email import message_from_bytes, policy
from email.headerregistry import Address
from email.message import EmailMessage, Message, MIMEPart
from email.utils import format_datetime

import jinja2
import pytest

from consultas import mailer
from consultas.mailer import Envelope, OutgoingAttachment, RenderedMail, build_mail

NOW = datetime(2026, 3, 2, 15, 4, 5, tzinfo=UTC)
SENDER = "consultas@mef.gob.pe"
MESSAGE_ID = "<consultas.0123456789abcdef0123456789abcdef@consultas.mef.gob.pe>"
SUBJECT = "Consulta recibida – CONS-2026-000001 · señor"
TEXT = (
    "Estimado señor José Pérez Quispe:\n"
    "\n"
    "Su consulta ha sido registrada con el número CONS-2026-000001 y será atendida\n"
    "dentro del plazo de diez días hábiles (Directiva N° 004-2024-EF/45.01).\n"
    "From now on this line starts like an mbox separator.\n"
    ".\n"
    "Una línea con espacios al final   \n"
    "\tuna línea con tabulador, símbolos = ? _ & < > y comillas «»\n"
    "\n"
    "Atentamente,\n"
    "Oficina de Atención al Ciudadano – MEF\n"
)
HTML = (
    "<!DOCTYPE html>\n"
    '<html lang="es"><head><meta charset="utf-8"></head><body>\n'
    "<p>Estimado señor <strong>José Pérez Quispe</strong>:</p>\n"
    '<p style="margin: 0 0 1em 0">Su consulta <a href="https://consultas.mef.gob.pe/?n=CONS-2026-000001&amp;x=1">'
    "CONS-2026-000001</a> será atendida en diez días hábiles.</p>\n"
    "</body></html>\n"
)


def _build(
    rendered: RenderedMail,
    envelope: Envelope,
    *,
    sender_name: str = "Consultas MEF",
    now: datetime = NOW,
) -> bytes:
    return build_mail(
        rendered, envelope, sender=SENDER, sender_name=sender_name, message_id=MESSAGE_ID, now=now
    )


def _parse(raw: bytes) -> EmailMessage:
    mail = message_from_bytes(raw, policy=policy.default)
    assert isinstance(mail, EmailMessage)
    return mail


def _text(part: MIMEPart | None) -> str:
    """A text part's content as the recipient reads it (mail line ends are CRLF on the wire)."""
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def _addresses(mail: EmailMessage, name: str) -> list[tuple[str, str]]:
    header = mail[name]
    assert header is not None, name
    addresses: Sequence[Address] = header.addresses
    return [(address.display_name, address.addr_spec) for address in addresses]


def assert_smtp_safe(raw: bytes) -> None:
    """Every line ends in CRLF (no bare CR or LF) and is at most 998 octets long (RFC 5322 2.1.1)."""
    assert raw.endswith(b"\r\n")
    lines = raw.split(b"\r\n")[:-1]
    for number, line in enumerate(lines, 1):
        assert b"\n" not in line and b"\r" not in line, f"bare CR/LF in line {number}"
        assert len(line) <= 998, f"line {number} is {len(line)} octets"
    head = raw.split(b"\r\n\r\n", 1)[0]
    head.decode("ascii")  # headers are 7-bit: non-ASCII text is RFC 2047/2231 encoded


def test_a_plain_text_mail_is_a_single_utf8_text_part_with_every_header() -> None:
    raw = _build(
        RenderedMail(subject="[CONS-2026-000001] Su consulta ha sido registrada", text=TEXT, html=None),
        Envelope(to=["jose.perez@example.pe"]),
    )

    assert_smtp_safe(raw)
    mail = _parse(raw)
    assert not mail.is_multipart()
    assert mail.get_content_type() == "text/plain"
    assert mail.get_content_charset() == "utf-8"
    assert _text(mail) == TEXT
    assert mail["Subject"] == "[CONS-2026-000001] Su consulta ha sido registrada"
    assert _addresses(mail, "From") == [("Consultas MEF", SENDER)]
    assert _addresses(mail, "To") == [("", "jose.perez@example.pe")]
    assert mail["Date"].datetime == NOW
    assert mail["Message-ID"] == MESSAGE_ID
    assert mail["Auto-Submitted"] == "auto-replied"
    assert mail["X-Auto-Response-Suppress"] == "All"
    assert mail["MIME-Version"] == "1.0"
    for absent in ("Cc", "Reply-To", "In-Reply-To", "References"):
        assert absent not in mail
    assert [name for name, _ in mail.items()].count("Subject") == 1


def test_with_html_the_mail_is_multipart_alternative_text_then_html() -> None:
    raw = _build(RenderedMail(subject="Aviso", text=TEXT, html=HTML), Envelope(to=["jose@example.pe"]))

    assert_smtp_safe(raw)
    mail = _parse(raw)
    assert mail.get_content_type() == "multipart/alternative"
    parts = list(mail.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert [part.get_content_charset() for part in parts] == ["utf-8", "utf-8"]
    assert _text(mail.get_body(("plain",))) == TEXT
    assert _text(mail.get_body(("html",))) == HTML
    assert list(mail.iter_attachments()) == []


@pytest.mark.parametrize(
    "sender_name",
    [
        "Consultas MEF",
        "Consultas MEF – Atención al Ciudadano",
        'Consultas "MEF", Lima (OGDAU)',
        "Ministerio de Economía y Finanzas – Oficina General de Documentación y Atención al Usuario",
    ],
)
@pytest.mark.parametrize(
    "subject",
    [
        SUBJECT,
        "[CONS-2026-000001] Su consulta ha sido registrada",
        "Re: [CONS-2026-000123] ¿Cómo registro una inversión en el Banco de Inversiones del año 2026? "
        "— Municipalidad Distrital de San Juan de Lurigancho · señor José Pérez Quispe",
        "Emoji 😀 " * 20,
        "中文字符" * 40,
        "x" * 1200,  # one word too long to stay as it is
    ],
)
def test_non_ascii_subject_and_sender_name_come_back_decoded(subject: str, sender_name: str) -> None:
    raw = _build(
        RenderedMail(subject=subject, text=TEXT, html=HTML),
        Envelope(to=["jose@example.pe"]),
        sender_name=sender_name,
    )

    assert_smtp_safe(raw)
    mail = _parse(raw)
    assert mail["Subject"] == subject
    assert _addresses(mail, "From") == [(sender_name, SENDER)]
    assert not mail["Subject"].defects and not mail["From"].defects
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    subject_lines = head.split("\r\nSubject: ", 1)[1].split("\r\n")
    subject_lines = [
        "Subject: " + subject_lines[0],
        *itertools.takewhile(lambda line: line.startswith(" "), subject_lines[1:]),
    ]
    encoded = [line for line in subject_lines if "=?utf-8?" in line]
    assert all(len(line) <= 76 for line in encoded), encoded  # RFC 2047 section 2 ("Subject: " included)


def test_recipients_reply_to_and_threading_headers_are_kept() -> None:
    references = [f"<{index}.{'x' * 40}@mail.example.pe>" for index in range(12)]
    raw = _build(
        RenderedMail(subject=SUBJECT, text=TEXT, html=HTML),
        Envelope(
            to=["jose.perez@example.pe", "maria.quispe@example.com"],
            cc=["red.comas@municomas.gob.pe", "ogdau@mef.gob.pe"],
            reply_to="consultas+CONS-2026-000001.abcdef@mef.gob.pe",
            in_reply_to=references[-1],
            references=references,
        ),
    )

    assert_smtp_safe(raw)
    mail = _parse(raw)
    assert _addresses(mail, "To") == [("", "jose.perez@example.pe"), ("", "maria.quispe@example.com")]
    assert _addresses(mail, "Cc") == [("", "red.comas@municomas.gob.pe"), ("", "ogdau@mef.gob.pe")]
    assert _addresses(mail, "Reply-To") == [("", "consultas+CONS-2026-000001.abcdef@mef.gob.pe")]
    assert mail["In-Reply-To"] == references[-1]
    assert mail["References"].split() == references
    assert mail["Message-ID"] == MESSAGE_ID


def test_the_date_header_keeps_the_instant_and_the_offset() -> None:
    lima = datetime(2026, 3, 2, 10, 4, 5, tzinfo=timezone(timedelta(hours=-5)))
    raw = _build(RenderedMail(subject="x", text="hola\n", html=None), Envelope(to=["a@example.pe"]), now=lima)

    date = _parse(raw)["Date"].datetime
    assert date == lima and date.utcoffset() == timedelta(hours=-5)


PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"
CSV = "número;entidad\r\nCONS-2026-000001;Municipalidad Distrital de Comas\r\n".encode()
ATTACHMENTS = (
    OutgoingAttachment(filename="informe.pdf", content_type="application/pdf", content=PDF),
    OutgoingAttachment(
        filename="Anexo Nº 1 – Solicitud de información (señor José Pérez).pdf",
        content_type="application/pdf",
        content=b"%PDF-1.7 \x00\x01\xff",
    ),
    OutgoingAttachment(filename="reporte_2026-T1.csv", content_type="text/csv", content=CSV),
    OutgoingAttachment(filename="sin tipo.bin", content_type="", content=b"\x00" * 10),
    OutgoingAttachment(
        filename="北京市财政局关于预算执行情况的报告（第二季度）附件一.docx" * 2,
        content_type="application/msword",
        content=b"doc",
    ),
)


def _attachments(mail: EmailMessage) -> list[tuple[str | None, str, bytes]]:
    found = []
    for part in mail.iter_attachments():
        assert isinstance(part, EmailMessage)
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        found.append((part.get_filename(), part.get_content_type(), payload))
    return found


def test_attachments_follow_the_alternative_part_with_their_names_and_bytes() -> None:
    raw = _build(
        RenderedMail(subject=SUBJECT, text=TEXT, html=HTML),
        Envelope(to=["jose@example.pe"], attachments=ATTACHMENTS),
    )

    assert_smtp_safe(raw)
    mail = _parse(raw)
    assert mail.get_content_type() == "multipart/mixed"
    first = next(mail.iter_parts())
    assert first.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in first.iter_parts()] == ["text/plain", "text/html"]
    assert _text(mail.get_body(("plain",))) == TEXT
    assert _text(mail.get_body(("html",))) == HTML
    assert _attachments(mail) == [
        (a.filename, a.content_type or "application/octet-stream", a.content) for a in ATTACHMENTS
    ]
    assert all(part.get_content_disposition() == "attachment" for part in mail.iter_attachments())


def test_a_plain_text_mail_with_an_attachment_is_multipart_mixed_text_first() -> None:
    raw = _build(
        RenderedMail(subject=SUBJECT, text=TEXT, html=None),
        Envelope(to=["jose@example.pe"], attachments=ATTACHMENTS[1:2]),
    )

    assert_smtp_safe(raw)
    mail = _parse(raw)
    assert mail.get_content_type() == "multipart/mixed"
    assert [part.get_content_type() for part in mail.iter_parts()] == ["text/plain", "application/pdf"]
    assert _text(mail.get_body(("plain",))) == TEXT
    assert _attachments(mail) == [(ATTACHMENTS[1].filename, "application/pdf", ATTACHMENTS[1].content)]


LONG_WORDS = " ".join(["ejecución presupuestal de la Municipalidad Distrital de Comas"] * 120)
LONG_URL = "https://consultas.mef.gob.pe/seguimiento?" + "&".join(f"p{i}=valor{i}" for i in range(300))


@pytest.mark.parametrize("html", [None, f"<p>{LONG_WORDS}</p><p>{LONG_URL}</p>\n"])
def test_very_long_lines_are_wrapped_on_the_wire_and_come_back_unchanged(html: str | None) -> None:
    assert len(LONG_WORDS.encode()) > 5000 and len(LONG_URL) > 2000
    text = f"Inicio\n{LONG_WORDS}\n{LONG_URL}\n{'ñ' * 1200}\nFin\n"
    raw = _build(RenderedMail(subject=SUBJECT, text=text, html=html), Envelope(to=["jose@example.pe"]))

    assert_smtp_safe(raw)
    mail = _parse(raw)
    assert _text(mail.get_body(("plain",))) == text
    if html is not None:
        assert _text(mail.get_body(("html",))) == html


def test_an_ascii_only_body_comes_back_unchanged() -> None:
    text = "Hello,\n\nplain ASCII only = fine.\n"
    raw = _build(RenderedMail(subject="ASCII", text=text, html=None), Envelope(to=["a@example.pe"]))

    assert_smtp_safe(raw)
    assert _text(_parse(raw)) == text


@pytest.mark.parametrize(
    "envelope",
    [
        Envelope(to=["jose@example.pe\r\nBcc: otro@example.com"]),
        Envelope(to=["jose@example.pe"], in_reply_to="<a@example.pe>\nBcc: otro@example.com"),
        Envelope(to=["jose@example.pe"], references=["<a@example.pe>", "<b@example.pe>\rX-Injected: 1"]),
        Envelope(to=["jose@example.pe"], reply_to="r@example.pe\nBcc: otro@example.com"),
    ],
)
def test_a_line_break_in_a_header_value_is_refused(envelope: Envelope) -> None:
    with pytest.raises(ValueError):
        _build(RenderedMail(subject="Aviso", text=TEXT, html=None), envelope)


def test_a_line_break_in_the_subject_is_refused() -> None:
    with pytest.raises(ValueError):
        _build(
            RenderedMail(subject="Aviso\nBcc: otro@example.com", text=TEXT, html=None),
            Envelope(to=["a@b.pe"]),
        )


def test_long_ascii_header_values_are_folded_within_78_characters() -> None:
    subject = ("palabra " * 30).strip()
    references = [f"<referencia-{i}@example.pe>" for i in range(12)]
    raw = _build(
        RenderedMail(subject=subject, text=TEXT, html=None),
        Envelope(to=["jose@example.pe"], references=references),
    )

    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii").split("\r\n")
    assert max(len(line) for line in head) <= 78, [line for line in head if len(line) > 78]
    mail = _parse(raw)
    assert mail["Subject"] == subject
    assert mail["References"].split() == references


def test_a_long_outlook_message_id_is_threaded_verbatim_not_as_encoded_words() -> None:
    # Exchange/Outlook ids are often over 64 characters; mail clients match them byte for byte.
    long_id = "<PH0PR12MB5468C0FFEE1234567890ABCDEF1234567890@PH0PR12MB5468.namprd12.prod.outlook.com>"
    raw = _build(
        RenderedMail(subject="Asunto", text=TEXT, html=None),
        Envelope(to=["jose@example.pe"], in_reply_to=long_id, references=[long_id]),
    )
    assert f"In-Reply-To: {long_id}\r\n".encode() in raw
    assert f"References: {long_id}\r\n".encode() in raw
    assert b"=?utf-8?" not in raw.split(b"\r\n\r\n", 1)[0].split(b"Subject:")[0]


def _reference_text_part(part: Message, text: str, subtype: str) -> Message:
    """A text part as the email package writes it: 7bit, quoted-printable or base64 by content."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").removesuffix("\n") + "\n"
    data = text.encode()
    part.add_header("Content-Type", f"text/{subtype}", charset="utf-8")
    if data.isascii() and max(map(len, text.split("\n"))) <= 78:
        part["Content-Transfer-Encoding"] = "7bit"
        part.set_payload(text)
    elif 6 * len(data.translate(None, bytes(range(128)))) <= len(data):
        part["Content-Transfer-Encoding"] = "quoted-printable"
        part.set_payload(quopri.encodestring(data).decode("ascii"))
    else:
        part["Content-Transfer-Encoding"] = "base64"
        part.set_payload(base64.encodebytes(data.replace(b"\n", b"\r\n")).decode("ascii"))
    return part


def _as_the_email_package_writes_it(
    rendered: RenderedMail, envelope: Envelope, *, sender_name: str, boundaries: Iterator[str]
) -> bytes:
    """The same mail built with ``email.message.Message`` (compat32) and written by its generator.

    The reference ``build_mail`` is checked against: the layout of parts and boundaries, each
    part's headers and encoding. Header values come from ``build_mail``'s own encoders.
    """

    def multipart(part: Message, subtype: str) -> Message:
        part.add_header("Content-Type", f"multipart/{subtype}", boundary=next(boundaries))
        return part

    def body(part: Message) -> Message:
        if rendered.html is None:
            return _reference_text_part(part, rendered.text, "plain")
        multipart(part, "alternative")
        part.attach(_reference_text_part(Message(policy=mailer._POLICY), rendered.text, "plain"))
        part.attach(_reference_text_part(Message(policy=mailer._POLICY), rendered.html, "html"))
        return part

    mail = Message(policy=mailer._POLICY)
    mail["From"] = mailer._from_header(sender_name, SENDER)
    mail["To"] = mailer._structured("To", ", ".join(envelope.to))
    if envelope.cc:
        mail["Cc"] = mailer._structured("Cc", ", ".join(envelope.cc))
    if envelope.reply_to:
        mail["Reply-To"] = mailer._structured("Reply-To", envelope.reply_to)
    mail["Subject"] = mailer._unstructured("Subject", rendered.subject)
    mail["Date"] = format_datetime(NOW)
    mail["Message-ID"] = MESSAGE_ID
    if envelope.in_reply_to:
        mail["In-Reply-To"] = mailer._structured("In-Reply-To", envelope.in_reply_to)
    if envelope.references:
        mail["References"] = mailer._structured("References", " ".join(envelope.references))
    mail["Auto-Submitted"] = "auto-replied"
    mail["X-Auto-Response-Suppress"] = "All"
    mail["MIME-Version"] = "1.0"
    if not envelope.attachments:
        return body(mail).as_bytes()
    multipart(mail, "mixed")
    mail.attach(body(Message(policy=mailer._POLICY)))
    for attachment in envelope.attachments:
        part = Message(policy=mailer._POLICY)
        part.add_header("Content-Type", attachment.content_type)
        name = attachment.filename
        if name.isascii() and name.isprintable():
            part.add_header("Content-Disposition", "attachment", filename=name)
        else:
            part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", name))
        part["Content-Transfer-Encoding"] = "base64"
        part.set_payload(base64.encodebytes(attachment.content).decode("ascii"))
        mail.attach(part)
    return mail.as_bytes()


_BOUNDARY = re.compile(rb"=_[0-9a-f]{24}")


@pytest.mark.parametrize("html", [None, HTML, "<p>" + "y" * 300 + "</p>\n"])
@pytest.mark.parametrize(
    "text", [TEXT + "\r\nlínea con CRLF\rlínea con CR\n" + "x" * 2000, "Hola\n", "中文" * 300]
)
@pytest.mark.parametrize("subject", ["Asunto", SUBJECT, "palabra " * 30, "", "con\ttabulador"])
@pytest.mark.parametrize(
    "envelope",
    [
        Envelope(to=["jose@example.pe"]),
        Envelope(
            to=["jose@example.pe", "ana@example.pe"],
            cc=["red@mef.gob.pe"],
            reply_to="consultas+cons-2026-000001.abc@mef.gob.pe",
            in_reply_to="<orig@example.pe>",
            references=[f"<id{i}@example.pe>" for i in range(12)],
        ),
        Envelope(
            to=["jose@example.pe"],
            attachments=(
                OutgoingAttachment(
                    filename="informe.csv", content_type="text/csv", content=b"a,b\r\n1,2\r\n"
                ),
                OutgoingAttachment(
                    filename='co"mi\\lla.pdf', content_type="application/pdf", content=bytes(range(256))
                ),
                OutgoingAttachment(
                    filename="declaración jurada ñ.pdf", content_type="application/pdf", content=b"%PDF"
                ),
            ),
        ),
    ],
)
def test_the_mail_is_written_exactly_as_the_email_package_writes_it(
    html: str | None, text: str, subject: str, envelope: Envelope
) -> None:
    rendered = RenderedMail(subject=subject, text=text, html=html)
    raw = _build(rendered, envelope, sender_name="Oficina de Atención al Ciudadano – MEF")
    # Boundaries are random: the writer's, in the order they appear, are the reference's.
    drawn = iter(dict.fromkeys(match.decode() for match in _BOUNDARY.findall(raw)))
    expected = _as_the_email_package_writes_it(
        rendered, envelope, sender_name="Oficina de Atención al Ciudadano – MEF", boundaries=drawn
    )
    assert raw == expected
    assert_smtp_safe(raw)


@pytest.mark.parametrize("autoescape", [False, True])
def test_templates_read_a_dicts_keys_as_jinja_does_methods_first_and_a_missing_key_still_fails(
    autoescape: bool,
) -> None:
    # Mail contexts are plain dicts; their keys are read first, but never in place of a dict method.
    source = "{{ d.nombre }}|{{ d.items is callable }}|{{ d.vacio }}|{{ d['items'] }}|{{ o.real }}"
    context = {"d": {"nombre": "Ana <b>", "items": 3, "vacio": None}, "o": 2}
    ours = mailer._environment(autoescape=autoescape).from_string(source).render(context)
    name = "Ana &lt;b&gt;" if autoescape else "Ana <b>"
    assert ours == f"{name}|True|None|3|2"
    stock = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=autoescape)
    assert ours == stock.from_string(source).render(context)
    with pytest.raises(jinja2.UndefinedError, match="falta"):
        mailer._environment(autoescape=autoescape).from_string("{{ d.falta }}").render(context)
    # Jinja's own globals (range, namespace...) are still there, each template with its own copy.
    globals_source = (
        "{{ range(3) | list }}|{% set ns = namespace(n=1) %}{{ ns.n }}|{{ '2026-01-05' | fecha }}"
    )
    template = mailer._environment(autoescape=autoescape).from_string(globals_source, globals={"extra": 1})
    assert template.render() == "[0, 1, 2]|1|lunes 5 de enero de 2026"
    assert (
        template.globals["extra"] == 1 and "extra" not in mailer._environment(autoescape=autoescape).globals
    )


@pytest.mark.parametrize("name", ["Subject", "X-" + "N" * 70])
@pytest.mark.parametrize(
    "text", ["", "á", "ñandú y cóndor " * 12, "😀" * 40, "e\u0301" * 50, "中文字符" * 30]
)
def test_encoded_words_hold_whole_characters_and_as_many_as_their_line_allows(name: str, text: str) -> None:
    words = mailer._encoded_words(name, text).split("\n ")
    contents = [base64.b64decode(word.removeprefix("=?utf-8?b?").removesuffix("?=")) for word in words]
    assert b"".join(contents).decode() == text
    for index, content in enumerate(contents):
        line = f"{name}: {words[index]}" if index == 0 else f" {words[index]}"
        characters = content.decode()  # whole characters only: never a cut UTF-8 sequence
        assert len(line) <= 76 or len(characters) <= 1  # within RFC 2047's line, or one that cannot be
        if index + 1 < len(contents):  # the next word's first character would not have fitted
            longer = content + contents[index + 1].decode()[0].encode()
            assert len(line) - len(words[index]) + len(base64.b64encode(longer)) + 12 > 76

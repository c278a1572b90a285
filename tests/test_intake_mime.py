"""Parsing real-shaped mails: charsets, encoded-words, HTML-only bodies, attachments, broken input."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from consultas.errors import MalformedMailError
from consultas.mime import parse_mail

MAILS = Path(__file__).parent / "fixtures" / "mails"


def load(name: str) -> bytes:
    return (MAILS / name).read_bytes()


@pytest.mark.parametrize(
    ("fixture", "expected_text"),
    [
        ("thunderbird_latin1_8bit.eml", "Yo, Martín Ñahui Córdova, con DNI 70451236"),
        ("windows1252_body.eml", "el “Formato N° 9” – cierre de inversión –"),
        ("no_charset_8bit.eml", "soy Raúl Espinoza Gómez"),
        ("bogus_charset.eml", "me llamo Nicolás Benítez Ugarte"),
        ("outlook_forward.eml", "Soy Félix Paredes Salazar, identificado con Documento Nacional"),
        ("phone_client_8bit.eml", "Carlos Díaz"),
        ("outlook_alternative_labelled.eml", "Nombres y apellidos: Rosa Elena Huamán Ccahuana"),
    ],
)
def test_body_charsets_decode_to_the_accented_text_the_citizen_wrote(
    fixture: str, expected_text: str
) -> None:
    mail = parse_mail(load(fixture))

    assert expected_text in mail.text
    assert "\ufffd" not in mail.text


@pytest.mark.parametrize(
    ("fixture", "subject", "sender", "sender_name"),
    [
        (
            "thunderbird_latin1_8bit.eml",
            "Penalidad por mora en contratación",
            "martin.nahui@yahoo.es",
            "Martín Ñahui",
        ),
        (
            "rfc2047_mixed_headers.eml",
            "Consulta sobre la Cuenta Única del Tesoro - ñandu",
            "jmnunez@gmail.com",
            "José María Núñez",
        ),
        (
            "outlook_alternative_labelled.eml",
            "Consulta sobre incorporación de mayores ingresos",
            "rhuaman@munisantaanita.gob.pe",
            "Rosa Elena Huamán Ccahuana",
        ),
        ("bogus_charset.eml", "Transferencia de partidas", "nbenitez@correo.pe", "Nicolas Benitez"),
        (
            "mailing_list_newsletter.eml",
            "Boletín normativo del día",
            "boletin@normasperu.example",
            "Boletin Normativo",
        ),
    ],
)
def test_encoded_word_headers_are_decoded_and_sender_is_a_bare_lowercase_address(
    fixture: str, subject: str, sender: str, sender_name: str
) -> None:
    mail = parse_mail(load(fixture))

    assert (mail.subject, mail.sender, mail.sender_name) == (subject, sender, sender_name)


def test_recipients_dates_and_threading_headers_are_parsed() -> None:
    mixed = parse_mail(load("rfc2047_mixed_headers.eml"))
    reply = parse_mail(load("gmail_quoted_reply_subsanacion.eml"))

    assert mixed.to == ["consultas@mef.gob.pe", "mesadepartes@mef.gob.pe"]
    assert mixed.cc == ["asesor.legal@estudio.pe"]
    assert mixed.date == datetime(2025, 3, 25, 14, 0, tzinfo=UTC)
    assert reply.message_id == "<CAF7hR2kLm9Q@mail.gmail.com>"
    assert reply.in_reply_to == "<subsanacion.4f2a9c@consultas.mef.gob.pe>"
    assert reply.references == ["<CAF7hR2aAAA@mail.gmail.com>", "<subsanacion.4f2a9c@consultas.mef.gob.pe>"]


def test_html_only_mail_is_turned_into_text_with_its_table_rows() -> None:
    mail = parse_mail(load("html_only_table.eml"))

    assert mail.html is not None and "<table" in mail.html
    assert "<td>" not in mail.text
    assert "DNI | 48523691" in mail.text
    assert "Nombres y apellidos | Milagros Ximena Ramos Acuña" in mail.text


def test_text_plain_is_preferred_over_the_html_alternative() -> None:
    mail = parse_mail(load("gmail_alternative_prose.eml"))

    assert mail.text.startswith("Buenas tardes,\n\nMi nombre es Jorge Luis Quispe Mamani")
    assert mail.html is not None and "<div" in mail.html


def test_attachments_are_listed_with_decoded_names_types_and_sizes() -> None:
    mail = parse_mail(load("apple_mail_attachments.eml"))

    listed = [(a.filename, a.content_type, a.size, a.oversize) for a in mail.attachments]
    assert listed == [
        ("factura nº E001-245.pdf", "application/pdf", 2088, False),
        ("captura.jpg", "image/jpeg", 1013, False),
    ]
    assert mail.attachments[0].content.startswith(b"%PDF-1.4")
    assert "¿Cómo se corrige la cadena de gasto?" in mail.text


def test_attachment_over_the_cap_keeps_its_size_but_not_its_bytes() -> None:
    mail = parse_mail(load("apple_mail_attachments.eml"), max_attachment_bytes=1500)

    pdf, jpg = mail.attachments
    assert (pdf.size, pdf.oversize, pdf.truncated, pdf.content) == (2088, True, True, b"")
    assert (jpg.size, jpg.oversize) == (1013, False)
    assert len(jpg.content) == 1013


def test_mail_without_message_id_gets_a_stable_one_from_its_bytes() -> None:
    raw = load("no_message_id.eml")

    first, again = parse_mail(raw), parse_mail(raw)
    other = parse_mail(raw + b"\n")

    assert first.has_message_id is False
    assert first.message_id == f"<sha256-{first.raw_sha256}@consultas.invalid>"
    assert first.message_id == again.message_id
    assert other.message_id != first.message_id


def test_mail_with_message_id_keeps_it_normalised_in_angle_brackets() -> None:
    raw = load("no_charset_8bit.eml").replace(
        b"Message-ID: <no-charset-8bit-0001@yahoo.com>", b"Message-ID:   bare-id-42@yahoo.com  "
    )

    mail = parse_mail(raw)

    assert (mail.message_id, mail.has_message_id) == ("<bare-id-42@yahoo.com>", True)


def test_delivery_report_exposes_the_embedded_headers_of_the_bounced_mail() -> None:
    mail = parse_mail(load("dsn_bounce_postfix.eml"))

    assert mail.content_type == "multipart/report"
    assert mail.delivery_status is not None and "Status: 5.4.4" in mail.delivery_status
    assert [h["message-id"] for h in mail.embedded_headers] == ["<recibida.2025-000151@consultas.mef.gob.pe>"]


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\r\n\r\n   \r\n",
        (MAILS / "broken_binary.eml").read_bytes(),
        b"\x00\x01\x02\x03\xff\xfe garbage without any header line\n\n\x00",
    ],
    ids=["empty", "only-blank-lines", "png-bytes", "binary-garbage"],
)
def test_bytes_that_are_not_a_mail_raise_malformed_mail_error(raw: bytes) -> None:
    with pytest.raises(MalformedMailError):
        parse_mail(raw)


def test_headers_only_mail_without_from_or_body_is_malformed() -> None:
    with pytest.raises(MalformedMailError):
        parse_mail(b"Subject: hola\r\nDate: Mon, 3 Mar 2025 10:00:00 -0500\r\n\r\n")


def test_unknown_charset_in_a_header_and_body_never_crashes() -> None:
    raw = (
        b"From: =?x-unknown?Q?Jos=E9?= <jose@example.pe>\n"
        b"Subject: =?unknown-8bit?B?////?=\n"
        b"Content-Type: text/plain; charset=unknown-8bit\n\n"
        b"Informaci\xf3n \x81 con bytes raros\n"
    )

    mail = parse_mail(raw)

    assert mail.sender_name == "José"
    assert mail.text.startswith("Información")


@pytest.mark.parametrize(
    ("header", "charset"),
    [
        (b"Subject: =?utf-8?B?w6FyZW?=", "utf-8"),  # bad base64 padding in an encoded-word
        (b"Subject: =?base64?Q?caf=E9?=", "base64"),  # a codec that is not a text encoding
        (b"Subject: =?a\x00b?Q?caf=E9?=", "a\x00b"),  # NUL in the label (fuzzing found it)
    ],
)
def test_hostile_charset_labels_fall_back_instead_of_crashing(header: bytes, charset: str) -> None:
    raw = b"From: a@example.pe\n" + header + b'\nContent-Type: text/plain; charset="' + charset.encode()
    raw += b'"\n\ncaf\xe9 con leche\n'

    mail = parse_mail(raw)

    assert mail.text.startswith("café con leche")
    assert mail.subject

"""`consultas parse`: one mail -> the JSON object the issue specifies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from consultas.errors import MalformedMailError
from intake.parse_command import parse_to_json

MAILS = Path(__file__).parent / "fixtures" / "mails"
OWN_ADDRESSES = frozenset({"consultas@mef.gob.pe"})


def parse(name: str) -> dict[str, Any]:
    return parse_to_json(
        (MAILS / name).read_bytes(),
        own_addresses=OWN_ADDRESSES,
        own_message_id_domain="consultas.mef.gob.pe",
        max_attachment_bytes=10 * 1024 * 1024,
    )


def test_citizen_mail_gives_the_exact_json_object_of_the_issue() -> None:
    result = parse("apple_mail_attachments.eml")

    assert result == {
        "message_id": "<8A7B6C5D-4E3F-2A1B-9C8D-7E6F5A4B3C2D@icloud.com>",
        "sender": "ana.rojas@icloud.com",
        "subject": "Error en registro de devengado SIAF",
        "automatic": False,
        "requisitos": {
            "full_name": "Ana Lucía Rojas Vásquez",
            "document_type": "DNI",
            "document_number": "46352178",
            "entity_name": "Consultora Rojas E.I.R.L.",
            "entity_ruc": "20145781231",
            "email": "contabilidad@consultorarojas.pe",
            "phone": "+51944112233",
            "question": "Adjunto la factura y la captura del error que aparece al registrar el devengado "
            "en el SIAF. ¿Cómo se corrige la cadena de gasto?",
        },
        "missing": [],
        "invalid": [],
        "attachments": [
            {"filename": "factura nº E001-245.pdf", "content_type": "application/pdf", "size": 2088},
            {"filename": "captura.jpg", "content_type": "image/jpeg", "size": 1013},
        ],
    }


def test_output_round_trips_through_json() -> None:
    result = parse("thunderbird_latin1_8bit.eml")

    assert json.loads(json.dumps(result, ensure_ascii=False)) == result


@pytest.mark.parametrize(
    ("fixture", "automatic"),
    [("gmail_vacation.eml", True), ("dsn_bounce_postfix.eml", True), ("no_charset_8bit.eml", False)],
)
def test_automatic_flag_follows_loop_detection(fixture: str, automatic: bool) -> None:
    assert parse(fixture)["automatic"] is automatic


def test_incomplete_mail_lists_missing_keys_and_null_requisitos() -> None:
    result = parse("rfc2047_mixed_headers.eml")

    assert result["missing"] == ["document_number", "phone", "question"]
    assert result["requisitos"] == {
        "full_name": "José María Núñez",
        "document_type": None,
        "document_number": None,
        "entity_name": None,
        "entity_ruc": None,
        "email": "jmnunez@gmail.com",
        "phone": None,
        "question": None,
    }


def test_broken_mail_raises_malformed_mail_error() -> None:
    with pytest.raises(MalformedMailError):
        parse("broken_binary.eml")

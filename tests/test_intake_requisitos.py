"""Requisitos (directive 5.3) found in free Spanish text, validated, and completed by subsanación."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from consultas.mime import parse_mail
from consultas.requisitos import (
    Requisitos,
    _entity,
    _first_name,
    check_requisitos,
    extract_requisitos,
    merge_requisitos,
)
from consultas.validators import (
    normalize_email,
    normalize_phone,
    validate_ce,
    validate_dni,
    validate_pasaporte,
    validate_ruc,
)

CASES: dict[str, Any] = json.loads((Path(__file__).parent / "data" / "requisitos_cases.json").read_text())
MAILS = Path(__file__).parent / "fixtures" / "mails"
GEN_CORPUS = Path("/work/shared/bench/gen_corpus.py")

VALIDATORS: dict[str, Callable[[str], str]] = {
    "dni": validate_dni,
    "ruc": validate_ruc,
    "ce": validate_ce,
    "pasaporte": validate_pasaporte,
    "phone": normalize_phone,
    "email": normalize_email,
}
VALIDATOR_CASES = [
    pytest.param(kind, case, id=f"{kind}:{case['input']}") for kind in VALIDATORS for case in CASES[kind]
]


@pytest.mark.parametrize(("kind", "case"), VALIDATOR_CASES)
def test_single_field_validators_normalise_or_explain_in_spanish(kind: str, case: dict[str, str]) -> None:
    validator = VALIDATORS[kind]
    if "expected" in case:
        assert validator(case["input"]) == case["expected"]
    else:
        with pytest.raises(ValueError, match=case["error"]):
            validator(case["input"])


@pytest.mark.parametrize("case", CASES["extraction"], ids=[c["name"] for c in CASES["extraction"]])
def test_requisitos_extracted_from_text_match_the_table(case: dict[str, Any]) -> None:
    extraction = extract_requisitos(
        case["text"], sender="pedro@example.pe", sender_name="Pedro Salas Ruiz", subject="Consulta"
    )

    got = {key: getattr(extraction.requisitos, key) for key in case["expected"]}
    assert got == case["expected"]
    assert list(extraction.missing) == case["missing"]
    assert list(extraction.invalid) == case["invalid"]


@pytest.mark.parametrize(
    ("fixture", "expected", "missing"),
    [
        (
            "outlook_alternative_labelled.eml",
            {
                "full_name": "Rosa Elena Huamán Ccahuana",
                "document_number": "41236587",
                "entity_name": "Municipalidad Distrital de Santa Anita",
                "entity_ruc": "20601234565",
                "email": "rhuaman.mdsa@gmail.com",
                "phone": "+5113624410",
            },
            [],
        ),
        (
            "html_only_table.eml",
            {
                "full_name": "Milagros Ximena Ramos Acuña",
                "document_number": "48523691",
                "email": "milagros.ramos@outlook.com",
                "phone": "+51921456789",
                "question": "¿Dónde puedo consultar el saldo de la deuda pública por gobierno regional "
                "actualizado al último trimestre?",
            },
            [],
        ),
        (
            "outlook_forward.eml",
            {
                "full_name": "Félix Paredes Salazar",
                "document_number": "40125478",
                "entity_name": "Municipalidad Provincial de Huamanga",
                "entity_ruc": "20500112230",
                "email": "felix.paredes.s@gmail.com",
                "phone": "+51966123456",
            },
            [],
        ),
        (
            "phone_client_8bit.eml",
            {
                "document_number": "72145896",
                "phone": "+51976543210",
                "email": "carlitos.diaz.2024@hotmail.com",
            },
            [],
        ),
        (
            "gmail_quoted_reply_subsanacion.eml",
            {"document_number": "45678912", "phone": "+51998877665", "question": None},
            ["question"],
        ),
        (
            "rfc2047_mixed_headers.eml",
            {"full_name": "José María Núñez", "email": "jmnunez@gmail.com", "question": None},
            ["document_number", "phone", "question"],
        ),
    ],
)
def test_requisitos_are_found_in_real_shaped_mails(
    fixture: str, expected: dict[str, str | None], missing: list[str]
) -> None:
    mail = parse_mail((MAILS / fixture).read_bytes())

    extraction = extract_requisitos(
        mail.text, sender=mail.sender, sender_name=mail.sender_name, subject=mail.subject
    )

    assert {key: getattr(extraction.requisitos, key) for key in expected} == expected
    assert list(extraction.missing) == missing
    assert extraction.invalid == ()


def test_question_leaves_out_greeting_introduction_requisitos_and_signature() -> None:
    mail = parse_mail((MAILS / "no_message_id.eml").read_bytes())

    extraction = extract_requisitos(
        mail.text, sender=mail.sender, sender_name=mail.sender_name, subject=mail.subject
    )

    assert extraction.requisitos.question == (
        "Consulto cómo se solicita la creación de un nuevo usuario en el módulo administrativo del SIAF."
    )


def test_check_requisitos_validates_the_bot_form_fields() -> None:
    form = Requisitos(
        full_name="  Ana   Pérez Ríos ",
        document_type="DNI",
        document_number="4123 6587",
        email="Ana@Gmail.com",
        phone="987-654-321",
        question="¿Cuál es el plazo de mi trámite?",
        represents_entity=True,
    )

    extraction = check_requisitos(form)

    assert extraction.requisitos.full_name == "Ana Pérez Ríos"
    assert extraction.requisitos.document_number == "41236587"
    assert extraction.requisitos.email == "ana@gmail.com"
    assert extraction.requisitos.phone == "+51987654321"
    assert extraction.missing == ("entity_ruc",)
    assert extraction.invalid == ()
    assert not extraction.complete


def test_subsanacion_reply_fills_the_gaps_and_fixes_invalid_fields() -> None:
    first = extract_requisitos(
        "Mi nombre es Ana Pérez Ríos, identificada con DNI 4123658. ¿Cuál es el plazo de atención "
        "de mi expediente?",
        sender="ana@gmail.com",
        sender_name="Ana",
        subject="Consulta",
    )
    reply = extract_requisitos(
        "Buenas tardes, completo los datos:\nDNI: 41236587\nCelular: 987 654 321\n",
        sender="ana@gmail.com",
        sender_name="Ana",
        subject="Re: Complete los requisitos",
    )
    assert (first.missing, first.invalid) == (("phone",), ("document_number",))

    merged = check_requisitos(merge_requisitos(first.requisitos, reply.requisitos))

    assert merged.complete
    assert merged.requisitos.document_number == "41236587"
    assert merged.requisitos.phone == "+51987654321"
    assert merged.requisitos.full_name == "Ana Pérez Ríos"
    assert merged.requisitos.question == "¿Cuál es el plazo de atención de mi expediente?"


def test_merge_keeps_a_valid_old_value_when_the_new_one_is_wrong() -> None:
    old = Requisitos(full_name="Ana Pérez Ríos", document_type="DNI", document_number="41236587")
    new = Requisitos(document_type="DNI", document_number="123", phone="987654321")

    merged = merge_requisitos(old, new)

    assert (merged.document_type, merged.document_number, merged.phone) == ("DNI", "41236587", "+51987654321")


@pytest.fixture(scope="module")
def generated_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not GEN_CORPUS.exists():
        pytest.skip(f"{GEN_CORPUS} is not available")
    out = tmp_path_factory.mktemp("corpus")
    subprocess.run(
        [sys.executable, str(GEN_CORPUS), "--n", "300", "--out", str(out)], check=True, capture_output=True
    )
    return out


def test_every_generated_mail_yields_exactly_its_manifest_ground_truth(generated_corpus: Path) -> None:
    manifest = [json.loads(line) for line in (generated_corpus / "manifest.jsonl").read_text().splitlines()]
    mismatches = []
    for truth in manifest:
        mail = parse_mail((generated_corpus / truth["file"]).read_bytes())
        extraction = extract_requisitos(
            mail.text, sender=mail.sender, sender_name=mail.sender_name, subject=mail.subject
        )
        req = extraction.requisitos
        got = (
            mail.message_id,
            mail.subject,
            req.full_name,
            req.document_number,
            req.entity_name,
            req.entity_ruc,
            req.phone,
            req.email,
            extraction.missing,
            extraction.invalid,
        )
        expected = (
            truth["message_id"],
            truth["subject"],
            truth["name"],
            truth["dni"],
            truth["entity"],
            truth["ruc"],
            "+51" + truth["phone"].removeprefix("0"),
            truth["sender"],
            (),
            (),
        )
        if got != expected:
            mismatches.append((truth["file"], got, expected))

    assert len(manifest) == 300
    assert mismatches == []


@pytest.mark.parametrize(
    ("text", "name", "entity"),
    [
        ("YO, Juan Pérez Soto, pregunto si", "Juan Pérez Soto", None),
        ("ME LLAMO Rosa Quispe Mamani y consulto", "Rosa Quispe Mamani", None),
        # Letters case-insensitive matching equates with s and i: the quick word test must not miss them.
        ("ſoy Juan Pérez Soto, de Lima", "Juan Pérez Soto", None),
        ("Les escrİbe Ana María Ríos desde Ica", "Ana María Ríos", None),
        ("Les escrıbe Ana María Ríos desde Ica", "Ana María Ríos", None),
        ("El ſuscrito, Pedro Ramos Díaz, consulta", "Pedro Ramos Díaz", None),
        ("Escribo en representacİón de la Municipalidad de Lima", None, "Municipalidad de Lima"),
        ("Soy GERENTE DE Empresa Andina SAC", None, "Empresa Andina SAC"),
        ("Trabajo en la Municipalidad de Surco", None, "Municipalidad de Surco"),
        ("Consulta sobre el presupuesto de la Municipalidad de Surco", None, None),
    ],
)
def test_names_in_prose_and_entities_after_a_role_are_found_in_any_case(
    text: str, name: str | None, entity: str | None
) -> None:
    assert (_first_name(text), _entity(text)) == (name, entity)

"""Mails as citizens and offices really write them: forwards, names first, Outlook names, bottom-posting,
other alphabets, mislabelled charsets, banner lines. Each fixture through ``consultas parse``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from consultas.mime import decode_bytes, parse_mail
from consultas.requisitos import extract_requisitos
from intake.parse_command import parse_to_json

ROOT = Path(__file__).resolve().parents[1]
MAILS = ROOT / "tests" / "fixtures" / "mails"

#: fixture -> (sender, the requisitos expected, missing)
CASES: dict[str, tuple[str, dict[str, Any], list[str]]] = {
    "forwarded_office_traslado.eml": (
        "mesadepartes@munisapallanga.gob.pe",
        {
            "full_name": "Rosa Elvira Huamán Ccori",
            "document_number": "41234567",
            "email": "rosa.huaman.ccori@gmail.com",
            "phone": "+51964318275",
        },
        [],
    ),
    "forwarded_gmail_inline.eml": (
        "enlace@regioncusco.gob.pe",
        {
            "full_name": "Rosa Quispe Mamani",
            "document_number": "40321987",
            "email": "rosa.quispe.m@hotmail.com",
            "phone": "+51984112358",
            "question": "Mi esposo era cesante de educacion y fallecio en agosto; quisiera saber que "
            "requisitos hay para que me paguen la pension de viudez y quien calcula el monto.",
        },
        [],
    ),
    "name_opens_text.eml": (
        "rquispe1978@yahoo.es",
        {
            "full_name": "Rosa Quispe Mamani",
            "document_number": "41234567",
            "phone": "+51987654321",
            "question": "Consulto si la municipalidad puede contratar personal CAS con los recursos del "
            "canon minero o solo se puede para obras.",
        },
        [],
    ),
    "outlook_encoded_comma_from.eml": (
        "maria.pena.flores@outlook.com",
        {"full_name": "María Peña Flores", "email": "maria.pena.flores@outlook.com"},
        [],
    ),
    "bottom_posted_gmail_es.eml": (
        "rosa.quispe.m@gmail.com",
        {
            "document_number": "41234567",
            "phone": "+51987654321",
            "question": "Quiero saber si la municipalidad puede pagar a los obreros de limpieza con la "
            "plata del canon minero o si eso solo se puede usar en obras.",
        },
        [],
    ),
    "bottom_posted_en.eml": (
        "dan.foster@example.com",
        {
            "document_type": "PASAPORTE",
            "document_number": "548812093",
            "phone": "+51912345678",
            "question": "Sorry for my Spanish. Mi pregunta: una empresa extranjera que vende software a "
            "entidades del Estado peruano, tiene que pagar el IGV o la retencion del impuesto a la renta?",
        },
        [],
    ),
    "bottom_posted_thunderbird_de.eml": (
        "juergen.weiss@example.de",
        {
            "full_name": "Jürgen Weiß",
            "document_number": "C4F7X92K1",
            "question": "Meine Frage: Muss ich für die Einfuhr meines gebrauchten Fahrrads nach Peru "
            "Zoll oder Steuern bezahlen? Ich möchte es nur während meiner Reise benutzen.",
        },
        ["phone"],
    ),
    "other_alphabets_utf8.eml": (
        "anna.volkova@example.ru",
        {
            "full_name": "Anna Volkova",
            "question": "Здравствуйте! Какие налоги платит иностранная компания, которая продаёт "
            "оборудование государственным учреждениям Перу?",
        },
        [],
    ),
    "gb2312_label_gbk_bytes.eml": (
        "li.weizhang@example.cn",
        {"question": "咨询：我们镕达贸易有限公司想从中国进口纺织品到秘鲁，请问需要缴纳多少关税和增值税？"},
        [],
    ),
    "banner_before_headers.eml": (
        "jorge.salas.v@example.pe",
        {"full_name": "Jorge Salas Vilca", "document_number": "42871630"},
        [],
    ),
}


def _check(result: dict[str, Any], fixture: str) -> None:
    sender, expected, missing = CASES[fixture]
    assert result["sender"] == sender
    assert {key: result["requisitos"][key] for key in expected} == expected
    assert result["missing"] == missing
    assert result["invalid"] == []


@pytest.mark.parametrize("fixture", sorted(CASES))
def test_each_hard_mail_gives_the_citizens_requisitos(fixture: str) -> None:
    result = parse_to_json((MAILS / fixture).read_bytes(), own_addresses=frozenset({"consultas@mef.gob.pe"}))

    _check(result, fixture)


@pytest.mark.slow
def test_consultas_parse_command_reads_every_hard_mail(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "CONSULTAS_VAR_DIR": str(tmp_path / "var"), "PYTHONPATH": str(ROOT)}
    for fixture in sorted(CASES):
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "parse", str(MAILS / fixture)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        _check(json.loads(done.stdout), fixture)


def test_the_office_that_forwards_is_never_taken_for_the_citizen() -> None:
    mail = parse_mail((MAILS / "forwarded_office_traslado.eml").read_bytes())
    extraction = extract_requisitos(
        mail.text, sender=mail.sender, sender_name=mail.sender_name, subject=mail.subject
    )

    assert mail.sender_name.startswith("Mesa de Partes")
    assert extraction.forwarded
    assert extraction.requisitos.full_name == "Rosa Elvira Huamán Ccori"


def test_an_office_forward_without_the_citizens_name_asks_for_it_instead_of_using_the_office() -> None:
    text = (
        "Trasladamos la consulta de un vecino, con DNI 41234567 y celular 987654321, sobre el uso del canon "
        "minero en el pago de personal."
    )
    extraction = extract_requisitos(
        text, sender="mesa@muni.gob.pe", sender_name="Mesa de Partes Muni", subject="x"
    )

    assert extraction.forwarded
    assert "full_name" in extraction.missing
    assert extraction.requisitos.email == "mesa@muni.gob.pe"


def test_a_citizen_telling_that_someone_derived_their_consulta_is_no_forward() -> None:
    text = "En la UGEL derivaron la consulta del pago a otra oficina y nadie responde. ¿A quién acudo?"

    extraction = extract_requisitos(
        text, sender="jp@example.pe", sender_name="José Pérez Quispe", subject="x"
    )

    assert not extraction.forwarded
    assert extraction.requisitos.full_name == "José Pérez Quispe"


def test_a_citizens_own_forward_of_their_mail_keeps_their_address() -> None:
    text = (
        "Reenvío mi consulta.\n\n---------- Forwarded message ---------\nDe: José Pérez <jp@example.pe>\n"
        "Date: lun\n\nMi DNI es 45678912, celular 987654321. ¿Cómo se calcula la CTS de un trabajador?\n"
    )

    extraction = extract_requisitos(
        text, sender="jp@example.pe", sender_name="José Pérez Quispe", subject="Fwd: x"
    )

    assert extraction.requisitos.email == "jp@example.pe"
    assert extraction.requisitos.full_name == "José Pérez Quispe"


@pytest.mark.parametrize(
    "question",
    [
        "Dobrý den, chtěl bych vědět, jaké daně platí česká firma v Peru.",
        "Ich möchte wissen, ob die Straßenbauprojekte Steuern zahlen.",
        "Здравствуйте, какие налоги платит компания?",
        "请问进口纺织品需要缴纳多少关税",
    ],
)
def test_a_question_in_another_alphabet_is_a_question(question: str) -> None:
    text = f"Nombre: Ana Ruiz Soto\nDNI: 41234567\nCelular: 987654321\nConsulta: {question}\n"

    extraction = extract_requisitos(text, sender="a@example.pe", sender_name="", subject="Consulta")

    assert extraction.requisitos.question == question


@pytest.mark.parametrize(
    ("label", "raw", "text"),
    [
        ("gb2312", "镕达".encode("gbk"), "镕达"),
        ("iso-8859-1", b"\x93caf\xe9\x94", "“café”"),
        ("us-ascii", b"se\xf1or", "señor"),
        ("ks_c_5601-1987", "한국".encode("cp949"), "한국"),
        ("utf8x", "señor".encode(), "señor"),
    ],
)
def test_charset_labels_are_read_as_the_whatwg_encoding_standard_reads_them(
    label: str, raw: bytes, text: str
) -> None:
    assert decode_bytes(raw, label) == text

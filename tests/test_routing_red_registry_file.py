"""The Red registry file: a valid file loads; each kind of error names the organo and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from consultas.errors import RegistryError
from routing.red_registry_file import load_registry_file, parse_registry

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "red.example.yaml"

VALID = """
organos:
  - code: DGPMI
    name: Dirección General de Programación Multianual de Inversiones
    topics: ["invierte.pe", "banco de inversiones", "formato 12-b"]
    titular: {name: "Ana Ruiz", cargo: "Especialista", email: "aruiz@mef.gob.pe", phone: "3115930"}
    alterno: {name: "Luis Soto", cargo: "Analista", email: "lsoto@mef.gob.pe", phone: "3115931", absent: true}
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(RegistryError) as caught:
        parse_registry(text)
    return caught.value.problems


def test_example_registry_loads_with_titular_and_alterno_of_every_organo() -> None:
    registry = load_registry_file(EXAMPLE)

    codes = [organo.code for organo in registry.organos]
    assert {"DGPP", "DGPMI", "DGTP", "DGCP", "DGA", "DGGFRH"} <= set(codes)
    assert len(codes) == len(set(codes))
    dgpmi = registry.by_code("dgpmi")
    assert dgpmi is not None
    assert dgpmi.titular.email.endswith("@mef.gob.pe")
    assert "invierte.pe" in dgpmi.topics


def test_valid_text_keeps_absent_flag_and_topics() -> None:
    registry = parse_registry(VALID)

    (organo,) = registry.organos
    assert organo.alterno.absent is True
    assert organo.titular.absent is False
    assert organo.topics == ("invierte.pe", "banco de inversiones", "formato 12-b")
    assert registry.organo_topics()[0].code == "DGPMI"


@pytest.mark.parametrize(
    ("original", "replacement", "expected"),
    [
        (
            'email: "aruiz@mef.gob.pe"',
            'email: "foo"',
            "organo DGPMI: titular.email: 'foo' is not a valid email address",
        ),
        (
            'email: "lsoto@mef.gob.pe"',
            'email: "lsoto@"',
            "organo DGPMI: alterno.email: 'lsoto@' is not a valid email",
        ),
        (
            'topics: ["invierte.pe", "banco de inversiones", "formato 12-b"]',
            "topics: []",
            "organo DGPMI: topics:",
        ),
        ('name: "Ana Ruiz", ', "", "organo DGPMI: titular.name: is required"),
        ("code: DGPMI", "code: dgpmi", "organo dgpmi: code: 'dgpmi' must be uppercase letters and digits"),
        (
            'cargo: "Analista", ',
            'cargo: "Analista", oficina: "x", ',
            "organo DGPMI: alterno.oficina: unknown field",
        ),
    ],
)
def test_invalid_field_is_reported_with_organo_and_field(
    original: str, replacement: str, expected: str
) -> None:
    assert original in VALID
    problems = _problems(VALID.replace(original, replacement, 1))

    assert any(problem.startswith(expected) for problem in problems), problems


def test_missing_alterno_names_the_organo() -> None:
    text = VALID.split("    alterno:", maxsplit=1)[0]

    assert _problems(text) == ["organo DGPMI: alterno: is required"]


def test_every_problem_of_every_organo_is_reported_at_once() -> None:
    second = VALID.split("organos:\n")[1].replace("DGPMI", "DGPP").replace("aruiz@", "bad address@")
    text = VALID.replace("lsoto@mef.gob.pe", "nope") + second

    problems = _problems(text)

    assert [p.split(":")[0:2] for p in problems] == [
        ["organo DGPMI", " alterno.email"],
        ["organo DGPP", " titular.email"],
    ]


def test_duplicate_codes_are_refused() -> None:
    text = VALID + VALID.split("organos:\n")[1]

    problems = _problems(text)

    assert len(problems) == 1
    assert problems[0].startswith("organo DGPMI: code: duplicate code")


def test_yaml_syntax_error_reports_the_line() -> None:
    text = VALID.replace('topics: ["invierte.pe",', 'topics: ["invierte.pe",\n  ]]', 1)

    problems = _problems(text)

    assert len(problems) == 1
    assert "YAML syntax error at line" in problems[0]
    assert "line 6" in problems[0] or "line 7" in problems[0]


@pytest.mark.parametrize("text", ["", "organos: []", "- just a list", "organos:\n  - not a mapping"])
def test_file_without_organos_is_refused(text: str) -> None:
    assert _problems(text)


def test_missing_file_raises_registry_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="cannot read registry file"):
        load_registry_file(tmp_path / "red.yaml")

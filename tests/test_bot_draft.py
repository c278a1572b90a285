"""The form's draft: which field comes next, and each answer checked with the intake validators."""

from __future__ import annotations

from typing import Any

import pytest

from bot.draft import Step, accept_text, next_step, reopen, set_entidad, set_tipo_documento, to_requisitos
from consultas.requisitos import check_requisitos

COMPLETE: dict[str, Any] = {
    "entidad": False, "tipo_documento": "DNI", "numero_documento": "45781236", "nombres": "Ana",
    "apellido_paterno": "Quispe", "apellido_materno": "", "correo": "ana@example.pe",
    "telefono": "+51987654321", "tema": "DGPMI",
    "consulta": "¿Cómo registro el formato 12-B en el Banco de Inversiones?",
}  # fmt: skip


def test_fields_are_asked_in_the_order_of_the_anexo_1_form() -> None:
    draft: dict[str, Any] = {}
    asked = []
    answers = {**COMPLETE, "entidad": True, "ruc": "20131370645", "razon_social": "Municipalidad X"}
    while (step := next_step(draft)) is not None:
        asked.append(step)
        draft[step.value] = answers[step.value]

    assert asked == list(Step)


def test_ruc_and_razon_social_are_asked_only_of_someone_representing_an_entity() -> None:
    draft = dict(COMPLETE)
    assert next_step(draft) is None

    set_entidad(draft, True)
    assert next_step(draft) == Step.RUC

    draft.update(ruc="20131370645", razon_social="Municipalidad X")
    set_entidad(draft, False)
    assert "ruc" not in draft and next_step(draft) is None


def test_changing_the_document_type_asks_the_number_again() -> None:
    draft = dict(COMPLETE)
    set_tipo_documento(draft, "DNI")
    assert next_step(draft) is None

    set_tipo_documento(draft, "CE")
    assert next_step(draft) == Step.NUMERO_DOCUMENTO


def test_reopening_a_field_asks_only_that_field() -> None:
    draft = dict(COMPLETE)
    reopen(draft, Step.CORREO)

    assert next_step(draft) == Step.CORREO


@pytest.mark.parametrize(
    ("step", "given", "stored"),
    [
        (Step.NUMERO_DOCUMENTO, "45 781 236", "45781236"),
        (Step.NOMBRES, "  Ana   María ", "Ana María"),
        (Step.APELLIDO_PATERNO, "D'Alessandro-Ríos", "D'Alessandro-Ríos"),
        (Step.CORREO, "Ana@Example.PE", "ana@example.pe"),
        (Step.RUC, "20131370645", "20131370645"),
        (Step.TELEFONO, "987 654 321", "+51987654321"),
        (Step.TELEFONO, "(01) 311-5930", "+5113115930"),
    ],
)
def test_valid_answers_are_stored_normalised(step: Step, given: str, stored: str) -> None:
    draft: dict[str, Any] = {"tipo_documento": "DNI"}
    accept_text(draft, step, given)

    assert draft[step.value] == stored


@pytest.mark.parametrize(
    ("step", "given", "reason"),
    [
        (Step.NUMERO_DOCUMENTO, "4578123", "8 dígitos"),
        (Step.NOMBRES, "Ana 2", "solo letras"),
        (Step.NOMBRES, "<b>Ana</b>", "solo letras"),
        (Step.CORREO, "ana@", "correo electrónico no es válido"),
        (Step.RUC, "20131370646", "dígito verificador"),
        (Step.RUC, "2013137064", "11 dígitos"),
        (Step.TELEFONO, "12", "teléfono no es válido"),
        (Step.RAZON_SOCIAL, " x ", "razón social"),
        (Step.CONSULTA, "Hola, buenos días", "muy breve"),
    ],
)
def test_invalid_answers_raise_the_spanish_reason(step: Step, given: str, reason: str) -> None:
    draft: dict[str, Any] = {"tipo_documento": "DNI"}
    with pytest.raises(ValueError, match=reason):
        accept_text(draft, step, given)
    assert step.value not in draft


def test_a_complete_draft_passes_the_same_requisitos_check_as_mail() -> None:
    extraction = check_requisitos(to_requisitos(COMPLETE))

    assert extraction.complete
    assert extraction.requisitos.full_name == "Ana Quispe"

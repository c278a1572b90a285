"""The form's draft (Anexo N° 1) as a plain dict: which field comes next, and each field's check.

Pure: no telegram, no database. The draft lives in ``context.chat_data["draft"]`` (pickled by
PTB persistence), so it only holds str/bool/None values keyed by ``Step`` values. A field that
was not asked yet is absent or None; "no apellido materno" is the empty string.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from enum import StrEnum
from typing import Any, Final

from bot import texts
from consultas.requisitos import Requisitos
from consultas.validators import (
    normalize_email,
    normalize_phone,
    validate_document,
    validate_entity_name,
    validate_name_part,
    validate_question,
    validate_ruc,
)

Draft = MutableMapping[str, Any]

ADMINISTRATIVA: Final = "ADMINISTRATIVA"


class Step(StrEnum):
    """One field of the form, in the order of Anexo N° 1 (values are stable: they are pickled)."""

    ENTIDAD = "entidad"
    TIPO_DOCUMENTO = "tipo_documento"
    NUMERO_DOCUMENTO = "numero_documento"
    NOMBRES = "nombres"
    APELLIDO_PATERNO = "apellido_paterno"
    APELLIDO_MATERNO = "apellido_materno"
    CORREO = "correo"
    RUC = "ruc"
    RAZON_SOCIAL = "razon_social"
    TELEFONO = "telefono"
    TEMA = "tema"
    CONSULTA = "consulta"


#: Asked only when the citizen represents an entity.
ENTITY_STEPS: Final = frozenset({Step.RUC, Step.RAZON_SOCIAL})
#: Correcting one of these re-asks the others too (the number belongs to its document type).
_DEPENDENTS: Final = {Step.TIPO_DOCUMENTO: (Step.NUMERO_DOCUMENTO,)}


def applies(draft: Mapping[str, Any], step: Step) -> bool:
    """Tell whether ``step`` is part of this citizen's form."""
    return step not in ENTITY_STEPS or draft.get(Step.ENTIDAD) is True


def next_step(draft: Mapping[str, Any]) -> Step | None:
    """The first field still to answer, in form order; None when the draft is complete."""
    for step in Step:
        if applies(draft, step) and draft.get(step) is None:
            return step
    return None


def set_entidad(draft: Draft, represents: bool) -> None:
    """Record the answer to "¿representa a una entidad?"; "No" forgets any RUC and razón social."""
    draft[Step.ENTIDAD.value] = represents
    if not represents:
        for step in ENTITY_STEPS:
            draft.pop(step, None)


def set_tipo_documento(draft: Draft, kind: str) -> None:
    """Record the document type; a different type forgets the number given for the old one."""
    if draft.get(Step.TIPO_DOCUMENTO) != kind:
        draft.pop(Step.NUMERO_DOCUMENTO, None)
    draft[Step.TIPO_DOCUMENTO.value] = kind


def reopen(draft: Draft, step: Step) -> None:
    """Forget ``step`` (and the fields that depend on it) so that it is asked again."""
    draft.pop(step, None)
    for dependent in _DEPENDENTS.get(step, ()):
        draft.pop(dependent, None)
    if step == Step.TEMA:
        draft.pop("tema_nombre", None)


#: Checks of the typed fields: the same intake validators as mail where one exists.
TEXT_CHECKS: Final[dict[Step, Callable[[str], str]]] = {
    Step.NOMBRES: validate_name_part,
    Step.APELLIDO_PATERNO: validate_name_part,
    Step.APELLIDO_MATERNO: validate_name_part,
    Step.CORREO: normalize_email,
    Step.RUC: validate_ruc,
    Step.RAZON_SOCIAL: validate_entity_name,
    Step.TELEFONO: normalize_phone,
    Step.CONSULTA: validate_question,
}


#: Steps answered by typing (the others by pressing a button).
TYPED_STEPS: Final = frozenset({Step.NUMERO_DOCUMENTO, *TEXT_CHECKS})


def accept_text(draft: Draft, step: Step, value: str) -> None:
    """Check a typed answer and store it normalised; raise ValueError with the Spanish reason."""
    if step == Step.NUMERO_DOCUMENTO:
        _, number = validate_document(draft.get(Step.TIPO_DOCUMENTO), value)
        draft[step.value] = number
        return
    draft[step.value] = TEXT_CHECKS[step](value)


def full_name(draft: Mapping[str, Any]) -> str:
    """Nombres + apellido paterno + apellido materno (when there is one)."""
    parts = (draft.get(Step.NOMBRES), draft.get(Step.APELLIDO_PATERNO), draft.get(Step.APELLIDO_MATERNO))
    return " ".join(part for part in parts if part)


def to_requisitos(draft: Mapping[str, Any]) -> Requisitos:
    """The requisitos (5.3) of a complete draft, for ``check_requisitos`` and admission."""
    represents = draft.get(Step.ENTIDAD) is True
    return Requisitos(
        full_name=full_name(draft) or None,
        document_type=draft.get(Step.TIPO_DOCUMENTO),
        document_number=draft.get(Step.NUMERO_DOCUMENTO),
        entity_name=draft.get(Step.RAZON_SOCIAL) if represents else None,
        entity_ruc=draft.get(Step.RUC) if represents else None,
        email=draft.get(Step.CORREO),
        phone=draft.get(Step.TELEFONO),
        question=draft.get(Step.CONSULTA),
        represents_entity=represents,
    )


#: Requisitos keys (intake) -> the step that asks for them.
REQUISITO_STEPS: Final = {
    "full_name": Step.NOMBRES,
    "document_number": Step.NUMERO_DOCUMENTO,
    "entity_ruc": Step.RUC,
    "email": Step.CORREO,
    "phone": Step.TELEFONO,
    "question": Step.CONSULTA,
}


def summary_rows(draft: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) of each field of this citizen's form, unescaped, for the summary."""
    rows: list[tuple[str, str]] = []
    for step in Step:
        if not applies(draft, step):
            continue
        value = draft.get(step)
        if step == Step.ENTIDAD:
            shown = texts.BTN_SI if value else texts.BTN_NO
        elif step == Step.TIPO_DOCUMENTO:
            shown = texts.DOCUMENT_LABELS.get(str(value), str(value))
        elif step == Step.TEMA:
            shown = str(draft.get("tema_nombre") or value or "")
        else:
            shown = str(value) if value else ""
        rows.append((texts.ETIQUETAS[step.value], shown or texts.SIN_DATO))
    return rows

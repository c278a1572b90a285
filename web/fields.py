"""The Anexo N° 1 fields, their limits and their checks: one submission (form or API) -> requisitos or errors.

Pure: no database, no HTTP. The single-field checks are the shared requisito validators
(``consultas.validators``) the mail and the bot use; ``check_requisitos`` then validates the whole as
it does for every channel. Keys are the public API's JSON keys; the form's inputs carry the same names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from consultas.requisitos import Requisitos, check_requisitos
from consultas.validators import (
    DOCUMENT_TYPES,
    normalize_email,
    normalize_phone,
    validate_document,
    validate_entity_name,
    validate_name_part,
    validate_question,
    validate_ruc,
)
from web.entities import EntityDirectory

#: The fields in the order of Anexo N° 1.
KEYS: Final = (
    "represents_entity",
    "document_type",
    "document_number",
    "names",
    "paternal_surname",
    "maternal_surname",
    "email",
    "entity_ruc",
    "entity_name",
    "phone",
    "tema",
    "question",
)
TEXT_KEYS: Final = tuple(key for key in KEYS if key != "represents_entity")

#: Every field's size limit (characters), checked before any validator sees the value.
MAX_CHARS: Final = {
    "document_type": 12,
    "document_number": 20,
    "names": 80,
    "paternal_surname": 80,
    "maternal_surname": 80,
    "email": 254,
    "entity_ruc": 20,
    "entity_name": 300,
    "phone": 30,
    "tema": 32,
    "question": 4000,
}

DOCUMENT_LABELS: Final = {"DNI": "DNI", "CE": "Carné de extranjería", "PASAPORTE": "Pasaporte"}
ADMINISTRATIVA: Final = "ADMINISTRATIVA"
ADMINISTRATIVA_NAME: Final = "Trámites y servicios del MEF (administrativa)"

#: What to say when a required field is empty.
MISSING_MESSAGES: Final = {
    "represents_entity": "Indique si realiza la consulta en representación de una entidad.",
    "document_type": "Elija el tipo de documento de identidad.",
    "document_number": "Escriba el número de su documento de identidad.",
    "names": "Escriba sus nombres.",
    "paternal_surname": "Escriba su apellido paterno.",
    "email": "Escriba su correo electrónico.",
    "entity_ruc": "Escriba el RUC de la entidad a la que representa.",
    "phone": "Escriba un número de celular o teléfono fijo.",
    "tema": "Elija el tema de su consulta.",
    "question": "Escriba su consulta.",
}
NOT_TEXT: Final = "Escriba este dato como texto."
NOT_BOOLEAN: Final = "Indique Sí o No."
UNKNOWN_TEMA: Final = "Elija uno de los temas de la lista."
UNKNOWN_DOCUMENT_TYPE: Final = "El tipo de documento debe ser DNI, carné de extranjería o pasaporte."
#: Requisito keys (intake) whose problem is reported on this field.
_REQUISITO_FIELD: Final = {
    "full_name": "names",
    "document_number": "document_number",
    "entity_ruc": "entity_ruc",
    "email": "email",
    "phone": "phone",
    "question": "question",
}

_CHECKS: Final[dict[str, Callable[[str], str]]] = {
    "names": validate_name_part,
    "paternal_surname": validate_name_part,
    "maternal_surname": validate_name_part,
    "email": normalize_email,
    "entity_ruc": validate_ruc,
    "entity_name": validate_entity_name,
    "phone": normalize_phone,
    "question": validate_question,
}


@dataclass
class Checked:
    """One submission checked: the normalised values, and the problems by key (empty when valid)."""

    values: dict[str, str] = field(default_factory=dict)
    represents_entity: bool | None = None
    missing: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    entity_matches: list[tuple[str, str]] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.errors

    def refuse(self, key: str, message: str, *, missing: bool = False) -> None:
        if key in self.errors:
            return
        self.errors[key] = message
        (self.missing if missing else self.invalid).append(key)

    def ordered(self) -> None:
        """Keys in form order, so the summary lists problems as the citizen reads the form."""
        self.missing.sort(key=KEYS.index)
        self.invalid.sort(key=KEYS.index)
        self.errors = {key: self.errors[key] for key in KEYS if key in self.errors}

    def requisitos(self) -> Requisitos:
        """The requisitos (5.3) of a valid submission, for admission."""
        v = self.values
        represents = self.represents_entity is True
        name = " ".join(
            part for part in (v.get("names"), v.get("paternal_surname"), v.get("maternal_surname")) if part
        )
        return Requisitos(
            full_name=name or None,
            document_type=v.get("document_type"),
            document_number=v.get("document_number"),
            entity_name=v.get("entity_name") if represents else None,
            entity_ruc=v.get("entity_ruc") if represents else None,
            email=v.get("email"),
            phone=v.get("phone"),
            question=v.get("question"),
            represents_entity=represents,
        )


def parse_boolean(value: object) -> bool | None:
    """The form's "si"/"no" or the API's true/false; None when it is neither."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return {"si": True, "sí": True, "true": True, "no": False, "false": False}.get(value.strip().lower())
    return None


def check_submission(
    raw: Mapping[str, object], *, temas: Mapping[str, str], entities: EntityDirectory | None = None
) -> Checked:
    """Check one submission's fields (any JSON values) against Anexo N° 1; never raises."""
    checked = Checked()
    _check_entity_answer(raw.get("represents_entity"), checked)
    texts = _texts(raw, checked)
    represents = checked.represents_entity is True
    _check_document(texts, checked)
    _check_values(texts, checked, represents=represents)
    if represents and entities is not None:
        _complete_entity(checked, entities)
    _check_tema(texts.get("tema"), temas, checked)
    _check_missing(texts, checked, represents=represents)
    if checked.valid:
        _check_requisitos(checked)
    checked.ordered()
    return checked


def _texts(raw: Mapping[str, object], checked: Checked) -> dict[str, str]:
    """The text fields given, stripped; a value that is not text or too long is refused."""
    texts: dict[str, str] = {}
    for key in TEXT_KEYS:
        value = raw.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            checked.refuse(key, NOT_TEXT)
        elif len(value) > MAX_CHARS[key]:
            checked.refuse(key, f"El texto es demasiado largo (máximo {MAX_CHARS[key]} caracteres).")
        elif value.strip():
            texts[key] = value.strip()
    return texts


def _check_values(texts: dict[str, str], checked: Checked, *, represents: bool) -> None:
    """Each given field through its validator (the entity's only for a citizen who represents one)."""
    for key, validator in _CHECKS.items():
        if key in checked.errors or key not in texts:
            continue
        if key in ("entity_ruc", "entity_name") and not represents:
            continue
        try:
            checked.values[key] = validator(texts[key])
        except ValueError as exc:
            checked.refuse(key, str(exc))


def _check_missing(texts: dict[str, str], checked: Checked, *, represents: bool) -> None:
    """Name each required field left out (the RUC only for a citizen who represents an entity)."""
    for key, message in MISSING_MESSAGES.items():
        if key in ("entity_ruc",) and not represents:
            continue
        given = key in texts or key in checked.values
        if key not in checked.errors and not given and key != "represents_entity":
            checked.refuse(key, message, missing=True)


def _check_entity_answer(value: object, checked: Checked) -> None:
    if value is None or value == "":
        checked.refuse("represents_entity", MISSING_MESSAGES["represents_entity"], missing=True)
        return
    checked.represents_entity = parse_boolean(value)
    if checked.represents_entity is None:
        checked.refuse("represents_entity", NOT_BOOLEAN)


def _check_document(texts: dict[str, str], checked: Checked) -> None:
    kind = texts.get("document_type", "").upper()
    if kind and kind not in DOCUMENT_TYPES:
        checked.refuse("document_type", UNKNOWN_DOCUMENT_TYPE)
        return
    if kind:
        checked.values["document_type"] = kind
    number = texts.get("document_number")
    if number is None or "document_number" in checked.errors or not kind:
        return
    try:
        _, checked.values["document_number"] = validate_document(kind, number)
    except ValueError as exc:
        checked.refuse("document_number", str(exc))


def _complete_entity(checked: Checked, entities: EntityDirectory) -> None:
    """Fill the razón social from the RUC, or the RUC from a razón social that names one entity."""
    ruc, name = checked.values.get("entity_ruc"), checked.values.get("entity_name")
    if ruc is not None:
        known = entities.name_of(ruc)
        if known is not None and name is None:
            checked.values["entity_name"] = known
        return
    if name is None or "entity_ruc" in checked.errors:
        return
    matches = entities.search(name)
    if len(matches) == 1:
        checked.values["entity_ruc"], checked.values["entity_name"] = matches[0]
    elif matches:
        checked.entity_matches = matches
        checked.refuse(
            "entity_ruc", "Varias entidades coinciden con la razón social: escriba el RUC de la suya."
        )


def _check_tema(value: str | None, temas: Mapping[str, str], checked: Checked) -> None:
    if value is None:
        return
    code = value.upper()
    if code not in temas:
        checked.refuse("tema", UNKNOWN_TEMA)
    else:
        checked.values["tema"] = code


def _check_requisitos(checked: Checked) -> None:
    """The whole through ``check_requisitos``, as for mail and the bot (it should agree)."""
    extraction = check_requisitos(checked.requisitos())
    for key in extraction.missing:
        target = _REQUISITO_FIELD[key]
        checked.refuse(target, MISSING_MESSAGES.get(target, "Complete este dato."), missing=True)
    for key in extraction.invalid:
        checked.refuse(_REQUISITO_FIELD[key], "Revise este dato: no es válido.")

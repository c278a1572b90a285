"""Single-field validators of the requisitos (directive 5.3), shared by mail, the bot and the web form.

Each returns the normalised value or raises ``ValueError`` with a Spanish, user-facing reason.
Identity numbers are checked with python-stdnum, phones with phonenumbers (region PE, E.164),
addresses with email-validator (no DNS look-up).
"""

from __future__ import annotations

import functools
import re
from typing import Final

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from stdnum.exceptions import ValidationError as StdnumValidationError
from stdnum.pe import cui, ruc

DOCUMENT_TYPES: Final = ("DNI", "CE", "PASAPORTE")

_SEPARATORS_RE = re.compile(r"[\s.\-]")


def validate_dni(value: str) -> str:
    """Return the 8-digit DNI; accept a 9th check character (digit or letter) when it is right."""
    compact = _SEPARATORS_RE.sub("", value).upper()
    if not compact.isalnum() or not compact[:8].isdigit() or len(compact) not in (8, 9):
        raise ValueError("El DNI debe tener 8 dígitos.")
    try:
        cui.validate(compact)
    except StdnumValidationError as exc:
        raise ValueError("El dígito de verificación del DNI no es correcto.") from exc
    return compact[:8]


def validate_ruc(value: str) -> str:
    """Return the 11-digit RUC after checking its type prefix and check digit."""
    compact = _SEPARATORS_RE.sub("", value)
    if not compact.isdigit() or len(compact) != 11:
        raise ValueError("El RUC debe tener 11 dígitos.")
    try:
        return str(ruc.validate(compact))
    except StdnumValidationError as exc:
        raise ValueError("El RUC no es válido: revise el número (dígito verificador).") from exc


def validate_ce(value: str) -> str:
    """Return the carné de extranjería number: exactly 9 digits (Migraciones' current format).

    Separators are dropped; leading zeros are kept because they are part of the number.
    """
    compact = _SEPARATORS_RE.sub("", value)
    if not compact.isdigit() or len(compact) != 9:
        raise ValueError("El carné de extranjería debe tener 9 dígitos.")
    return compact


def validate_pasaporte(value: str) -> str:
    """Return the passport number in capitals: 6 to 12 letters and digits, with at least one digit."""
    compact = _SEPARATORS_RE.sub("", value).upper()
    if not (compact.isascii() and compact.isalnum() and 6 <= len(compact) <= 12):
        raise ValueError("El número de pasaporte debe tener entre 6 y 12 letras o números.")
    if not any(ch.isdigit() for ch in compact):
        raise ValueError("El número de pasaporte debe contener números.")
    return compact


@functools.lru_cache(maxsize=1024)
def normalize_phone(value: str) -> str:
    """Return the phone in E.164 (``+51...``); national numbers are read as Peruvian."""
    try:
        number = phonenumbers.parse(value, "PE")
    except phonenumbers.NumberParseException as exc:
        raise ValueError("El número de teléfono no es válido.") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError("El número de teléfono no es válido.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@functools.lru_cache(maxsize=1024)
def normalize_email(value: str) -> str:
    """Return the address normalised and lowercased; no DNS look-up is made."""
    try:
        checked = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError("El correo electrónico no es válido.") from exc
    return str(checked.normalized).lower()


def validate_full_name(value: str) -> str:
    """Return the name with whitespace folded; it needs a given name and a surname, no digits."""
    name = " ".join(value.split()).strip(" ,.;:-")
    if any(ch.isdigit() for ch in name) or len(name.split()) < 2:
        raise ValueError("Indique sus nombres y apellidos completos.")
    return name


def validate_document(document_type: str | None, number: str) -> tuple[str, str]:
    """Return (type, normalised number); an unknown type is guessed from the number's shape."""
    kind = (document_type or "").strip().upper()
    if not kind:
        compact = _SEPARATORS_RE.sub("", number)
        kind = "DNI" if compact.isdigit() and len(compact) <= 8 else "PASAPORTE"
    if kind == "DNI":
        return kind, validate_dni(number)
    if kind == "CE":
        return kind, validate_ce(number)
    if kind == "PASAPORTE":
        return kind, validate_pasaporte(number)
    raise ValueError("El tipo de documento debe ser DNI, carné de extranjería o pasaporte.")


#: Field limits of the form channels (the Telegram bot, the web form and its API).
MAX_NAME: Final = 80
MAX_ENTITY_NAME: Final = 300
#: Directive 5.3 asks for a concrete description: at least this long and three real words.
MIN_QUESTION: Final = 20
MAX_QUESTION: Final = 4000

#: Names and surnames: letters (any script), spaces, apostrophes, hyphens and dots.
_NAME_PART_RE: Final = re.compile(r"^[^\W\d_]+(?:[ '’.\-]+[^\W\d_]+)*\.?$")
_CONTENT_WORD_RE: Final = re.compile(r"[^\W\d_]{3,}")


def same_document(document_type: str | None, document_number: str | None, given: str) -> bool:
    """Tell whether ``given`` is the stored document number, both normalised as intake does (the proof
    a citizen gives before the status of a consulta is shown to them)."""
    if not document_number or not given.strip():
        return False
    try:
        _, number = validate_document(document_type, given)
    except ValueError:
        number = _SEPARATORS_RE.sub("", given).upper()
    return number == _SEPARATORS_RE.sub("", document_number).upper()


def validate_name_part(value: str) -> str:
    """Return one typed name or surname with whitespace folded: letters only, at most ``MAX_NAME``."""
    folded = " ".join(value.split())
    if len(folded) > MAX_NAME:
        raise ValueError(f"El texto es demasiado largo (máximo {MAX_NAME} caracteres).")
    if not _NAME_PART_RE.match(folded):
        raise ValueError("Escriba solo letras (sin números ni símbolos).")
    return folded


def validate_entity_name(value: str) -> str:
    """Return the razón social with whitespace folded: 2 to ``MAX_ENTITY_NAME`` characters."""
    folded = " ".join(value.split())
    if len(folded) < 2:
        raise ValueError("Escriba la razón social de la entidad (al menos 2 caracteres).")
    if len(folded) > MAX_ENTITY_NAME:
        raise ValueError(f"El texto es demasiado largo (máximo {MAX_ENTITY_NAME} caracteres).")
    return folded


def validate_question(value: str) -> str:
    """Return the typed consulta stripped: a concrete description (5.3), at most ``MAX_QUESTION``."""
    text = value.strip()
    if len(text) < MIN_QUESTION or len(_CONTENT_WORD_RE.findall(text)) < 3:
        raise ValueError(
            f"La consulta es muy breve: describa en al menos {MIN_QUESTION} caracteres qué necesita saber."
        )
    if len(text) > MAX_QUESTION:
        raise ValueError(f"La consulta es muy larga (máximo {MAX_QUESTION} caracteres).")
    return text

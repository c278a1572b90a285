"""Extract and validate a consulta's requisitos (directive 5.3) from a citizen's free Spanish text.

Pure functions: `extract_requisitos` reads a mail body, `check_requisitos` validates fields already
split (the Telegram bot), `merge_requisitos` completes a consulta with the citizen's subsanación
reply. The single-field validators live in `consultas.validators`; regexes here only find candidates.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from typing import Final, TypeVar

from consultas.reply_parsing import split_reply
from consultas.validators import (
    normalize_email,
    normalize_phone,
    validate_document,
    validate_full_name,
    validate_ruc,
)

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Requisitos:
    """The requisitos of directive 5.3; every field is None when the citizen did not give it."""

    full_name: str | None = None
    document_type: str | None = None
    document_number: str | None = None
    entity_name: str | None = None
    entity_ruc: str | None = None
    email: str | None = None
    phone: str | None = None
    question: str | None = None
    represents_entity: bool = False


@dataclass(frozen=True, slots=True)
class Extraction:
    """Requisitos found, plus the required ones absent (`missing`) and the wrong ones (`invalid`)."""

    requisitos: Requisitos
    missing: tuple[str, ...] = ()
    invalid: tuple[str, ...] = ()
    #: The mail forwards someone else's consulta (an office's "RV:", "Trasladamos la consulta de
    #: ..."): its sender is not the citizen.
    forwarded: bool = False

    @property
    def complete(self) -> bool:
        """Return True when nothing is missing or invalid: the consulta can be admitted."""
        return not self.missing and not self.invalid


# --- patterns (compiled once) -----------------------------------------------------------------

_WORD = r"[A-ZÁÉÍÓÚÑÜ][A-Za-zÁÉÍÓÚÑÜáéíóúñü'´\-]+"
_NAME = rf"{_WORD}(?:\s+(?:(?:de|del|la|las|los|y)\s+)*{_WORD}){{1,6}}"
_NAME_RE = re.compile(_NAME)
_NAME_LINE_RE = re.compile(rf"^\s*({_NAME})\s*$")

#: Each prose pattern with words one of which it cannot match without (see ``_may_match``).
_PROSE_NAME_RES = (
    (re.compile(rf"(?i:mi\s+nombre\s+es|me\s+llamo)\s+({_NAME})"), ("nombre", "llamo")),
    (re.compile(rf"(?i:\byo)\s*,\s*({_NAME})\s*,"), ("yo",)),
    (re.compile(rf"(?i:\b(?:les|le)\s+escribe)\s+({_NAME})"), ("escr",)),
    (re.compile(rf"(?i:\b(?:el|la)\s+suscrit[oa])\s*,?\s*({_NAME})"), ("suscr",)),
    (
        re.compile(rf"(?i:\bsoy)\s+({_NAME})(?=\s*[,(.]|\s+(?i:identificad|con\s|de\s+nacionalidad))"),
        ("soy",),
    ),
)

#: An office forwarding a citizen's consulta: "la consulta de la administrada X, identificada con
#: DNI ...", "del ciudadano X, con DNI ...", "el señor X, quien solicita ...". Its keyword is found in
#: the lower-cased text (a case-insensitive search of five words costs ~100 us a mail), the name
#: after it in the text itself.
_OFFICE_KEYWORD_RE = re.compile(r"(?:administrad|ciudadan|usuari|recurrente|solicitante|se[ñn]or)[oa]?s?\b")
_OFFICE_NAME_RE = re.compile(
    rf"\.?\s+({_NAME})(?=\s*,?\s*(?i:identificad|con\s+(?:el\s+)?(?:DNI|D\.N\.I|documento|carn|pasaporte)"
    r"|quien\s|portador))"
)
_OFFICE_WORDS = ("identificad", "quien", "portador", "con dni", "con el dni", "con documento", "con carn")
#: The keywords as they stand before a name (with the space: "Señores" opens most mails).
_OFFICE_KEYWORDS = (
    "administrado ", "administrada ", "ciudadano ", "ciudadana ", "usuario ", "usuaria ",
    "señor ", "señora ", "senor ", "senora ", "recurrente ", "solicitante ",
)  # fmt: skip
#: A name that opens the text, before its document: "Rosa Quispe Mamani, DNI 41234567, ...".
_OPENING_NAME_RE = re.compile(
    rf"[ \t]*({_NAME})\s*[,;]\s*(?=(?i:(?:con\s+|identificad[oa]\s+con\s+)?(?:el\s+)?"
    r"(?:D\.?\s?N\.?\s?I\b|documento|carn[eé]|pasaporte|C\.E\.)))"
)
#: How many lines after the greeting may hold the opening name.
_OPENING_LINES = 2


def _office_named(text: str, folded: str) -> tuple[int, str] | None:
    """(position, name) of the citizen an office names ("la administrada X, identificada con ...")."""
    if not (_may_match(folded, _OFFICE_KEYWORDS) and _may_match(folded, _OFFICE_WORDS)):
        return None
    lowered = text.lower()
    if len(lowered) != len(text):
        return None  # "İ" lower-cases to two characters: positions would not match (rare)
    for keyword in _OFFICE_KEYWORD_RE.finditer(lowered):
        found = _OFFICE_NAME_RE.match(text, keyword.end())
        if found:
            return keyword.start(), found.group(1)
    return None


#: "N°", "Nº", "N.°", "Nro.", "número", "No." between a label and its number.
_NUMBER_INTRO = (
    r"[\s(]*(?:es\s+(?:el\s+)?)?(?:n\.?\s?[°º]|nro\.?|n[uú]m(?:ero|\.)?|no\.|#)?\s*(?:de\s+)?[:.|\-]?\s*"
)
#: A token of letters and digits with inner dots or hyphens ("12.345.678", "12345678-9").
_TOKEN = r"([0-9A-Za-z](?:[0-9A-Za-z]|[.\-](?=[0-9A-Za-z]))*)"

_DOCUMENT_RE = re.compile(
    r"(?:(?P<dni>\bD\.?\s?N\.?\s?I\b\.?|documento\s+nacional\s+de\s+identidad)"
    r"|(?P<ce>carn[eé]t?\s+de\s+extranjer[ií]a|(?-i:\bC\.\s?E\.|\bCE\b))"
    r"|(?P<pas>\bpasaporte\b))" + _NUMBER_INTRO + _TOKEN,
    re.IGNORECASE,
)
_RUC_RE = re.compile(r"\bR\.?\s?U\.?\s?C\b\.?" + _NUMBER_INTRO + _TOKEN, re.IGNORECASE)

_ROLE = (
    r"\b(?:en\s+representaci[oó]n\s+de|representante(?:\s+legal)?\s+de|represento\s+a"
    r"|trabajador(?:\(a\)|a)?\s+de|servidor(?:\(a\)|a)?(?:\s+p[uú]blic[oa])?\s+de"
    r"|funcionari[oa](?:\(a\))?\s+de|en\s+calidad\s+de\s+\w+\s+de|responsable\s+de\s+\w+\s+de"
    r"|gerente(?:\s+general)?\s+de|(?:laboro|trabajo)\s+en)\s+(?:(?:la|el|los|las)\s+)?"
)
_ENTITY_WITH_RUC_RE = re.compile(
    _ROLE + r"(?P<entity>[^\n,;()]+?)\s*,?\s*\(?\s*(?:con|identificad[ao]\s+con)?\s*(?:el\s+)?"
    r"(?:n[uú]mero\s+de\s+)?R\.?\s?U\.?\s?C\b",
    re.IGNORECASE,
)
_ENTITY_RE = re.compile(
    _ROLE + r"(?P<entity>(?-i:[A-ZÁÉÍÓÚÑ\"“])(?:[^\n,;.()]|\.(?=\S))+)",
    re.IGNORECASE,
)
#: Words one of which every ``_ROLE`` alternative contains (see ``_may_match``).
_ROLE_WORDS = ("represent", "trabaj", "serv", "func", "cal", "responsable", "gerente", "laboro")

_LABEL_SEP = r"\s*(?:[:|]|-\s)\s*"
_BULLET = r"^[ \t]*(?:[-*•·]\s*)?"
_NAME_LABEL_RE = re.compile(
    _BULLET + r"(?:nombres?\s+y\s+apellidos|apellidos\s+y\s+nombres|nombre\s+completo|nombres?"
    r"|solicitante|usuario\(?a?\)?)" + _LABEL_SEP + r"(?P<value>[^\n|]+)",
    re.IGNORECASE | re.MULTILINE,
)
_ENTITY_LABEL_RE = re.compile(
    _BULLET + r"(?:entidad(?:\s+a\s+la\s+que\s+representa)?|raz[oó]n\s+social|instituci[oó]n"
    r"|empresa|nombre\s+de\s+la\s+entidad)" + _LABEL_SEP + r"(?P<value>[^\n|]+)",
    re.IGNORECASE | re.MULTILINE,
)
_QUESTION_LABEL_RE = re.compile(
    _BULLET + r"(?:consulta|pregunta|descripci[oó]n(?:\s+de\s+la\s+consulta)?"
    r"|detalle(?:\s+de\s+la\s+consulta)?)" + _LABEL_SEP + r"(?P<value>[^\n]+)",
    re.IGNORECASE | re.MULTILINE,
)
_EMAIL_LABEL_RE = re.compile(
    r"(?:correo(?:\s+electr[oó]nico)?|e-?mail)\b[^@\n]{0,40}?"
    r"(?P<value>[^\s<>()\[\],;:\"'|]+@[^\s<>()\[\],;:\"'|]+)",
    re.IGNORECASE,
)
#: A phone is a number run preceded, on its line and within 40 characters, by one of these words.
#: Numbers are rare in a mail, so we find them first and look back (5x faster than one regex).
_PHONE_VALUE_RE = re.compile(r"\+?\(?\d[\d \t().\-]{2,18}\d")
_PHONE_KEYWORD_RE = re.compile(
    r"(?:tel[eé]fono|telf\b\.?|\btel\b\.?|celular|\bcel\b\.?|m[oó]vil|whats?app"
    r"|n[uú]mero\s+de\s+contacto|ll[aá]marme|comunicarse)[^\d\n+]{0,40}$",
    re.IGNORECASE,
)
_PHONE_PIECE_RE = re.compile(r"\+?\d[\d\-.]{5,}\d")
_MOBILE_RE = re.compile(r"(?<![\d+])(?:\+?51[ \t\-]?)?9\d{2}[ \t\-]?\d{3}[ \t\-]?\d{3}(?!\d)")

_FORWARD_SUBJECT_RE = re.compile(r"^\s*(?:rv|fw|fwd|reenv(?:iado|io)?)\s*:", re.IGNORECASE)
_HEADER_LINE_RE = re.compile(
    r"^\s*(?:-{3,}.*(?:forwarded|reenviado|original).*|(?:de|from|enviado(?:\s+el)?|sent|para|to|cc"
    r"|asunto|subject|fecha|date)\s*:.*)$",
    re.IGNORECASE,
)
#: An office writing to pass on a citizen's consulta ("Trasladamos la consulta de la administrada").
_FORWARD_PROSE_RE = re.compile(
    r"\b(?:(?:se\s+)?(?:traslad|remit|deriv|reenv[ií])(?:amos|imos|o|a|e)|hacemos\s+llegar|hago\s+llegar)"
    r"\s+(?:a\s+(?:su|ustedes)\s+(?:\w+\s+)?)?(?:la|el|su)\s+(?:consulta|pedido|solicitud|correo|requerimiento)"
    r"\s+(?:\w+\s+){0,3}?(?:de|del)\s",
    re.IGNORECASE,
)
_PASS_ON_WORDS = ("traslad", "remit", "deriv", "reenv", "llegar")
#: The quoted From line of a forwarded mail ("De: Rosa Quispe <rosa@...>", "From: ...").
_FORWARDED_FROM_RE = re.compile(
    r"^[ \t>]*\*?(?:De|From|Von)\s*:\*?[ \t]*(?P<name>[^<\n]*?)[ \t]*[<\[](?:mailto:)?"
    r"(?P<address>[^\s<>@\[\]]+@[^\s<>\[\]]+)[>\]]",
    re.IGNORECASE | re.MULTILINE,
)
_GREETING_RE = re.compile(
    r"^(?:señor|señora|sres?\b|srta|estimad|buen[oa]s|de\s+mi\s+(?:mayor\s+)?consideraci|a\s+quien"
    r"|hola|saludos|cordial(?:es)?\s+saludos?|presente|atenci[oó]n\s*:|ministerio|mef\b)",
    re.IGNORECASE,
)
_CLOSING_RE = re.compile(
    r"^(?:atentamente|saludos|cordialmente|muchas\s+gracias|gracias|quedo\s+(?:atent|a\s+la\s+espera)"
    r"|agradezco|agradecer[ée]\s+(?:de\s+antemano|su\s+atenci)|un\s+(?:cordial\s+)?saludo|slds|--\s*$"
    r"|enviado\s+desde|sent\s+from|get\s+outlook|obtener\s+outlook"
    r"|(?:best|kind|warm)\s+regards|regards|sincerely|thanks|thank\s+you"
    r"|mit\s+freundlichen\s+gr(?:ü|ue)(?:ß|ss)en|viele\s+gr(?:ü|ue)(?:ß|ss)e|s\s+pozdravem)",
    re.IGNORECASE,
)
_REQUISITO_LINE_RE = re.compile(
    _BULLET + r"(?:nombres?|apellidos|d\.?n\.?i|documento|carn[eé]t?|pasaporte|correo|e-?mail|tel[eé]f"
    r"|telf|celular|m[oó]vil|whats?app|r\.?u\.?c|entidad|raz[oó]n\s+social|instituci[oó]n|empresa"
    r"|direcci[oó]n|domicilio|cargo)[^:|\n]{0,30}[:|]",
    re.IGNORECASE,
)
_SENTENCE_SPLIT_RE = re.compile(r"(?<=[.!?])\s+(?=[¿¡\"“(A-ZÁÉÍÓÚÑ])")
_INTRO_SENTENCE_RE = re.compile(
    r"(?:^|[\s,;:])(?i:mi\s+nombre\s+es|me\s+llamo|yo\s*,|(?:les|le)\s+escribe|(?:el|la)\s+suscrit)"
    r"|(?:^|[\s,;:])(?i:soy)\s+[A-ZÁÉÍÓÚÑ]"
)
_TRAILING_LABEL_RE = re.compile(
    r"[\s,;:]*(?:y\s+)?(?:mi\s+)?(?:n[uú]mero\s+de\s+)?(?:d\.?n\.?i|documento|tel[eé]fono|celular|r\.?u\.?c"
    r"|carn[eé]t?|pasaporte)\b[^.?!]*$",
    re.IGNORECASE,
)
#: A content word: three letters of Latin (ä, ß, č...), Greek, Cyrillic, Hebrew or Arabic; CJK, kana
#: and hangul, written without spaces, count one word per two characters. Ranges, not ``[^\W\d_]``:
#: that class is seven times slower to scan.
_CONTENT_WORD_RE = re.compile(
    r"[A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u0370-\u03ff\u0400-\u052f\u0590-\u06ff]{3,}"
    r"|[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]{2}"
)


# --- extraction ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Found:
    """Raw values as written, before validation, and the text pieces to leave out of the question."""

    full_name: str | None = None
    document_type: str | None = None
    document_number: str | None = None
    entity_name: str | None = None
    entity_ruc: str | None = None
    email: str | None = None
    phone: str | None = None
    question: str | None = None
    represents_entity: bool = False


def _split_fresh(text: str, subject: str) -> tuple[str, str]:
    """Split a reply into what the citizen wrote now and the quoted history; forwards stay whole.

    The quote stripping is the one of Red replies (``consultas.reply_parsing.split_reply``): top-
    and bottom-posted answers alike.
    """
    if _FORWARD_SUBJECT_RE.match(subject):
        # A forward carries the consulta itself in the "quoted" part.
        return text, ""
    split = split_reply(text)
    return split.fresh, split.quoted


def _passed_on(text: str) -> bool:
    """Whether the text is an office passing on someone's consulta ("Trasladamos la consulta de")."""
    folded = _casefold(text)
    if "consulta" not in folded or not any(word in folded for word in _PASS_ON_WORDS):
        return False
    return _FORWARD_PROSE_RE.search(text) is not None


def _forwarded_sender(text: str, own: str) -> tuple[str, str] | None:
    """(display name, address) of the first quoted From line not from ``own``, the forwarder."""
    for match in _FORWARDED_FROM_RE.finditer(text):
        address = match.group("address").strip().rstrip(".").lower()
        if address != own.lower():
            return " ".join(match.group("name").split()).strip("\"' "), address
    return None


def _forwarded_body(text: str) -> str | None:
    """The text of the forwarded mail: what follows the header block of its quoted From line."""
    match = _FORWARDED_FROM_RE.search(text)
    if match is None:
        return None
    blank = re.compile(r"\n[ \t>]*\n").search(text, match.end())
    return text[blank.end() :] if blank else None


def _display_name(name: str) -> str:
    """A From display name as a full name: Outlook's "Apellidos, Nombres" turned around."""
    surname, comma, given = name.partition(",")
    if comma and given.strip() and "," not in given and surname.strip():
        return f"{given.strip()} {surname.strip()}"
    return name


@lru_cache(maxsize=4)
def _casefold(text: str) -> str:
    """``text.casefold()``, computed once for the several look-ups of one mail's text."""
    return text.casefold()


def _may_match(folded: str, words: tuple[str, ...]) -> bool:
    """Whether ``folded`` (a text's ``casefold()``) holds one of ``words``, which a pattern needs.

    A quick test before a slow case-insensitive search (a literal it must match lets ``re`` skip
    nothing under IGNORECASE, so it tries every position). The words are lower case and have no
    "i": ``casefold`` maps every character IGNORECASE equates with the other letters ("ſ" to "s",
    the Kelvin sign to "k"), but not "ı" and "İ", which IGNORECASE equates with "i".
    """
    return any(word in folded for word in words)


def _first_name(text: str) -> str | None:
    for label in _NAME_LABEL_RE.finditer(text):
        value = " ".join(label.group("value").split()).strip(" ,.;")
        if value and any(ch.isalpha() for ch in value):
            return value
    folded = _casefold(text)
    best = _office_named(text, folded)
    for pattern, words in _PROSE_NAME_RES:
        if not _may_match(folded, words):
            continue
        prose = pattern.search(text)
        if prose and (best is None or prose.start() < best[0]):
            best = (prose.start(), prose.group(1))
    if best is None:
        # Last: "Soy X, DNI ..." also opens a line, and "Soy" is no name.
        best = _opening_name(text)
    return best[1] if best else None


def _opening_name(text: str) -> tuple[int, str] | None:
    """(position, name) when one of the first lines after the greeting opens with "Name, DNI ..."."""
    position, tried = 0, 0
    for line in text.split("\n", 12):
        stripped = line.strip()
        if stripped and not (len(stripped) <= 60 and _GREETING_RE.match(stripped)):
            found = _OPENING_NAME_RE.match(line)
            if found:
                return position, found.group(1)
            tried += 1
            if tried == _OPENING_LINES:
                return None
        position += len(line) + 1
    return None


def _signature_name(text: str) -> str | None:
    """Return the first name-shaped line after a closing line ("Atentamente,")."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if index and len(line) <= 60 and _CLOSING_RE.match(line.strip()):
            for after in lines[index + 1 : index + 4]:
                found = _NAME_LINE_RE.match(after)
                if found:
                    return found.group(1)
    return None


def _document(text: str) -> tuple[str, str] | None:
    for match in _DOCUMENT_RE.finditer(text):
        token = match.group(match.lastindex or 0)
        if not any(ch.isdigit() for ch in token):
            continue  # "DNI vigente", "pasaporte peruano": a mention without the number
        kind = "DNI" if match.group("dni") else "CE" if match.group("ce") else "PASAPORTE"
        return kind, token
    return None


def _entity(text: str) -> str | None:
    # Most specific first: a role followed by "con RUC", then an "Entidad:" line, then a bare role.
    folded = _casefold(text)
    patterns: tuple[re.Pattern[str], ...]
    if not _may_match(folded, _ROLE_WORDS):  # neither role pattern can match
        patterns = (_ENTITY_LABEL_RE,)
    elif "ruc" in folded:
        patterns = (_ENTITY_WITH_RUC_RE, _ENTITY_LABEL_RE, _ENTITY_RE)
    else:
        patterns = (_ENTITY_LABEL_RE, _ENTITY_RE)
    for pattern in patterns:
        found = pattern.search(text)
        if found:
            value = " ".join(found.group(found.lastindex or 0).split()).strip(" ,;")
            if value:
                return value
    return None


def _ruc(text: str) -> str | None:
    for match in _RUC_RE.finditer(text):
        token = match.group(1)
        if any(ch.isdigit() for ch in token):
            return token
    return None


def _phone(text: str, exclude: str | None) -> str | None:
    labelled = next(
        (
            number
            for number in _PHONE_VALUE_RE.finditer(text)
            if _PHONE_KEYWORD_RE.search(text, max(0, number.start() - 80), number.start())
        ),
        None,
    )
    if labelled:
        value = labelled.group(0).strip()
        try:
            normalize_phone(value)
        except ValueError:
            # Two numbers on one line ("987654321 / 01 4567890"): try each piece.
            for piece in _PHONE_PIECE_RE.findall(value):
                try:
                    normalize_phone(piece)
                except ValueError:
                    continue
                return str(piece)
        return value
    for mobile in _MOBILE_RE.finditer(text):
        digits = re.sub(r"\D", "", mobile.group(0))
        if exclude is None or digits != re.sub(r"\D", "", exclude):
            return mobile.group(0)
    return None


def _has_words(text: str, count: int = 3) -> bool:
    """Whether ``text`` holds ``count`` content words (stops at the ``count``-th, lists none)."""
    return len(list(itertools.islice(_CONTENT_WORD_RE.finditer(text), count))) == count


def _without_requisitos(sentence: str, drop: tuple[str, ...]) -> str | None:
    """Return the part of a sentence that is not self-introduction or requisitos, or None."""
    spans = [(i, i + len(p)) for p in drop if p and (i := sentence.find(p)) >= 0]
    if spans:
        before = sentence[: min(start for start, _ in spans)]
        after = sentence[max(end for _, end in spans) :].lstrip(" ,;:.)-")
        if _has_words(after):
            # "Yo, X, con DNI 123, consulto si ...": the consulta follows the introduction.
            sentence = after[0].upper() + after[1:]
        elif not _INTRO_SENTENCE_RE.search(before) and _has_words(before):
            # "... a donde debo reclamar? mi dni es 123": the requisito trails the consulta.
            sentence = _TRAILING_LABEL_RE.sub("", before).strip()
        else:
            return None
    if _INTRO_SENTENCE_RE.search(sentence) or not sentence.strip(" _-=*.,;:"):
        return None
    return sentence


def _question(text: str, labelled: str | None, drop: tuple[str, ...]) -> str | None:
    """Return the body without greeting, signature, requisitos lines and self-introduction."""
    if labelled and _has_words(labelled):
        return " ".join(labelled.split())
    lines = [line.strip() for line in text.splitlines()]
    kept: list[str] = []
    content = False  # a non-empty line is kept (tracked: testing ``kept`` per line is quadratic)
    for line in lines:
        if content and len(line) <= 60 and _CLOSING_RE.match(line):
            break
        if not content and line and len(line) <= 30 and _CLOSING_RE.match(line):
            break  # "Atentamente," right after the greeting: a signature, no question before it
        if not content and (not line or (len(line) <= 60 and _GREETING_RE.match(line))):
            continue
        if len(line) <= 40 and line.endswith((":", ",")) and _GREETING_RE.match(line):
            continue  # "Estimados:" opening a forwarded mail
        if _HEADER_LINE_RE.match(line) or _REQUISITO_LINE_RE.match(line):
            continue
        kept.append(line)
        content = content or bool(line)
    paragraphs: list[str] = []
    for block in "\n".join(kept).split("\n\n"):
        sentences = [
            kept_part
            for sentence in _SENTENCE_SPLIT_RE.split(" ".join(block.split()))
            if (kept_part := _without_requisitos(sentence, drop))
        ]
        if sentences:
            paragraphs.append(" ".join(sentences))
    question = "\n\n".join(paragraphs).strip()
    if not _has_words(question):
        return None  # empty, or only "Buenos días" / "Gracias": not a concrete consulta (5.3)
    return question


def _labelled_question(text: str) -> str | None:
    found = _QUESTION_LABEL_RE.search(text)
    return found.group("value") if found else None


def _find(text: str, *, sender: str, sender_name: str, subject: str) -> tuple[_Found, bool]:
    fresh, quoted = _split_fresh(text, subject)
    fresh, sender, sender_name, forwarded = _unforward(text, fresh, sender, sender_name, subject)
    sources = (fresh, quoted) if quoted else (fresh,)
    found = _Found()
    found.full_name = _first_of(sources, _first_name) or _first_of(sources, _signature_name)
    if not found.full_name and sender_name and "@" not in sender_name:
        found.full_name = _display_name(sender_name)
    document = _first_of(sources, _document)
    if document:
        found.document_type, found.document_number = document
    found.entity_ruc = _first_of(sources, _ruc)
    found.entity_name = _first_of(sources, _entity)
    found.represents_entity = bool(found.entity_name or found.entity_ruc)
    found.email = _first_of(sources, _labelled_email) or sender or None
    found.phone = _first_of(sources, lambda source: _phone(source, found.document_number))
    labelled_question = _first_of(sources, _labelled_question)
    drop = tuple(
        piece for piece in (found.document_number, found.phone, found.entity_ruc) if piece is not None
    )
    # Never from the quoted history: that is our own earlier mail (or theirs, already registered).
    found.question = _question(fresh, labelled_question, drop)
    return found, forwarded


def _unforward(
    text: str, fresh: str, sender: str, sender_name: str, subject: str
) -> tuple[str, str, str, bool]:
    """The fresh text, sender and sender name a forwarded consulta is really from; and whether it was."""
    passed_on = _passed_on(fresh)
    inner = _forwarded_sender(text, sender) if passed_on or _FORWARD_SUBJECT_RE.match(subject) else None
    if inner is not None:
        # A forwarded mail: its quoted From is the citizen, not the office that forwards it, and
        # the consulta is the forwarded text, not the office's cover note.
        inner_name, inner_sender = inner
        return _forwarded_body(fresh) or fresh, inner_sender, inner_name, True
    if passed_on:
        # "Trasladamos la consulta de ...": the name is in the text, never the office's From name;
        # the office's address stays the contact when the text gives none.
        return fresh, sender, "", True
    return fresh, sender, sender_name, False


def _first_of(sources: tuple[str, ...], getter: Callable[[str], _T | None]) -> _T | None:
    """The first source's value that is found (the fresh text before the quoted history)."""
    for source in sources:
        value = getter(source)
        if value:
            return value
    return None


def _labelled_email(source: str) -> str | None:
    labelled = _EMAIL_LABEL_RE.search(source)
    return labelled.group("value").rstrip(".") if labelled else None


def extract_requisitos(text: str, *, sender: str, sender_name: str, subject: str) -> Extraction:
    """Find the requisitos in a mail body and validate them; never raises on odd text."""
    found, forwarded = _find(text, sender=sender, sender_name=sender_name, subject=subject)
    raw = Requisitos(**{f.name: getattr(found, f.name) for f in fields(Requisitos)})
    checked = check_requisitos(raw)
    return replace(checked, forwarded=True) if forwarded else checked


# --- validation of split fields --------------------------------------------------------------


def _checked_fields(req: Requisitos) -> tuple[dict[str, str | None], set[str]]:
    """Validate each present field; return normalised values (raw when invalid) and invalid keys."""
    values: dict[str, str | None] = {
        "full_name": req.full_name,
        "document_type": req.document_type,
        "document_number": req.document_number,
        "entity_name": req.entity_name,
        "entity_ruc": req.entity_ruc,
        "email": req.email,
        "phone": req.phone,
        "question": req.question,
    }
    invalid: set[str] = set()
    for key in ("full_name", "entity_name", "question"):
        value = values[key]
        if value is not None:
            values[key] = value.strip() or None
    if values["full_name"] is not None:
        try:
            values["full_name"] = validate_full_name(values["full_name"])
        except ValueError:
            invalid.add("full_name")
    if req.document_number is not None and req.document_number.strip():
        try:
            values["document_type"], values["document_number"] = validate_document(
                req.document_type, req.document_number
            )
        except ValueError:
            invalid.add("document_number")
    else:
        values["document_number"] = None
    validators = (("entity_ruc", validate_ruc), ("email", normalize_email), ("phone", normalize_phone))
    for key, validator in validators:
        value = values[key]
        if value is None or not value.strip():
            values[key] = None
            continue
        try:
            values[key] = validator(value)
        except ValueError:
            invalid.add(key)
    return values, invalid


def _requisitos_from(values: dict[str, str | None], *, represents_entity: bool) -> Requisitos:
    return Requisitos(
        full_name=values["full_name"],
        document_type=values["document_type"],
        document_number=values["document_number"],
        entity_name=values["entity_name"],
        entity_ruc=values["entity_ruc"],
        email=values["email"],
        phone=values["phone"],
        question=values["question"],
        represents_entity=represents_entity,
    )


_REQUIRED: Final = ("full_name", "document_number", "entity_ruc", "email", "phone", "question")


def check_requisitos(req: Requisitos) -> Extraction:
    """Validate and normalise requisitos already split into fields (the Telegram bot's form)."""
    values, invalid = _checked_fields(req)
    represents = req.represents_entity or bool(values["entity_name"] or values["entity_ruc"])
    missing = tuple(key for key in _REQUIRED if values[key] is None and (key != "entity_ruc" or represents))
    normalised = _requisitos_from(values, represents_entity=represents)
    return Extraction(
        requisitos=normalised,
        missing=missing,
        invalid=tuple(key for key in _REQUIRED if key in invalid),
    )


def merge_requisitos(old: Requisitos, new: Requisitos) -> Requisitos:
    """Complete a consulta's requisitos with the citizen's subsanación reply; new valid values win."""
    old_values, old_invalid = _checked_fields(old)
    new_values, new_invalid = _checked_fields(new)
    merged: dict[str, str | None] = {}
    for key in old_values:
        if key == "document_type":
            continue
        new_value, old_value = new_values[key], old_values[key]
        if new_value is not None and key not in new_invalid:
            merged[key] = new_value
        elif old_value is not None and key not in old_invalid:
            merged[key] = old_value
        else:
            merged[key] = new_value if new_value is not None else old_value
    # The type travels with the number it describes.
    merged["document_type"] = (
        new_values["document_type"]
        if merged["document_number"] == new_values["document_number"]
        else old_values["document_type"]
    )
    return _requisitos_from(merged, represents_entity=old.represents_entity or new.represents_entity)

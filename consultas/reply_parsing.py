"""Read a Red member's (or OGDAU's) reply: strip quoted history and find the Red commands.

Owns ``split_reply``/``strip_reply`` (keep only the new answer; also used for citizens' answers
to a subsanación, ``consultas.requisitos``) and ``parse_red_commands`` (the ``#derivar``,
``#administrativa`` and ``#nota`` lines at the top). Matching the reply to its consulta and
checking its sender is left to ``routing.replies``.

Why our own rules and not mail-parser-reply: evaluated on ``tests/fixtures/replies`` (v1.3x),
mail-parser-reply got 4 of 14 samples right. Its Spanish "escribió" header regex needs two
spaces before "escribió", so no Gmail, Apple Mail or Thunderbird Spanish header matched;
"-----Mensaje original-----" and Outlook's "Enviado el:" blocks without a separator line were
kept; mobile footers before an English header were kept; and its signature rule cuts at any
line starting with "- ", which would drop the hyphen lists Red members write in answers.
The rules below are line-based, small and cover every client sample we have; a new client
gets a sample and a rule.

What is removed: everything from the first quoted-history header on (Gmail, Apple Mail,
Thunderbird "El/On ... escribió/wrote:", German "Am ... schrieb ...:", possibly wrapped over three
lines; Outlook
"-----Mensaje original-----"/"-----Original Message-----", the "____" separator, and "De:/From:"
header blocks), ">"-quoted lines, a "-- " signature, mobile footers ("Enviado desde mi iPhone",
"Obtener Outlook para Android"...) and confidentiality disclaimers. What is kept: the human
closing and name ("Atentamente, Giovanna Rengifo"), because the answer the citizen receives is
signed by the person who gave it; and, when nothing was written above an attribution line, the
text below its ">" quoted block (a bottom-posted reply).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WROTE_START = re.compile(r"^\s*(?:El|On|Am|Le)\s", re.IGNORECASE)
#: Attribution lines: Spanish/English "El/On <date> <who> escribió/wrote:", German "Am <date> schrieb
#: <who>:", French "Le <date> <who> a écrit :".
_WROTE_HEADER = re.compile(
    r"^\s*(?:(?:El|On)\s.*\d.*\s(?:escribió|escribio|wrote)|Am\s.*\d.*\sschrieb\s.*|Le\s.*\d.*\sa\s+écrit)"
    r"\s*:\s*$",
    re.IGNORECASE,
)
_WROTE_VERBS = ("escrib", "wrote", "schrieb", "écrit", "ESCRIB", "WROTE", "Escrib", "Wrote")
#: Gmail wraps a long "El ... escribió:" line; look at up to this many lines joined.
_WROTE_MAX_LINES = 3
_SEPARATOR = re.compile(
    r"^\s*-{3,}\s*(?:mensaje original|original message|mensaje reenviado|forwarded message"
    r"|ursprüngliche nachricht|weitergeleitete nachricht)\s*-{3,}\s*$",
    re.IGNORECASE,
)
_UNDERSCORES = re.compile(r"^\s*_{20,}\s*$")
_HEADER_FROM = re.compile(r"^\s*\*?(?:De|From|Von)\s*:\*?\s", re.IGNORECASE)
_HEADER_OTHER = re.compile(
    r"^\s*\*?(?:Enviado el|Enviado|Sent|Fecha|Date|Datum|Gesendet|Para|To|An|Asunto|Subject|Betreff|CC)\s*:",
    re.IGNORECASE,
)
_MOBILE_FOOTER = re.compile(
    r"^\s*(?:Enviado desde mi .+|Sent from my .+|Von meinem .+ gesendet|Obtener Outlook para (?:Android|iOS)"
    r"|Get Outlook for (?:Android|iOS)|Enviado desde Outlook.*|Descargar Outlook para .+)\s*$",
    re.IGNORECASE,
)
#: RFC 3676 signature separator "-- " (some clients drop the trailing space).
_SIGNATURE = re.compile(r"^--\s?$")
_DISCLAIMER = re.compile(
    r"^\s*(?:AVISO DE CONFIDENCIALIDAD|AVISO LEGAL|CONFIDENTIALITY NOTICE|CONFIDENCIALIDAD)\s*:",
    re.IGNORECASE,
)
_QUOTED = re.compile(r"^\s*>")
#: Every history layout, signature and footer above needs a line starting like this or one of the
#: words below (an attribution line needs its verb): most mails have neither, and then nothing is
#: looked at line by line (a few microseconds instead of ~30 regular expressions per line).
_ANY_LINE_MARKER = re.compile(
    r"^[ \t]*(?:>|\*?(?:De|From|Von)\s*:|-{2,}|_{20,})", re.IGNORECASE | re.MULTILINE
)
_ANY_WORD_MARKER = (
    "escribió",
    "escribio",
    "wrote",
    "schrieb",
    "a écrit",
    "enviado desde",
    "sent from",
    "outlook",
    "gesendet",
    "confidencialidad",
    "confidential",
    "aviso legal",
)


def _may_have_history(text: str) -> bool:
    if _ANY_LINE_MARKER.search(text):
        return True
    folded = text.casefold()
    return any(word in folded for word in _ANY_WORD_MARKER)


@dataclass(frozen=True)
class SplitReply:
    """A reply cut in two: what its author wrote now, and the quoted history (with attributions)."""

    fresh: str
    quoted: str


def strip_reply(text: str) -> str:
    """Return only the new text of a reply: no quoted history, signature or client footer."""
    return split_reply(text).fresh


def split_reply(text: str) -> SplitReply:
    """Split a reply into its new text and its quoted history, top-posted or bottom-posted.

    The one implementation for Red replies and for citizens' answers to a subsanación. Top-posted
    (the usual): the new text is above the first history header. Bottom-posted (nothing above the
    header, the answer below a ">" quoted block, as after "El lun., 2 dic. 2024 a las 10:00, ...
    escribió:", "On ... wrote:" or "Am ... schrieb ...:"): the new text is what follows the quote,
    itself split again (it may end with its own signature).
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not _may_have_history(text):
        return SplitReply(text.strip(), "")
    lines = text.split("\n")
    end, header_lines = _history_start(lines)
    above, footer = _clean(lines[:end])
    if above or end == len(lines) or header_lines == 0:
        return SplitReply(above, "\n".join([*footer, *lines[end:]]).strip("\n"))
    below = _after_quote(lines, end + header_lines)
    if below is None:
        return SplitReply("", "\n".join(lines[end:]).strip("\n"))
    rest = split_reply("\n".join(lines[below:]))
    quoted = "\n".join(lines[end:below]).strip("\n")
    return SplitReply(rest.fresh, "\n".join(part for part in (quoted, rest.quoted) if part))


def _clean(lines: list[str]) -> tuple[str, list[str]]:
    """The new text of ``lines`` (no inline quotes, cut at a signature or footer) and what was cut."""
    kept: list[str] = []
    for index, line in enumerate(lines):
        if _SIGNATURE.match(line) or _DISCLAIMER.match(line) or _MOBILE_FOOTER.match(line):
            return "\n".join(kept).strip("\n").strip(), lines[index:]
        if _QUOTED.match(line):
            # Inline quotes between answer paragraphs: drop the quote, keep the answer.
            continue
        kept.append(line.rstrip())
    return "\n".join(kept).strip("\n").strip(), []


def _after_quote(lines: list[str], start: int) -> int | None:
    """Index of the first unquoted, non-blank line after the ">" block starting at ``start``."""
    seen_quote = False
    for index in range(start, len(lines)):
        line = lines[index]
        if _QUOTED.match(line):
            seen_quote = True
        elif line.strip() and seen_quote:
            return index
        elif line.strip():
            return None  # an attribution followed by unquoted text: history to the end (Outlook)
    return None


def _history_start(lines: list[str]) -> tuple[int, int]:
    """(index of the first history header, its length in lines when it is an attribution, else 0)."""
    for index, line in enumerate(lines):
        if _SEPARATOR.match(line):
            return index, 0
        if _UNDERSCORES.match(line) and _header_block_at(lines, index + 1):
            return index, 0
        if _header_block_at(lines, index):
            return index, 0
        if _WROTE_START.match(line.lstrip("> ")):
            for size in range(1, _WROTE_MAX_LINES + 1):
                window = " ".join(part.lstrip("> ").strip() for part in lines[index : index + size])
                # The verb first: most lines starting "El ..." are prose, and the pattern is slow on them.
                if any(verb in window for verb in _WROTE_VERBS) and _WROTE_HEADER.match(window):
                    return index, size
    return len(lines), 0


def _header_block_at(lines: list[str], index: int) -> bool:
    """True when a "De:/From:" line starts at ``index`` and another header follows it closely."""
    if index >= len(lines) or not _HEADER_FROM.match(lines[index]):
        return False
    return any(_HEADER_OTHER.match(line) for line in lines[index + 1 : index + 4])


@dataclass(frozen=True)
class RedCommands:
    """The commands at the top of a Red reply, and the answer without them.

    ``unknown`` holds top lines that look like commands (``#palabra``) but are not known or are
    malformed (``#derivar`` without a code, a second ``#derivar``): they are never sent to the
    citizen; the caller tells the Red member.
    """

    derivar: str | None
    administrativa: bool
    notas: tuple[str, ...]
    body: str
    unknown: tuple[str, ...] = ()


_COMMAND = re.compile(r"^#(?P<space>\s?)(?P<word>[a-záéíóúñ]+)\b:?\s*(?P<rest>.*)$", re.IGNORECASE)
_KNOWN = frozenset({"derivar", "administrativa", "nota"})
_ORGANO_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


def parse_red_commands(text: str) -> RedCommands:
    """Read the leading ``#`` lines of a stripped reply (case-insensitive command words).

    Commands: ``#derivar CODE`` (send on to another organo), ``#administrativa`` (back to
    OGDAU), ``#nota text`` (internal note, one per line, never sent to the citizen). Parsing
    stops at the first line that is neither blank nor ``#word``: a "#" later in the answer,
    or "#1" / "# Respuesta" at the top, is ordinary text. An unknown ``#word`` at the top
    (a typo such as ``#derviar``) goes to ``unknown``, never to the body.
    """
    lines = text.replace("\r\n", "\n").split("\n")
    derivar: str | None = None
    administrativa = False
    notas: list[str] = []
    unknown: list[str] = []
    index = 0
    for index, line in enumerate(lines):  # noqa: B007 - index is used after the loop
        stripped = line.strip()
        if not stripped:
            continue
        match = _COMMAND.match(stripped)
        if match is None or (match["space"] and match["word"].lower() not in _KNOWN):
            # "# Respuesta" reads like a heading, not a mistyped command: it is answer text.
            break
        word, rest = match["word"].lower(), match["rest"].strip()
        if word == "derivar" and derivar is None and _ORGANO_CODE.match(rest):
            derivar = rest.upper()
        elif word == "administrativa" and not rest:
            administrativa = True
        elif word == "nota" and rest:
            notas.append(rest)
        else:
            unknown.append(stripped)
    else:
        index = len(lines)
    body = "\n".join(lines[index:]).strip()
    return RedCommands(derivar, administrativa, tuple(notas), body, tuple(unknown))

"""Stripping Red replies from every mail client we have samples of, and the Red commands."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from consultas.reply_parsing import RedCommands, parse_red_commands, split_reply, strip_reply

REPLIES = Path(__file__).resolve().parent / "fixtures" / "replies"
SAMPLES = sorted(
    path
    for path in REPLIES.iterdir()
    if path.suffix in {".txt", ".eml"} and not path.name.endswith(".expected.txt")
)


def _body(path: Path) -> str:
    if path.suffix == ".txt":
        return path.read_text(encoding="utf-8")
    message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(message, EmailMessage)
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def test_there_are_samples_of_every_client() -> None:
    names = " ".join(path.name for path in SAMPLES)

    for client in (
        "gmail_es",
        "gmail_en",
        "outlook_es",
        "outlook_en",
        "apple_mail",
        "thunderbird",
        "outlook_mobile",
    ):
        assert client in names
    assert any(path.suffix == ".eml" for path in SAMPLES)
    for bottom_posted in ("gmail_es_bottom", "gmail_en_bottom", "thunderbird_de_bottom"):
        assert bottom_posted in names


def test_a_bottom_posted_reply_keeps_the_history_apart_and_the_answer_below_it() -> None:
    text = (REPLIES / "gmail_es_bottom_posted.txt").read_text(encoding="utf-8")

    split = split_reply(text)

    assert split.fresh.startswith("Estimado José:")
    assert split.quoted.startswith("El mié., 12 mar. 2025 a las 10:05")
    assert "> ¿Cómo registro el formato 12-B" in split.quoted
    assert "Estimado José" not in split.quoted


def test_an_attribution_followed_by_unquoted_history_is_history_to_the_end() -> None:
    # Outlook-style: nothing quoted with ">", so nothing below it can be an answer.
    text = "On Wed, Mar 12, 2025 at 10:05 AM Consultas MEF <c@mef.gob.pe> wrote:\nConsulta asignada\n"

    assert strip_reply(text) == ""


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda path: path.name)
def test_reply_is_stripped_to_the_answer(sample: Path) -> None:
    expected = sample.with_name(sample.stem + ".expected.txt").read_text(encoding="utf-8").strip()

    answer = strip_reply(_body(sample))

    assert answer == expected
    assert "CONS-2025" not in answer
    assert "@mef.gob.pe" not in answer


def test_crlf_line_endings_are_handled() -> None:
    text = "Respuesta.\r\n\r\n-----Original Message-----\r\nFrom: a@b.pe\r\nSent: hoy\r\n"

    assert strip_reply(text) == "Respuesta."


def test_hyphen_lists_and_single_de_lines_in_the_answer_are_kept() -> None:
    text = "Pasos:\n- uno\n- dos\nDe: acuerdo con la norma, procede.\n\nSaludos,\nAna"

    assert strip_reply(text) == text


def test_inline_quotes_are_dropped_but_answers_between_them_kept() -> None:
    text = "> ¿Primera pregunta?\nPrimera respuesta.\n> ¿Segunda?\nSegunda respuesta."

    assert strip_reply(text) == "Primera respuesta.\nSegunda respuesta."


def test_reply_with_only_quoted_history_is_empty() -> None:
    text = "\n\nOn Mon, Mar 3, 2025 at 10:15 AM Consultas MEF <c@mef.gob.pe> wrote:\n> hola\n"

    assert strip_reply(text) == ""


def test_derivar_command_gives_the_organo_and_a_clean_body() -> None:
    commands = parse_red_commands("#derivar dgpp\n\nSe deriva por corresponder a su rectoría.")

    assert commands == RedCommands("DGPP", False, (), "Se deriva por corresponder a su rectoría.")


def test_commands_are_case_insensitive_and_may_carry_a_colon() -> None:
    commands = parse_red_commands("#DERIVAR: DGA\n#Nota: revisar plazo\n#NOTA segunda nota\nRespuesta.")

    assert commands.derivar == "DGA"
    assert commands.notas == ("revisar plazo", "segunda nota")
    assert commands.body == "Respuesta."


def test_administrativa_command_sends_it_back_to_ogdau() -> None:
    commands = parse_red_commands("#administrativa\nEs un trámite.")

    assert commands.administrativa is True
    assert commands.derivar is None
    assert commands.body == "Es un trámite."


def test_notes_never_reach_the_body() -> None:
    commands = parse_red_commands("#nota el ciudadano ya llamó dos veces\n\nEstimado: la respuesta es sí.")

    assert "llamó" not in commands.body
    assert commands.body == "Estimado: la respuesta es sí."


def test_hash_lines_after_the_answer_starts_are_text() -> None:
    commands = parse_red_commands("Respuesta:\n#derivar DGPP\n#nota x")

    assert commands == RedCommands(None, False, (), "Respuesta:\n#derivar DGPP\n#nota x")


@pytest.mark.parametrize(
    ("text", "unknown"),
    [
        ("#derviar DGPP\nHola", ("#derviar DGPP",)),
        ("#derivar\nHola", ("#derivar",)),
        ("#derivar DGPP\n#derivar DGA\nHola", ("#derivar DGA",)),
        ("#nota\nHola", ("#nota",)),
        ("#administrativa ya\nHola", ("#administrativa ya",)),
    ],
)
def test_unknown_or_malformed_commands_are_kept_out_of_the_body(text: str, unknown: tuple[str, ...]) -> None:
    commands = parse_red_commands(text)

    assert commands.unknown == unknown
    assert commands.body == "Hola"


@pytest.mark.parametrize("text", ["#1 Primero, revise la norma.", "# Respuesta\nTexto", "Sin comandos."])
def test_hash_lines_that_are_not_command_words_are_text(text: str) -> None:
    assert parse_red_commands(text).body == text


def test_stripped_sample_with_commands_parses_end_to_end() -> None:
    answer = strip_reply((REPLIES / "outlook_mobile_android.txt").read_text(encoding="utf-8"))

    commands = parse_red_commands(answer)

    assert commands.derivar == "DGPP"
    assert commands.notas == ("no es de tesorería, es una modificación presupuestaria",)
    assert commands.body == "Se deriva a la DGPP por corresponder a su rectoría."

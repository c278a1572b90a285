"""``/estado``: the creating chat sees its consulta; another chat only with the right document."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from bot.store import admit_flow
from consultas.requisitos import Requisitos
from tests.bot_support import DNI, EMAIL, PHONE, QUESTION, Citizen, running_bot
from tests.routing_support import CONFIG, NOW, load_example_red
from tests.servers.fake_bot_api import FakeBotApi

OWNER, STRANGER = 5552001, 5552002


def _admit(sessions: sessionmaker[Session]) -> str:
    requisitos = Requisitos(
        full_name="Ana María Quispe Huamán",
        document_type="DNI",
        document_number=DNI,
        email=EMAIL,
        phone=PHONE,
        question=QUESTION,
    )
    with sessions.begin() as session:
        load_example_red(session)
    admitted = admit_flow(
        sessions, requisitos, flow_id="f1", chat_id=OWNER, tema="DGPMI", config=CONFIG, now=NOW
    )
    return admitted.number


async def test_estado_answers_the_chat_that_created_the_consulta(
    fake_bot_api: FakeBotApi, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    number = _admit(sessions)
    async with running_bot(fake_bot_api, sessions, tmp_path, with_red=False):
        text = await Citizen(fake_bot_api, OWNER).last(f"/estado {number.lower()}")

    assert number in text
    assert "asignada" in text
    assert "miércoles 26 de marzo de 2025" in text and "quedan 10 días hábiles" in text


async def test_estado_from_another_chat_needs_the_document_number(
    fake_bot_api: FakeBotApi, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    number = _admit(sessions)
    stranger = Citizen(fake_bot_api, STRANGER)
    async with running_bot(fake_bot_api, sessions, tmp_path, with_red=False):
        asked = await stranger.last(f"/estado {number}")
        refused = await stranger.last("12345678")
        await stranger.say(f"/estado {number}")
        answered = await stranger.last(DNI)

    assert "documento de identidad" in asked and number not in asked
    assert number not in refused and "asignada" not in refused
    assert number in answered and "asignada" in answered


async def test_estado_of_a_number_that_does_not_exist_looks_like_a_wrong_document(
    fake_bot_api: FakeBotApi, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    number = _admit(sessions)
    stranger = Citizen(fake_bot_api, STRANGER)
    async with running_bot(fake_bot_api, sessions, tmp_path, with_red=False):
        asked_existing = await stranger.last(f"/estado {number}")
        refused_existing = await stranger.last("12345678")
        asked_missing = await stranger.last("/estado CONS-2025-999999")
        refused_missing = await stranger.last(DNI)

    assert asked_missing == asked_existing
    assert refused_missing == refused_existing


async def test_the_document_for_estado_is_not_taken_as_an_answer_to_an_open_form(
    fake_bot_api: FakeBotApi, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    number = _admit(sessions)
    stranger = Citizen(fake_bot_api, STRANGER)
    async with running_bot(fake_bot_api, sessions, tmp_path, with_red=False):
        await stranger.say("/start", expect=2)
        await stranger.press("entidad:no")
        await stranger.press("doc:DNI")
        await stranger.say(f"/estado {number}")
        answered = await stranger.last(DNI)
        # The form still waits for the document number of the new consulta
        assert "nombres" in await stranger.last(DNI)

    assert "asignada" in answered


async def test_estado_without_a_valid_number_explains_the_format(
    fake_bot_api: FakeBotApi, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    async with running_bot(fake_bot_api, sessions, tmp_path, with_red=False):
        text = await Citizen(fake_bot_api, OWNER).last("/estado 123")

    assert "/estado CONS-2025-000123" in text

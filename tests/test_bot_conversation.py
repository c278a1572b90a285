"""The Anexo N° 1 form end to end: a real Application polling the fake Bot API over HTTP, a real DB."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.flood import FloodGuard
from consultas.models import Channel, Consulta, ConsultaStatus, Message, Outbox
from tests.bot_support import (
    DNI,
    EMAIL,
    QUESTION,
    RUC,
    RUC_BAD,
    Citizen,
    buttons,
    fill_form,
    running_bot,
)
from tests.servers.fake_bot_api import FakeBotApi

CHAT = 5551001


def _consultas(sessions: sessionmaker[Session]) -> list[Consulta]:
    with sessions() as session:
        return list(session.scalars(select(Consulta).order_by(Consulta.id)))


async def test_a_whole_conversation_ends_in_a_numbered_consulta_and_a_confirmation_mail(
    fake_bot_api: FakeBotApi, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    citizen = Citizen(fake_bot_api, CHAT)
    async with running_bot(fake_bot_api, sessions, tmp_path):
        # Given a citizen who answers every field of the form
        summary = await fill_form(citizen)
        assert buttons(summary) == ["confirmar", "corregir", "cancelar"]
        assert DNI in summary["text"] and EMAIL in summary["text"]
        # When they confirm
        [reply] = await citizen.press("confirmar")

    # Then the consulta is numbered, routed to the chosen órgano and tied to this chat
    [consulta] = _consultas(sessions)
    assert consulta.number is not None and consulta.number.startswith("CONS-2025-")
    assert consulta.channel == Channel.TELEGRAM
    assert consulta.telegram_chat_id == CHAT
    assert consulta.status == ConsultaStatus.ASIGNADA and consulta.organo_code == "DGPMI"
    assert consulta.full_name == "Ana María Quispe Huamán"
    assert (consulta.document_type, consulta.document_number) == ("DNI", DNI)
    assert consulta.phone == "+51987654321"
    # And the chat shows the number, the Spanish dates and the address the mail went to
    assert consulta.number in reply["text"]
    assert "marzo de 2025" in reply["text"] and EMAIL in reply["text"]
    # And the confirmation mail with the number in its subject is in the outbox for that address
    with sessions() as session:
        mails = session.execute(
            select(Outbox, Message)
            .join(Message, Outbox.message_pk == Message.id)
            .where(Outbox.consulta_id == consulta.id, Outbox.envelope_to.is_not(None))
        ).all()
    to_citizen = [message for row, message in mails if EMAIL in row.envelope_to]
    assert len(to_citizen) == 1 and consulta.number in (to_citizen[0].subject or "")


async def test_invalid_answers_are_asked_again_with_the_reason(
    fake_bot_api: FakeBotApi, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    citizen = Citizen(fake_bot_api, CHAT)
    async with running_bot(fake_bot_api, sessions, tmp_path):
        await citizen.say("/start", expect=2)
        await citizen.press("entidad:si")
        await citizen.press("doc:DNI")
        assert "8 dígitos" in await citizen.last("4578123")  # a DNI of 7 digits
        assert "nombres" in await citizen.last(DNI)
        assert "letras" in await citizen.last("Ana 2")
        await citizen.say("Ana María")
        await citizen.say("Quispe")
        await citizen.say("Huamán")
        assert "correo electrónico no es válido" in await citizen.last("ana.quispe@")
        assert "RUC" in await citizen.last(EMAIL)
        assert "dígito verificador" in await citizen.last(RUC_BAD)
        assert "razón social" in await citizen.last(RUC)
        await citizen.say("Municipalidad Distrital de Ejemplo")
        assert "teléfono no es válido" in await citizen.last("12")
        [tema] = await citizen.say("987654321")
        assert "tema:DGPMI" in buttons(tema) and "tema:ADMINISTRATIVA" in buttons(tema)
        await citizen.press("tema:ADMINISTRATIVA")
        assert "muy breve" in await citizen.last("Hola")
        summary = await citizen.last(QUESTION)
        assert RUC in summary and "Municipalidad Distrital de Ejemplo" in summary
        await citizen.press("confirmar")

    [consulta] = _consultas(sessions)
    assert consulta.represents_entity and consulta.entity_ruc == RUC
    assert consulta.tipo is not None and consulta.tipo.value == "administrativa"


async def test_corregir_re_asks_the_chosen_field_and_returns_to_the_summary(
    fake_bot_api: FakeBotApi, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    citizen = Citizen(fake_bot_api, CHAT)
    async with running_bot(fake_bot_api, sessions, tmp_path):
        await fill_form(citizen)
        [fields] = await citizen.press("corregir")
        assert "fix:correo" in buttons(fields) and "fix:ruc" not in buttons(fields)
        await citizen.press("fix:correo")
        summary = await citizen.last("otra.direccion@example.pe")
        assert "otra.direccion@example.pe" in summary and EMAIL not in summary
        await citizen.press("confirmar")

    [consulta] = _consultas(sessions)
    assert consulta.email == "otra.direccion@example.pe"


async def test_cancelar_mid_way_registers_nothing(
    fake_bot_api: FakeBotApi, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    citizen = Citizen(fake_bot_api, CHAT)
    async with running_bot(fake_bot_api, sessions, tmp_path):
        await citizen.say("/start", expect=2)
        await citizen.press("entidad:no")
        await citizen.press("doc:DNI")
        await citizen.say(DNI)
        assert "cancelada" in await citizen.last("/cancelar")
        # The form is closed: a name typed now is not taken as an answer
        assert "/nueva" in await citizen.last("Ana María")

    assert _consultas(sessions) == []


async def test_confirmar_pressed_twice_creates_one_consulta(
    fake_bot_api: FakeBotApi, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    citizen = Citizen(fake_bot_api, CHAT)
    async with running_bot(fake_bot_api, sessions, tmp_path):
        summary = await fill_form(citizen)
        before = len(fake_bot_api.sent(CHAT))
        fake_bot_api.push_callback(CHAT, "confirmar", message_id=summary["message_id"])
        fake_bot_api.push_callback(CHAT, "confirmar", message_id=summary["message_id"])
        replies = (await asyncio.to_thread(fake_bot_api.wait_for_sent, CHAT, before + 2))[before:]

    [consulta] = _consultas(sessions)
    assert consulta.number is not None
    assert all(consulta.number in reply["text"] for reply in replies)
    assert "ya fue registrada" in replies[1]["text"]


async def test_nueva_starts_another_consulta_in_the_same_chat(
    fake_bot_api: FakeBotApi, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    citizen = Citizen(fake_bot_api, CHAT)
    async with running_bot(fake_bot_api, sessions, tmp_path):
        await fill_form(citizen)
        await citizen.press("confirmar")
        summary = await fill_form(citizen, question="¿Qué plazo tiene la transferencia de partidas 2025?")
        assert "transferencia de partidas" in summary["text"]
        await citizen.press("confirmar")

    numbers = [c.number for c in _consultas(sessions)]
    assert len(numbers) == 2 and len(set(numbers)) == 2


async def test_text_typed_by_the_citizen_is_shown_literally_not_as_html(
    fake_bot_api: FakeBotApi, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    citizen = Citizen(fake_bot_api, CHAT)
    async with running_bot(fake_bot_api, sessions, tmp_path):
        summary = await fill_form(citizen, question="<b>¿Cómo registro el formato 12-B de una IOARR?</b>")

    assert summary["parse_mode"] == "HTML"
    assert "&lt;b&gt;¿Cómo registro el formato 12-B de una IOARR?&lt;/b&gt;" in summary["text"]
    assert "<b>¿Cómo" not in summary["text"]


async def test_an_idle_conversation_times_out_politely(
    fake_bot_api: FakeBotApi, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    citizen = Citizen(fake_bot_api, CHAT)
    async with running_bot(fake_bot_api, sessions, tmp_path, timeout_s=0.3):
        await citizen.say("/start", expect=2)
        # No answer: the timeout message arrives by itself
        [notice] = (await asyncio.to_thread(fake_bot_api.wait_for_sent, CHAT, 3))[2:]
        assert "inactividad" in notice["text"]
        # And the form is closed: a button of it is no longer active
        assert "ya no está activo" in (await citizen.press("entidad:no"))[0]["text"]


async def test_a_chat_flooding_the_bot_is_told_once_and_then_ignored(
    fake_bot_api: FakeBotApi, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    flood = FloodGuard(capacity=3, refill_per_s=0.001, cooldown_s=3600)
    async with running_bot(fake_bot_api, sessions, tmp_path, flood=flood, with_red=False):
        for _ in range(6):
            fake_bot_api.push_text(CHAT, "/ayuda")
        # Updates are handled in order: once another chat is answered, the six were handled.
        await Citizen(fake_bot_api, CHAT + 1).say("/ayuda")
        sent = fake_bot_api.sent(CHAT)

    assert len(sent) == 4
    assert "muy rápido" in sent[3]["text"]


@pytest.mark.parametrize("answer", ["Sí", "12345"])
async def test_typing_instead_of_pressing_a_button_points_at_the_buttons(
    fake_bot_api: FakeBotApi, sessions: sessionmaker[Session], tmp_path: Path, answer: str
) -> None:
    citizen = Citizen(fake_bot_api, CHAT)
    async with running_bot(fake_bot_api, sessions, tmp_path, with_red=False):
        await citizen.say("/start", expect=2)
        assert "botones" in await citizen.last(answer)
        assert "documento" in (await citizen.press("entidad:no"))[0]["text"]

    with sessions() as session:
        assert session.scalar(select(func.count(Consulta.id))) == 0

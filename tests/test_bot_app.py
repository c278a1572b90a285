"""The bot's wiring: exactly-once admission per flow, drafts kept across restarts, errors, CLI."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from app.cli import main
from bot.app import build_application
from bot.store import admit_flow
from consultas.clock import FixedClock
from consultas.errors import ConfigurationError
from consultas.models import Consulta, Outbox
from consultas.requisitos import Requisitos
from consultas.settings import Settings
from tests.bot_support import DNI, EMAIL, PHONE, QUESTION, Citizen, fill_form, running_bot
from tests.routing_support import CONFIG, NOW, load_example_red
from tests.servers.fake_bot_api import FakeBotApi

CHAT = 5554001
REQUISITOS = Requisitos(
    full_name="Ana María Quispe Huamán", document_type="DNI", document_number=DNI,
    email=EMAIL, phone=PHONE, question=QUESTION,
)  # fmt: skip


def test_admitting_the_same_flow_twice_returns_the_first_consulta(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        load_example_red(session)

    first = admit_flow(sessions, REQUISITOS, flow_id="f1", chat_id=CHAT, tema=None, config=CONFIG, now=NOW)
    again = admit_flow(sessions, REQUISITOS, flow_id="f1", chat_id=CHAT, tema=None, config=CONFIG, now=NOW)
    other = admit_flow(sessions, REQUISITOS, flow_id="f2", chat_id=CHAT, tema=None, config=CONFIG, now=NOW)

    assert (first.already, again.already, other.already) == (False, True, False)
    assert again.number == first.number != other.number
    with sessions() as session:
        assert session.scalar(select(func.count(Consulta.id))) == 2
        confirmations = session.scalar(
            select(func.count(Outbox.id)).where(Outbox.template == "consulta_recibida")
        )
        assert confirmations == 2


async def test_a_draft_survives_a_restart_of_the_bot(
    fake_bot_api: FakeBotApi, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    citizen = Citizen(fake_bot_api, CHAT)
    async with running_bot(fake_bot_api, sessions, tmp_path):
        await citizen.say("/start", expect=2)
        await citizen.press("entidad:no")
        await citizen.press("doc:DNI")
        await citizen.say(DNI)

    async with running_bot(fake_bot_api, sessions, tmp_path, with_red=False):
        assert "apellido paterno" in await citizen.last("Ana María")


async def test_an_unexpected_error_is_logged_without_personal_data_and_the_citizen_is_told(
    fake_bot_api: FakeBotApi,
    sessions: sessionmaker[Session],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    citizen = Citizen(fake_bot_api, CHAT)
    async with running_bot(fake_bot_api, sessions, tmp_path):
        await fill_form(citizen)
        # The consulta table disappears: the INSERT fails with the citizen's data in its parameters
        with sessions.begin() as session:
            session.execute(text("ALTER TABLE consulta RENAME TO consulta_gone"))
        try:
            with caplog.at_level(logging.ERROR, logger="bot.app"):
                [reply] = await citizen.press("confirmar")
        finally:  # the PostgreSQL database is shared by the whole test session
            with sessions.begin() as session:
                session.execute(text("ALTER TABLE consulta_gone RENAME TO consulta"))

    assert "problema" in reply["text"]
    [record] = [r for r in caplog.records if r.name == "bot.app"]
    assert f"chat {CHAT}" in record.getMessage()
    assert "Error" in record.getMessage()
    for secret in (DNI, EMAIL, "987654321", fake_bot_api.token):
        assert secret not in caplog.text


def test_building_the_bot_without_a_token_names_the_setting(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError, match="CONSULTAS_TELEGRAM_TOKEN"):
        build_application(Settings(var_dir=tmp_path), sessions=sessions, config=CONFIG, clock=FixedClock(NOW))


def test_consultas_bot_without_a_token_stops_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bot"]) == 2
    assert "CONSULTAS_TELEGRAM_TOKEN" in capsys.readouterr().err

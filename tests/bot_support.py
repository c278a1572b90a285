"""Helpers for the bot tests: a running bot against the fake Bot API, and a citizen's chat driver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from bot.app import build_application, running
from bot.flood import FloodGuard
from consultas.clock import FixedClock
from consultas.settings import Settings
from tests.routing_support import CONFIG, NOW, load_example_red
from tests.servers.fake_bot_api import FakeBotApi

WAIT_S = 15.0
DNI = "45781236"
RUC = "20131370645"  # stdnum.pe.ruc: valid check digit
RUC_BAD = "20131370646"
EMAIL = "ana.quispe@example.pe"
PHONE = "987654321"
QUESTION = "¿Cómo registro el formato 12-B de una IOARR en el Banco de Inversiones de Invierte.pe?"


def bot_settings(api: FakeBotApi, var_dir: Path) -> Settings:
    return Settings(
        telegram_token=api.token,
        telegram_api_url=api.base_url,
        var_dir=var_dir,
    )


@asynccontextmanager
async def running_bot(
    api: FakeBotApi,
    sessions: sessionmaker[Session],
    var_dir: Path,
    *,
    timeout_s: float | None = 600,
    flood: FloodGuard | None = None,
    with_red: bool = True,
) -> AsyncIterator[Any]:
    """The real Application polling the fake Bot API, with the example Red loaded in the DB."""
    if with_red:
        with sessions.begin() as session:
            load_example_red(session)
    settings = bot_settings(api, var_dir)
    application = build_application(
        settings,
        sessions=sessions,
        config=CONFIG,
        clock=FixedClock(NOW),
        conversation_timeout_s=timeout_s,
        # The tests type far faster than a citizen: only the flood test sets a tight limit.
        flood=flood or FloodGuard(capacity=1000),
    )
    async with running(application, settings, poll_timeout_s=1) as app:
        yield app


class Citizen:
    """One private chat: sends text or presses buttons and waits (with a deadline) for the replies."""

    def __init__(self, api: FakeBotApi, chat_id: int) -> None:
        self.api = api
        self.chat_id = chat_id

    async def _replies(self, before: int, expect: int) -> list[dict[str, Any]]:
        sent = await asyncio.to_thread(self.api.wait_for_sent, self.chat_id, before + expect, WAIT_S)
        return sent[before:]

    async def say(self, text: str, expect: int = 1) -> list[dict[str, Any]]:
        before = len(self.api.sent(self.chat_id))
        self.api.push_text(self.chat_id, text)
        return await self._replies(before, expect)

    async def press(self, data: str, expect: int = 1) -> list[dict[str, Any]]:
        before = len(self.api.sent(self.chat_id))
        self.api.push_callback(self.chat_id, data)
        return await self._replies(before, expect)

    async def last(self, text: str) -> str:
        return str((await self.say(text))[-1]["text"])


def buttons(message: dict[str, Any]) -> list[str]:
    """The callback data of an inline keyboard sent with ``message``."""
    markup = message.get("reply_markup") or {}
    return [button["callback_data"] for row in markup.get("inline_keyboard", []) for button in row]


async def fill_form(
    citizen: Citizen, *, question: str = QUESTION, entity: bool = False, tema: str = "DGPMI"
) -> dict[str, Any]:
    """Answer every field validly up to the summary; return the summary message."""
    await citizen.say("/start", expect=2)
    await citizen.press("entidad:si" if entity else "entidad:no")
    await citizen.press("doc:DNI")
    await citizen.say(DNI)
    await citizen.say("Ana María")
    await citizen.say("Quispe")
    await citizen.say("Huamán")
    await citizen.say(EMAIL)
    if entity:
        await citizen.say(RUC)
        await citizen.say("Municipalidad Distrital de Ejemplo")
    await citizen.say(PHONE)
    await citizen.press(f"tema:{tema}")
    return (await citizen.say(question))[-1]

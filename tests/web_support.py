"""Helpers for the web tests: the app on a real database, a valid submission, the form's token."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp

from consultas.clock import FixedClock
from consultas.context import ServiceConfig
from consultas.db import make_engine, make_sessionmaker
from consultas.settings import Settings, load_settings
from routing.red_registry import apply_registry
from routing.red_registry_file import parse_registry
from tests.servers._net import free_port, wait_for_port
from web.app import create_app
from web.context import WebContext
from web.server import run_embedded

EXAMPLE_RED = Path(__file__).resolve().parents[1] / "docs" / "red.example.yaml"
#: Friday 26 July 2024, 17:00 in Lima: after hours before Fiestas Patrias (presented Tue 30 July).
AFTER_HOURS_BEFORE_FIESTAS = datetime(2024, 7, 26, 22, 0, tzinfo=UTC)
#: Wednesday 12 March 2025, 10:00 in Lima: a working day in office hours.
IN_HOURS = datetime(2025, 3, 12, 15, 0, tzinfo=UTC)
VALID_RUC = "20131370645"  # the MEF's own RUC: check digit right
WRONG_RUC = "20131370646"


def submission(**changes: Any) -> dict[str, Any]:
    """A complete, valid API submission (a citizen not representing an entity)."""
    body: dict[str, Any] = {
        "represents_entity": False,
        "document_type": "DNI",
        "document_number": "45678912",
        "names": "Rosa María",
        "paternal_surname": "Quispe",
        "maternal_surname": "Huamán",
        "email": "rosa.quispe@example.pe",
        "entity_ruc": None,
        "entity_name": None,
        "phone": "987654321",
        "tema": "DGPMI",
        "question": "¿Cómo registro el formato 12-B de una IOARR en el Banco de Inversiones?",
    }
    body.update(changes)
    return body


def load_example_red(sessions: sessionmaker[Session], now: datetime) -> None:
    content = EXAMPLE_RED.read_text(encoding="utf-8")
    with sessions.begin() as session:
        apply_registry(session, parse_registry(content), source=str(EXAMPLE_RED), content=content, now=now)


@contextmanager
def web_app(
    db_url: str, tmp_path: Path, *, at: datetime = IN_HOURS, red: bool = True, **overrides: Any
) -> Iterator[tuple[ASGIApp, WebContext, FixedClock]]:
    """The web app on ``db_url`` with a fixed clock (and the example Red, unless ``red=False``)."""
    settings: Settings = load_settings(
        var_dir=tmp_path / "var", database_url=db_url, secret_key="web-test-secret", **overrides
    )
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    clock = FixedClock(at)
    if red:
        load_example_red(sessions, at)
    ctx = WebContext.build(settings, sessions, ServiceConfig.from_settings(settings), clock)
    try:
        yield create_app(ctx), ctx, clock
    finally:
        engine.dispose()


TOKEN_RE = re.compile(r'name="token" value="([^"]+)"')


def form_token(html: str) -> str:
    found = TOKEN_RE.search(html)
    assert found, "the page has no form token"
    return found.group(1)


@contextmanager
def serving(app: ASGIApp) -> Iterator[str]:
    """``app`` on a real uvicorn server (as ``consultas serve`` embeds it) on a free loopback port."""
    stop_event: list[asyncio.Event] = []
    loop = asyncio.new_event_loop()
    port = free_port()

    async def main() -> None:
        stop = asyncio.Event()
        stop_event.append(stop)
        await run_embedded(app, host="127.0.0.1", port=port, stop=stop)

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), name="web-test", daemon=True)
    thread.start()
    try:
        wait_for_port("127.0.0.1", port)
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(stop_event[0].set)
        thread.join(15)
        loop.close()

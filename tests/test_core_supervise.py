"""The supervisor of `consultas serve`: a crashed piece is restarted, a stop ends it."""

from __future__ import annotations

import asyncio

import pytest

from consultas import supervise as supervisor
from consultas.supervise import supervise


async def test_a_piece_that_crashes_is_restarted_and_stops_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(supervisor, "FIRST_RESTART_DELAY_S", 0.01)
    stop = asyncio.Event()
    runs: list[int] = []

    async def flaky(stop: asyncio.Event) -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise RuntimeError("IMAP server went away")
        stop.set()  # the second run "serves" until asked to stop
        await stop.wait()

    await asyncio.wait_for(supervise("flaky", flaky, stop), timeout=5)
    assert runs == [0, 1]


async def test_a_piece_that_returns_on_its_own_is_restarted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "FIRST_RESTART_DELAY_S", 0.01)
    stop = asyncio.Event()
    runs: list[int] = []

    async def quits(stop: asyncio.Event) -> None:
        runs.append(1)
        if len(runs) == 3:
            stop.set()

    await asyncio.wait_for(supervise("quits", quits, stop), timeout=5)
    assert len(runs) == 3

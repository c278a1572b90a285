"""Run a long-lived piece of a process (a poller, the bot, the web server, the watchdog) until asked to
stop, restarting it with backoff when it raises, so that one crashed piece never ends the others."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress

from consultas.clock import Clock, SystemClock

logger = logging.getLogger(__name__)

#: Restart backoff of a crashed piece: 1 s, 2 s, 4 s ... capped.
FIRST_RESTART_DELAY_S = 1.0
MAX_RESTART_DELAY_S = 60.0
#: A piece that ran this long before crashing starts again from the first delay.
HEALTHY_RUN_S = 60.0

Piece = Callable[[asyncio.Event], Awaitable[None]]


async def supervise(name: str, piece: Piece, stop: asyncio.Event, *, clock: Clock | None = None) -> None:
    """Run ``piece(stop)`` until ``stop`` is set, restarting it with backoff when it raises."""
    clock = clock or SystemClock()
    delay = FIRST_RESTART_DELAY_S
    while not stop.is_set():
        started = clock.now()
        try:
            await piece(stop)
        except asyncio.CancelledError:
            raise
        except Exception:  # supervisor boundary: log, back off, restart (STYLE 5)
            logger.exception("%s crashed; restarting in %.0f s", name, delay)
        else:
            if stop.is_set():
                return
            logger.warning("%s returned without being stopped; restarting in %.0f s", name, delay)
        if (clock.now() - started).total_seconds() >= HEALTHY_RUN_S:
            delay = FIRST_RESTART_DELAY_S
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
        delay = min(delay * 2, MAX_RESTART_DELAY_S)

"""Serving the web app with uvicorn: embedded in ``consultas serve``, or alone (``consultas web``).

uvicorn's own proxy-header handling is off: X-Forwarded-For is believed only from
CONSULTAS_TRUSTED_PROXIES (``web.security``). Its access log is off too: URLs of the API's status
look-up carry a document number, and personal data never goes to the logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.types import ASGIApp

logger = logging.getLogger(__name__)

#: How long a port already in use waits before the embedded server tries again.
BIND_RETRY_S = 30.0


def uvicorn_options(*, host: str, port: int) -> dict[str, Any]:
    """uvicorn's settings for our app, embedded or alone."""
    return {
        "host": host,
        "port": port,
        "proxy_headers": False,
        "server_header": False,
        "access_log": False,
        "log_config": None,  # our logging configuration (app.cli) stays in force
        "lifespan": "off",
        "timeout_graceful_shutdown": 5,
    }


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals to its host (``consultas serve`` stops it)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def run_embedded(app: ASGIApp, *, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve ``app`` on ``host:port`` until ``stop``; a port in use is logged and tried again later."""
    while not stop.is_set():
        try:
            sock = _listen(host, port)
        except OSError as exc:
            logger.error(
                "web: cannot listen on %s:%d (%s); retrying in %.0f s", host, port, exc.strerror, BIND_RETRY_S
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=BIND_RETRY_S)
            continue
        server = _EmbeddedServer(uvicorn.Config(app, **uvicorn_options(host=host, port=port)))
        logger.info("web: the form answers at http://%s:%d/", host, port)
        serving = asyncio.create_task(server.serve(sockets=[sock]), name="uvicorn")
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            server.should_exit = True
            stopping.cancel()
            await serving
            sock.close()
        return

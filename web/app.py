"""The web application: pages, static files and the API mounted at ``/api/v1``, behind the headers.

``create_app(ctx)`` is what ``consultas serve`` embeds and ``consultas web`` runs; nothing here
reads settings or the environment (the composition root builds the ``WebContext``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web import ops, pages
from web.api import create_api
from web.context import WebContext
from web.security import SecurityHeaders

STATIC = Path(__file__).parent / "static"
logger = logging.getLogger(__name__)

_HTTP_PAGES = {
    404: "La página que busca no existe.",
    405: "Esta dirección no admite ese método.",
    413: "Los datos enviados son demasiado grandes.",
}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = _HTTP_PAGES.get(exc.status_code, "No se pudo atender su solicitud.")
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": "http_error", "message": message}, status_code=exc.status_code)
    return pages.render("error.html", exc.status_code, message=message)


async def _server_error(request: Request, exc: Exception) -> Response:
    logger.exception("web: %s %s failed", request.method, request.url.path)
    return pages.render(
        "error.html", 500, message="Ocurrió un error interno. Inténtelo nuevamente más tarde."
    )


class RequestLog:
    """One DEBUG line per request: method, path without the query (it may carry a document), status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not logger.isEnabledFor(logging.DEBUG):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(str(message["status"]))
            await send(message)

        await self.app(scope, receive, sent)
        logger.debug(
            "web %s %s %d %.1f ms",
            scope["method"],
            scope["path"],
            status,
            (time.perf_counter() - started) * 1000,
        )


def create_app(ctx: WebContext) -> ASGIApp:
    api = create_api(ctx)
    app = Starlette(
        routes=[
            *pages.routes,
            *ops.routes,
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
            Mount("/api/v1", api),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    app.state.web = ctx
    return RequestLog(SecurityHeaders(app, frame_ancestors=ctx.frame_ancestors))

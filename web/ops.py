"""``GET /healthz``, ``/readyz`` and ``/metrics``: what the people who run the service watch.

The bodies come from the core (``consultas.health``, ``consultas.metrics``), read from the database so
that every process answers the same; they are computed in a worker thread (they query the database).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from consultas.health import liveness
from web.context import WebContext


def _context(request: Request) -> WebContext:
    context: WebContext = request.app.state.web
    return context


async def healthz(request: Request) -> Response:
    """200 while the process answers; nothing else is checked."""
    return JSONResponse(liveness(), headers={"Cache-Control": "no-store"})


async def readyz(request: Request) -> Response:
    """200 when every dependency answers, 503 with the failing checks named otherwise."""
    context = _context(request)
    if context.readiness is None:
        return JSONResponse({"status": "ready"}, headers={"Cache-Control": "no-store"})
    result = await run_in_threadpool(context.readiness)
    return JSONResponse(
        result.body, status_code=200 if result.ready else 503, headers={"Cache-Control": "no-store"}
    )


async def metrics(request: Request) -> Response:
    """The Prometheus text format of every ``consultas_*`` figure."""
    context = _context(request)
    if context.metrics is None:
        return Response(status_code=404)
    body, content_type = await run_in_threadpool(context.metrics)
    return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]

"""Request helpers shared by the pages and the API: a size-capped body, the client's address."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request

from web.context import WebContext
from web.security import client_address

#: No submission needs more (the consulta itself is at most 4,000 characters).
MAX_BODY_BYTES = 64 * 1024


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refusing (413) more than ``limit`` bytes whether announced or streamed."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise HTTPException(413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413)
    return bytes(body)


def client_of(request: Request, ctx: WebContext) -> str:
    """The client's address, X-Forwarded-For believed only from CONSULTAS_TRUSTED_PROXIES."""
    peer = request.client.host if request.client else None
    return client_address(peer, request.headers.get("x-forwarded-for"), ctx.trusted_proxies)

"""CSRF tokens of the form, the client's address behind trusted proxies, the security headers.

Pure functions plus one small ASGI middleware; the key is derived from CONSULTAS_SECRET_KEY.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Sequence
from typing import Final

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The cookie that binds a form token to the browser that loaded the form (double submit).
CSRF_COOKIE: Final = "consultas_csrf"
#: A form token is accepted this long after the form was served.
TOKEN_MAX_AGE_S: Final = 6 * 3600

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def derive_key(secret: bytes, purpose: str) -> bytes:
    """A key for one purpose, so a form token can never pass for a signed reply address."""
    return hmac.new(secret, f"consultas-web:{purpose}".encode(), hashlib.sha256).digest()


def new_browser_secret() -> str:
    return secrets.token_hex(16)


def _signature(key: bytes, form_id: str, issued: int, browser: str) -> str:
    message = f"{form_id}|{issued}|{browser}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


def issue_token(key: bytes, browser: str, *, now: float) -> str:
    """A one-time form token: its id names the submission (a double submit is one consulta)."""
    form_id = secrets.token_hex(12)
    issued = int(now)
    return f"{form_id}.{issued}.{_signature(key, form_id, issued, browser)}"


def check_token(key: bytes, token: str, browser: str | None, *, now: float) -> str | None:
    """The form id of a valid token for this browser and not expired; None otherwise."""
    if not browser or not token or len(token) > 100:
        return None
    parts = token.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    form_id, issued = parts[0], int(parts[1])
    if not 0 <= now - issued <= TOKEN_MAX_AGE_S:
        return None
    if not hmac.compare_digest(parts[2], _signature(key, form_id, issued, browser)):
        return None
    return form_id


def parse_networks(items: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None, networks: Sequence[Network]
) -> bool:
    return address is not None and any(address in network for network in networks)


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy.

    Behind trusted proxies, X-Forwarded-For is read from the right (each proxy appends the address
    it saw) and the first address that is not a trusted proxy is the client; anything further left
    was written by the client and is not believed.
    """
    peer = peer or "unknown"
    if not forwarded_for or not _trusted(_address(peer), trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return peer  # a malformed chain: believe nobody in it
        if not _trusted(address, trusted):
            return str(address)
    return str(_address(hops[0])) if hops else peer


def security_headers(frame_ancestors: str) -> list[tuple[str, str]]:
    """Headers of every response: a CSP without inline script, framing only where configured."""
    csp = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; "
        f"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors {frame_ancestors}"
    )
    headers = [
        ("content-security-policy", csp),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("permissions-policy", "camera=(), microphone=(), geolocation=(), payment=()"),
        ("cross-origin-opener-policy", "same-origin"),
    ]
    if frame_ancestors == "'none'":
        headers.append(("x-frame-options", "DENY"))
    return headers


class SecurityHeaders:
    """ASGI middleware adding ``security_headers`` to every HTTP response."""

    def __init__(self, app: ASGIApp, *, frame_ancestors: str) -> None:
        self.app = app
        self.headers = security_headers(frame_ancestors)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers:
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)

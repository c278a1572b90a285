"""Signed per-consulta reply addresses (``consultas+cons-2025-000123.<token>@mef.gob.pe``).

Owns encoding and checking the plus-address that Red members reply to: the consulta number plus
a truncated HMAC-SHA256 of it (base32, 80 bits), all lowercase because mail systems may
lowercase local parts. Deciding what a valid reply does is left to ``routing.replies``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import getaddresses

#: Consulta numbers: any uppercase prefix, the year and a 6-digit sequence (CONS-2025-000123).
NUMBER_PATTERN = re.compile(r"[A-Z]+-\d{4}-\d{6}")
#: 16 base32 characters = 80 bits of HMAC-SHA256.
TOKEN_LENGTH = 16
_DETAIL = re.compile(r"(?P<number>[a-z]+-\d{4}-\d{6})\.(?P<token>[a-z2-7]+)")
#: Domain separation: the same secret may sign other things.
_CONTEXT = b"consultas-reply-address-v1:"


@dataclass(frozen=True)
class ReplyToken:
    """The consulta a reply address names, and whether its signature is genuine."""

    number: str
    valid: bool


def _token(number: str, secret: bytes) -> str:
    digest = hmac.new(secret, _CONTEXT + number.upper().encode("ascii"), hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:TOKEN_LENGTH]


def _split_mailbox(mailbox: str) -> tuple[str, str]:
    local, _, domain = mailbox.strip().rpartition("@")
    if not local or not domain:
        raise ValueError(f"mailbox must be local@domain, got {mailbox!r}")
    return local.lower(), domain.lower()


def make_reply_address(mailbox: str, consulta_number: str, secret: bytes) -> str:
    """Return the mailbox plus-addressed with the consulta number and its HMAC token."""
    number = consulta_number.strip().upper()
    if not NUMBER_PATTERN.fullmatch(number):
        raise ValueError(f"not a consulta number: {consulta_number!r}")
    if not secret:
        raise ValueError("the reply-address secret must not be empty")
    local, domain = _split_mailbox(mailbox)
    return f"{local}+{number.lower()}.{_token(number, secret)}@{domain}"


def parse_reply_address(address: str, mailbox: str, secret: bytes) -> ReplyToken | None:
    """Read a reply address; None when it is not a plus address of ``mailbox``.

    ``valid`` is False when the token does not sign the number (forged or altered).
    """
    local, domain = _split_mailbox(mailbox)
    candidate = address.strip().strip("<>").lower()
    cand_local, _, cand_domain = candidate.rpartition("@")
    if cand_domain != domain or not cand_local.startswith(local + "+"):
        return None
    match = _DETAIL.fullmatch(cand_local[len(local) + 1 :])
    if match is None:
        return None
    number = match["number"].upper()
    expected = _token(number, secret)
    return ReplyToken(number=number, valid=hmac.compare_digest(expected, match["token"]))


def find_reply_token(addresses: Iterable[str], mailbox: str, secret: bytes) -> ReplyToken | None:
    """Pick our reply token from header values (To, Cc, Delivered-To...), valid ones first.

    Each item may be a bare address or a whole header value with display names and commas.
    """
    found: ReplyToken | None = None
    # A token address has a "+" (its plus detail) in any header spelling of it, quoted or not: values
    # without one (most mail, addressed to the plain mailbox) are not parsed at all.
    for _, address in getaddresses([value for value in addresses if "+" in value]):
        token = parse_reply_address(address, mailbox, secret) if address else None
        if token is not None and token.valid:
            return token
        found = found or token
    return found


def redact_address(address: str) -> str:
    """Hide the plus detail (which carries the token) of an address, for logs."""
    local, at, domain = address.strip().rpartition("@")
    if not at:
        return "<redacted>"
    base, plus, _ = local.partition("+")
    return f"{base}+<redacted>@{domain}" if plus else f"{base}@{domain}"

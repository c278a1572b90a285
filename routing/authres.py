"""Authenticated Red replies: the ministry MTA's ``Authentication-Results`` header (RFC 8601).

With ``CONSULTAS_AUTHSERV_ID`` set, a reply to a routed mail is accepted only when the header that
MTA wrote says ``dmarc=pass``, or ``dkim=pass`` for a signing domain aligned with the From domain
(RFC 7489 3.1.1, relaxed). Headers with any other authserv-id are ignored: anyone can write one.
Of our MTA's headers only the topmost counts, since a receiving MTA prepends its own (and should
strip forged ones with its id, RFC 8601 5). Pure: bytes in, a Spanish reason (or None) out.
"""

from __future__ import annotations

import re
from email.parser import BytesHeaderParser
from email.policy import compat32

_COMMENT_RE = re.compile(r"\([^()]*\)")
_RESULT_RE = re.compile(r"^\s*([a-z0-9_-]+)\s*=\s*([a-z0-9_-]+)(.*)$", re.IGNORECASE | re.DOTALL)
_PROPERTY_RE = re.compile(r"([a-z0-9_-]+\.[a-z0-9_-]+)\s*=\s*(\"[^\"]*\"|[^\s;]+)", re.IGNORECASE)


def _strip_comments(value: str) -> str:
    previous = None
    while previous != value:  # nested comments: strip innermost first
        previous, value = value, _COMMENT_RE.sub(" ", value)
    return value


def parse_header(value: str) -> tuple[str, list[tuple[str, str, dict[str, str]]]]:
    """``(authserv-id, [(method, result, {ptype.property: value})])`` of one header value."""
    parts = _strip_comments(" ".join(value.split())).split(";")
    authserv_id = parts[0].strip().split(" ")[0].lower() if parts else ""
    results = []
    for part in parts[1:]:
        found = _RESULT_RE.match(part)
        if found is None:
            continue
        method, result, rest = found.group(1).lower(), found.group(2).lower(), found.group(3)
        props = {k.lower(): v.strip('"').lower() for k, v in _PROPERTY_RE.findall(rest)}
        results.append((method, result, props))
    return authserv_id, results


def _aligned(signing_domain: str, from_domain: str) -> bool:
    """Relaxed alignment, approximated without the public suffix list: same domain or a subdomain."""
    d, f = signing_domain.strip(".").lower(), from_domain.strip(".").lower()
    return bool(d) and (d == f or f.endswith("." + d) or d.endswith("." + f))


def authentication_failure(raw: bytes, sender: str, authserv_id: str) -> str | None:
    """Why the mail is not authenticated by our MTA (Spanish, for OGDAU), or None when it is."""
    wanted = authserv_id.strip().lower()
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw).get_all("Authentication-Results") or []
    ours = [parsed for parsed in (parse_header(str(h)) for h in headers) if parsed[0] == wanted]
    if not ours:
        return f"el correo no trae la verificación de autenticidad del servidor del ministerio ({wanted})"
    from_domain = sender.rpartition("@")[2]
    _, results = ours[0]
    for method, result, props in results:
        if method == "dmarc" and result == "pass":
            return None
        if method == "dkim" and result == "pass":
            domain = props.get("header.d") or props.get("header.i", "").rpartition("@")[2]
            if _aligned(domain, from_domain):
                return None
    summary = (
        ", ".join(f"{m}={r}" for m, r, _ in results if m in ("dmarc", "dkim", "spf")) or "sin resultados"
    )
    return f"el servidor del ministerio no autenticó al remitente ({summary})"

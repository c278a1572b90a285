"""The logic of ``consultas parse FILE.eml``: one mail's bytes -> the issue's JSON object.

Pure: the CLI reads the file (or stdin), calls `parse_to_json`, prints ``json.dumps(..., ensure_ascii=
False)``; a `MalformedMailError` propagates so the CLI can print one clear line.
"""

from __future__ import annotations

from typing import Any

from consultas.loops import MailKind, classify_automatic
from consultas.mime import DEFAULT_MAX_ATTACHMENT_BYTES, parse_mail
from consultas.requisitos import extract_requisitos


def parse_to_json(
    raw: bytes,
    *,
    own_addresses: frozenset[str] = frozenset(),
    own_message_id_domain: str = "",
    max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES,
) -> dict[str, Any]:
    """Parse a mail and return its JSON-ready summary; raise `MalformedMailError` if it is no mail."""
    mail = parse_mail(raw, max_attachment_bytes=max_attachment_bytes)
    verdict = classify_automatic(
        mail, own_addresses=own_addresses, own_message_id_domain=own_message_id_domain
    )
    extraction = extract_requisitos(
        mail.text, sender=mail.sender, sender_name=mail.sender_name, subject=mail.subject
    )
    req = extraction.requisitos
    return {
        "message_id": mail.message_id,
        "sender": mail.sender,
        "subject": mail.subject,
        "automatic": verdict.kind is not MailKind.person,
        "requisitos": {
            "full_name": req.full_name,
            "document_type": req.document_type,
            "document_number": req.document_number,
            "entity_name": req.entity_name,
            "entity_ruc": req.entity_ruc,
            "email": req.email,
            "phone": req.phone,
            "question": req.question,
        },
        "missing": list(extraction.missing),
        "invalid": list(extraction.invalid),
        "attachments": [
            {"filename": a.filename, "content_type": a.content_type, "size": a.size} for a in mail.attachments
        ],
    }

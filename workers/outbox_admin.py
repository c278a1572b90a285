"""What ``consultas outbox`` shows and does: pending and failed rows as plain dicts, and retries."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from consultas.models import Consulta, Outbox, OutboxStatus
from consultas.outbox import retry_failed

#: Most rows listed at once (the oldest first).
LIST_LIMIT = 500


def list_rows(
    sessions: sessionmaker[Session], *, failed: bool, limit: int = LIST_LIMIT
) -> list[dict[str, Any]]:
    """Failed rows, or rows still to send (pending or being sent), with their consulta number."""
    statuses = [OutboxStatus.FAILED] if failed else [OutboxStatus.PENDING, OutboxStatus.SENDING]
    with sessions() as session:
        result = session.execute(
            select(Outbox, Consulta.number)
            .outerjoin(Consulta, Consulta.id == Outbox.consulta_id)
            .where(Outbox.status.in_(statuses))
            .order_by(Outbox.id)
            .limit(limit)
        )
        return [_as_dict(row, number) for row, number in result]


def _as_dict(row: Outbox, number: str | None) -> dict[str, Any]:
    recipient = row.primary_recipient or (row.envelope_to[0] if row.envelope_to else None)
    if recipient is None and row.payload.get("chat_id") is not None:
        recipient = f"telegram:{row.payload['chat_id']}"
    return {
        "id": row.id,
        "consulta": number,
        "template": row.template,
        "channel": row.channel.value,
        "recipient": recipient,
        "status": row.status.value,
        "attempts": row.attempts,
        "next_attempt_at": _iso(row.next_attempt_at) if row.status != OutboxStatus.FAILED else None,
        "failed_at": _iso(row.failed_at),
        "last_error": row.last_error,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def retry_rows(
    sessions: sessionmaker[Session], *, now: datetime, outbox_ids: Collection[int] | None = None
) -> list[int]:
    """Put failed rows (all, or those of ``outbox_ids``) back as pending with fresh attempts.

    Returns the ids put back: those of ``outbox_ids`` that were failed.
    """
    with sessions.begin() as session:
        query = select(Outbox.id).where(Outbox.status == OutboxStatus.FAILED)
        if outbox_ids is not None:
            query = query.where(Outbox.id.in_(outbox_ids))
        ids = list(session.scalars(query.order_by(Outbox.id)))
        if outbox_ids is None and ids:
            retry_failed(session, now=now)
        elif outbox_ids is not None:
            for outbox_id in ids:
                retry_failed(session, now=now, outbox_id=outbox_id)
    return ids

"""The audit trail (directive 4.1.5): one ``Event`` row per thing that happened to a consulta."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from consultas.bulkwrite import add_row
from consultas.ids import preassign_id
from consultas.models import Consulta, Event, Message, new_row


def record(
    session: Session,
    kind: str,
    *,
    now: datetime,
    consulta: Consulta | None = None,
    message: Message | None = None,
    actor: str | None = None,
    **detail: Any,
) -> Event:
    """Append an event; ``detail`` must be JSON-serialisable (no ORM objects, aware datetimes as ISO).

    A consulta or message not written yet is linked by its id taken from the sequence pool on
    PostgreSQL (the flush then needs no relationship bookkeeping), elsewhere by relationship: no
    flush is needed here.
    """
    consulta_id = preassign_id(session, consulta) if consulta is not None else None
    message_pk = preassign_id(session, message) if message is not None else None
    event = new_row(
        Event, kind=kind, actor=actor, detail=detail, at=now, consulta_id=consulta_id, message_pk=message_pk
    )
    # Rows not written yet on SQLite: the flush assigns their ids and copies them by relationship.
    if consulta is not None and consulta_id is None:
        event.consulta = consulta
    if message is not None and message_pk is None:
        event.message = message
    preassign_id(session, event)
    add_row(session, event)  # written with COPY within a batch's copy_block (PostgreSQL)
    return event

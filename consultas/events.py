"""The audit trail (directive 4.1.5): one ``Event`` row per thing that happened to a consulta."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from consultas.ids import preassign_id
from consultas.models import Consulta, Event, Message


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
    event = Event(kind=kind, actor=actor, detail=detail, at=now)
    if consulta is not None:
        consulta_id = preassign_id(session, consulta)
        if consulta_id is not None:
            event.consulta_id = consulta_id
        else:
            event.consulta = consulta
    if message is not None:
        message_pk = preassign_id(session, message)
        if message_pk is not None:
            event.message_pk = message_pk
        else:
            event.message = message
    session.add(event)
    preassign_id(session, event)
    return event

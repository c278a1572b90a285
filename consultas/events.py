"""The audit trail (directive 4.1.5): one ``Event`` row per thing that happened to a consulta."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

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

    A consulta or message not written yet is linked by relationship: no flush is needed here.
    """
    event = Event(kind=kind, actor=actor, detail=detail, at=now)
    if consulta is not None:
        if consulta.id is not None:
            event.consulta_id = consulta.id
        else:
            event.consulta = consulta
    if message is not None:
        if message.id is not None:
            event.message_pk = message.id
        else:
            event.message = message
    session.add(event)
    return event

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
    """Append an event; ``detail`` must be JSON-serialisable (no ORM objects, aware datetimes as ISO)."""
    event = Event(
        consulta_id=consulta.id if consulta is not None else None,
        message_pk=message.id if message is not None else None,
        kind=kind,
        actor=actor,
        detail=detail,
        at=now,
    )
    session.add(event)
    return event

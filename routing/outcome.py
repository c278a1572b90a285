"""What became of one inbound mail: the value ``intake.pipeline.process_inbound_mail`` returns."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class OutcomeKind(StrEnum):
    """What became of one inbound mail."""

    DUPLICATE = "duplicate"  # already stored: nothing done (crash replay, re-delivery)
    AUTOMATIC = "automatic"  # auto-reply, bulk, own mail: stored, never answered
    BOUNCE = "bounce"  # a delivery failure report (linked to its consulta when ours)
    RED_REPLY = "red_reply"  # handled by routing.replies (answer, command or rejected)
    ADMITTED = "admitted"  # a new numbered consulta (or a subsanación completed)
    SUBSANACION = "subsanacion"  # requisitos missing/invalid: a subsanación mail was queued
    FOLLOW_UP = "follow_up"  # attached to an existing consulta


@dataclass(frozen=True, slots=True)
class InboundOutcome:
    """The result of ``process_inbound_mail``: JSON-friendly values only (no ORM objects)."""

    kind: OutcomeKind
    message_id: str
    message_pk: int | None = None
    consulta_id: int | None = None
    consulta_number: str | None = None
    reason: str = ""

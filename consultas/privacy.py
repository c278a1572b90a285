"""Personal data kept no longer than needed (Ley N° 29733): retention, a citizen's export and erasure.

Anonymising a consulta removes what identifies or describes the citizen: name, document, email,
phone, entity, Telegram chat, the raw mails and their text, attachments, the question and the
answer, and the audit trail's details. What the reports count stays: number, dates, órgano,
channel, tipo and status, so every past quarterly report gives the same figures. Only closed
consultas (answered or archived) are anonymised. Each run is a ``PrivacyRun`` row (who, when,
how many); the document a citizen asked about is never stored in it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.orm import Session

from consultas.models import (
    Attachment,
    Consulta,
    ConsultaStatus,
    Event,
    Message,
    Outbox,
    PrivacyRun,
)

logger = logging.getLogger(__name__)

CLOSED_STATUSES = (ConsultaStatus.RESPONDIDA, ConsultaStatus.ARCHIVADA)
#: Marks an anonymised consulta (its subject); nothing else about the citizen is left.
ANONYMISED = "[anonimizada]"
#: Consultas anonymised per statement batch (bounded IN lists on both backends).
BATCH = 500


@dataclass(frozen=True)
class PrivacyResult:
    """What a run did (or, dry, would do)."""

    action: str
    consultas: int
    dry_run: bool
    run_id: int | None


def retention_cutoff(today: date, years: int) -> date:
    """The first day kept by a retention of ``years`` run on ``today`` (29 Feb -> 28 Feb)."""
    try:
        return today.replace(year=today.year - years)
    except ValueError:
        return today.replace(year=today.year - years, day=28)


def closed_before(session: Session, before: date, tz: ZoneInfo) -> list[int]:
    """Ids of the consultas closed before Lima day ``before`` and not anonymised yet."""
    instant = datetime.combine(before, time(0), tzinfo=tz).astimezone(UTC)
    return list(
        session.scalars(
            select(Consulta.id)
            .where(
                Consulta.status.in_(CLOSED_STATUSES),
                Consulta.closed_at < instant,
                _not_anonymised(),
            )
            .order_by(Consulta.id)
        )
    )


def _not_anonymised() -> Any:
    return (Consulta.subject.is_(None) | (Consulta.subject != ANONYMISED)) | Consulta.full_name.is_not(None)


def normalise_document(document: str) -> str:
    """A document number as stored (no spaces or dashes, upper case)."""
    return "".join(ch for ch in document if ch.isalnum()).upper()


def consultas_of(session: Session, document: str) -> list[Consulta]:
    """Every consulta of the person with ``document``, oldest first."""
    return list(
        session.scalars(
            select(Consulta)
            .where(Consulta.document_number == normalise_document(document))
            .order_by(Consulta.id)
        )
    )


def anonymise(session: Session, consulta_ids: Sequence[int], *, now: datetime) -> int:
    """Remove the personal data of ``consulta_ids``; returns how many. Caller owns the transaction."""
    for start in range(0, len(consulta_ids), BATCH):
        ids = list(consulta_ids[start : start + BATCH])
        message_pks = select(Message.id).where(Message.consulta_id.in_(ids)).scalar_subquery()
        session.execute(delete(Attachment).where(Attachment.message_pk.in_(message_pks)))
        session.execute(
            update(Message)
            .where(Message.consulta_id.in_(ids))
            .values(
                sender=None, recipients=[], subject=None, body_text=None, raw=None, sha256=None, error=None
            )
        )
        session.execute(
            update(Outbox)
            .where(Outbox.consulta_id.in_(ids))
            .values(envelope_to=[], primary_recipient=None, payload={}, last_error=None)
        )
        session.execute(update(Event).where(Event.consulta_id.in_(ids)).values(actor=None, detail={}))
        session.execute(
            update(Consulta)
            .where(Consulta.id.in_(ids))
            .values(
                full_name=None,
                document_type=None,
                document_number=None,
                entity_name=None,
                entity_ruc=None,
                email=None,
                phone=None,
                question=None,
                subject=ANONYMISED,
                reply_address=None,
                telegram_chat_id=None,
                origin_message_id=None,
                classification_reason=None,
                updated_at=now,
            )
        )
    session.expire_all()
    return len(consulta_ids)


def record_run(
    session: Session, action: str, *, actor: str, now: datetime, consultas: int, dry_run: bool, **detail: Any
) -> PrivacyRun:
    """Add the ``PrivacyRun`` row of one run."""
    run = PrivacyRun(
        action=action, actor=actor, at=now, dry_run=dry_run, consultas=consultas, detail=dict(detail)
    )
    session.add(run)
    session.flush()
    return run


def run_retention(
    session: Session, before: date, *, tz: ZoneInfo, actor: str, now: datetime, dry_run: bool = False
) -> PrivacyResult:
    """Anonymise the consultas closed before ``before`` (or count them, dry); record the run."""
    ids = closed_before(session, before, tz)
    if not dry_run:
        anonymise(session, ids, now=now)
    run = record_run(
        session,
        "retention",
        actor=actor,
        now=now,
        consultas=len(ids),
        dry_run=dry_run,
        before=before.isoformat(),
    )
    logger.info(
        "retention before %s: %d consultas %s", before, len(ids), "found" if dry_run else "anonymised"
    )
    return PrivacyResult("retention", len(ids), dry_run, run.id)


def erase_citizen(session: Session, document: str, *, actor: str, now: datetime) -> tuple[PrivacyResult, int]:
    """Anonymise the closed consultas of ``document``; returns the result and how many stay open."""
    mine = consultas_of(session, document)
    closed = [c.id for c in mine if c.status in CLOSED_STATUSES]
    anonymise(session, closed, now=now)
    still_open = len(mine) - len(closed)
    run = record_run(
        session, "erase", actor=actor, now=now, consultas=len(closed), dry_run=False, kept_open=still_open
    )
    return PrivacyResult("erase", len(closed), False, run.id), still_open


def export_citizen(session: Session, document: str, *, actor: str, now: datetime) -> list[dict[str, Any]]:
    """All of one person's consultas as JSON-able dicts (their data, mails and trail); records the run."""
    exported = [_consulta_json(session, consulta) for consulta in consultas_of(session, document)]
    record_run(session, "export", actor=actor, now=now, consultas=len(exported), dry_run=False)
    return exported


def _iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _consulta_json(session: Session, consulta: Consulta) -> dict[str, Any]:
    messages = session.execute(
        select(Message.direction, Message.received_at, Message.sender, Message.subject, Message.body_text)
        .where(Message.consulta_id == consulta.id)
        .order_by(Message.id)
    ).all()
    trail = session.execute(
        select(Event.kind, Event.at).where(Event.consulta_id == consulta.id).order_by(Event.id)
    ).all()
    return {
        "numero": consulta.number,
        "estado": consulta.status.value,
        "canal": consulta.channel.value,
        "tipo": consulta.tipo.value if consulta.tipo else None,
        "organo": consulta.organo_code,
        "nombre": consulta.full_name,
        "documento": {"tipo": consulta.document_type, "numero": consulta.document_number},
        "entidad": {"nombre": consulta.entity_name, "ruc": consulta.entity_ruc},
        "correo": consulta.email,
        "telefono": consulta.phone,
        "asunto": consulta.subject,
        "consulta": consulta.question,
        "recibida": _iso(consulta.received_at),
        "presentada": _iso(consulta.presented_on),
        "plazo": _iso(consulta.due_on),
        "respondida": _iso(consulta.answered_at),
        "mensajes": [
            {
                "direccion": direction.value,
                "fecha": _iso(at),
                "remitente": sender,
                "asunto": subject,
                "texto": text,
            }
            for direction, at, sender, subject, text in messages
        ],
        "historial": [{"evento": kind, "fecha": _iso(at)} for kind, at in trail],
    }


def runs(session: Session, limit: int = 50) -> list[PrivacyRun]:
    """The latest privacy runs, newest first."""
    return list(session.scalars(select(PrivacyRun).order_by(PrivacyRun.id.desc()).limit(limit)))


def count_runs(session: Session) -> int:
    return int(session.scalar(select(func.count(PrivacyRun.id))) or 0)


def compact_storage(engine: Engine) -> None:
    """Make removed values unrecoverable from the database file (SQLite: free pages and the WAL).

    SQLite keeps deleted and overwritten values in free pages and in the write-ahead log until
    they are reused; VACUUM rewrites the file and the checkpoint empties the log. PostgreSQL's old
    row versions are not in a ``pg_dump`` and are reclaimed by autovacuum.
    """
    if engine.dialect.name != "sqlite":
        return
    raw = engine.raw_connection()  # outside SQLAlchemy's transaction: VACUUM cannot run inside one
    try:
        cursor = raw.cursor()
        cursor.execute("VACUUM")
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        cursor.close()
    finally:
        raw.close()

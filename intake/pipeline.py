"""One raw inbound mail -> the database: dedup, store, loops, Red replies, then the citizen's mail.

Owns ``process_inbound_mail`` (the single entry point for IMAP, Maildir and tests) and
``quarantine_mail`` (what a source calls, in its own transaction, when processing raised).
Everything runs in the caller's transaction: the source commits, then flags or moves the mail, so
a crash anywhere re-reads it and finds it done (outcome ``duplicate``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from consultas import events
from consultas.bulkwrite import add_row, copy_block
from consultas.context import ServiceConfig
from consultas.ids import preassign_id, reserve_ids
from consultas.lookup import sent_message_pks, stored_message_pks
from consultas.loops import LoopVerdict, MailKind, classify_automatic
from consultas.mime import ParsedMail, normalize_message_id, parse_mail
from consultas.models import (
    Attachment,
    Channel,
    Consulta,
    Direction,
    Message,
    MessageKind,
    new_row,
)
from consultas.numbering import number_block
from consultas.outbox import preload_recent_automatic
from routing import admission
from routing.absence import on_auto_reply
from routing.assignment import on_routed_mail_bounce, tell_ogdau
from routing.outcome import InboundOutcome, OutcomeKind
from routing.replies import handle_reply

__all__ = [
    "InboundOutcome",
    "OutcomeKind",
    "process_inbound_batch",
    "process_inbound_mail",
    "quarantine_mail",
    "store_message",
    "stored_message_ids",
]

logger = logging.getLogger(__name__)

#: The rows a citizen's complete mail adds (the consulta; the mail, its confirmation and the routed
#: mail; received, admitted, classified and routed events; two outbox rows): a batch reserves their
#: ids at once (``consultas.ids.reserve_ids``), with one more per attachment of its new mails.
ROWS_PER_ADMITTED_MAIL = {"consulta": 1, "message": 3, "event": 4, "outbox": 2}
#: How much of a quarantined mail's error OGDAU's alert quotes.
QUARANTINE_DETAIL_CHARS = 500

_AUTOMATIC_KINDS = {
    MailKind.auto_reply: MessageKind.AUTO_REPLY,
    MailKind.bounce: MessageKind.BOUNCE,
    MailKind.bulk: MessageKind.BULK,
    MailKind.own: MessageKind.OWN,
}


def process_inbound_mail(
    session: Session,
    raw: bytes,
    *,
    mailbox: str,
    config: ServiceConfig,
    now: datetime,
    imap_uid: int | None = None,
    uidvalidity: int | None = None,
    parsed: ParsedMail | None = None,
    known_new: bool = False,
) -> InboundOutcome:
    """Process one raw mail received at ``now`` in ``mailbox``; flushes, never commits.

    Idempotent by (mailbox, Message-ID): a mail already stored (the same mail re-read after a
    crash, or re-delivered under another UID) returns ``duplicate`` and changes nothing.
    Raises ``QuarantineError`` (``MalformedMailError``) for a mail that is not a mail at all; the
    caller rolls back and calls ``quarantine_mail`` in a fresh transaction.

    A batch source may pass ``parsed`` (``parse_mail`` of ``raw``) and ``known_new=True`` when it
    already looked the Message-ID up in this transaction (``stored_message_ids``) and found none.
    """
    mail = parsed if parsed is not None else parse_mail(raw, max_attachment_bytes=config.max_attachment_bytes)
    existing = (
        None
        if known_new
        else session.scalar(
            select(Message.id).where(
                Message.mailbox == mailbox,
                Message.direction == Direction.INBOUND,
                Message.message_id == mail.message_id,
            )
        )
    )
    if existing is not None:
        return InboundOutcome(OutcomeKind.DUPLICATE, mail.message_id, message_pk=existing)

    verdict = classify_automatic(
        mail, own_addresses=config.own_addresses, own_message_id_domain=config.identity.message_id_domain
    )
    # Not flushed yet: a citizen's new consulta is written with its message in one flush (every
    # query below autoflushes it first, so nothing reads the row before it exists).
    message = store_message(
        session, mail, raw, mailbox=mailbox, now=now, imap_uid=imap_uid, uidvalidity=uidvalidity, flush=False
    )
    if verdict.is_automatic:
        session.flush()
        return _automatic(session, mail, message, verdict, config=config, now=now)
    if handle_reply(session, mail, message, config=config, now=now):
        logger.info("mail %s handled as a Red reply", mail.message_id)
        return InboundOutcome(
            OutcomeKind.RED_REPLY, mail.message_id, message_pk=message.id, consulta_id=message.consulta_id
        )
    return admission.handle_citizen_mail(session, mail, message, config=config, now=now)


def process_inbound_batch(
    session: Session,
    raws: Sequence[tuple[bytes, int | None]],
    *,
    mailbox: str,
    config: ServiceConfig,
    now: Callable[[], datetime],
    uidvalidity: int | None = None,
) -> list[InboundOutcome]:
    """``process_inbound_mail`` for each ``(raw, imap_uid)`` of a batch, in the caller's transaction.

    What every mail would look up is looked up once for the batch (which Message-IDs are stored,
    the senders' automatic mails of the last 24 h) and consulta numbers are reserved for the
    batch at once, so on PostgreSQL the batch's rows are written by a few multi-row INSERTs.
    Any exception leaves the transaction to be rolled back; the caller then redoes the mails one
    by one so that only the bad one is quarantined.
    """
    parsed = [parse_mail(raw, max_attachment_bytes=config.max_attachment_bytes) for raw, _ in raws]
    stored = stored_message_ids(session, mailbox, [mail.message_id for mail in parsed])
    new_mails = [mail for mail in parsed if mail.message_id not in stored]
    wanted = {table: rows * len(new_mails) for table, rows in ROWS_PER_ADMITTED_MAIL.items()}
    wanted["attachment"] = sum(len(mail.attachments) for mail in new_mails)
    reserve_ids(session, wanted)
    preload_recent_automatic(session, [mail.sender for mail in parsed], now=now())
    seen: set[str] = set()
    outcomes = []
    with number_block(session, len(raws)), copy_block(session):
        for (raw, uid), mail in zip(raws, parsed, strict=True):
            outcomes.append(
                process_inbound_mail(
                    session,
                    raw,
                    mailbox=mailbox,
                    config=config,
                    now=now(),
                    imap_uid=uid,
                    uidvalidity=uidvalidity,
                    parsed=mail,
                    known_new=mail.message_id not in stored and mail.message_id not in seen,
                )
            )
            seen.add(mail.message_id)
    return outcomes


def stored_message_ids(session: Session, mailbox: str, message_ids: Collection[str]) -> set[str]:
    """Which of ``message_ids`` are already stored as inbound mail of ``mailbox`` (one query)."""
    return set(stored_message_pks(session, message_ids, mailbox=mailbox, direction=Direction.INBOUND))


def store_message(
    session: Session,
    mail: ParsedMail,
    raw: bytes,
    *,
    mailbox: str,
    now: datetime,
    imap_uid: int | None = None,
    uidvalidity: int | None = None,
    flush: bool = True,
) -> Message:
    """Add the inbound ``Message`` (raw kept) and its ``Attachment`` rows; content None when oversize.

    ``flush=False`` leaves the rows pending (the caller's next flush or query writes them).
    """
    message = new_row(
        Message,
        direction=Direction.INBOUND,
        channel=Channel.EMAIL,
        kind=MessageKind.CITIZEN,
        mailbox=mailbox,
        message_id=mail.message_id,
        in_reply_to=mail.in_reply_to,
        references=list(mail.references),
        sender=mail.sender or None,
        recipients=[*mail.to, *mail.cc],
        subject=mail.subject[:998],
        body_text=mail.text,
        raw=raw,
        sha256=mail.raw_sha256,
        imap_uid=imap_uid,
        imap_uidvalidity=uidvalidity,
        received_at=now,
    )
    # On PostgreSQL the id comes from the pool, so that within a batch's copy_block the mail and its
    # attachments can be held back and written by COPY (``add_row``; elsewhere it is session.add).
    pooled = not flush and preassign_id(session, message) is not None
    # Assigned even when empty: the collection is then known (routing reads it without a query).
    message.attachments = [
        new_row(
            Attachment,
            message_pk=message.id,  # None on SQLite: the flush copies it from the relationship
            filename=(part.filename or "adjunto")[:255],
            content_type=part.content_type[:255],
            size=part.size,
            content=None if part.oversize else part.content,
        )
        for part in mail.attachments
    ]
    if not pooled:
        session.add(message)
        if flush:
            session.flush()
        return message
    add_row(session, message, joins_session=True)
    for attachment in message.attachments:
        preassign_id(session, attachment)
        add_row(session, attachment, joins_session=True)
    return message


def _automatic(
    session: Session,
    mail: ParsedMail,
    message: Message,
    verdict: LoopVerdict,
    *,
    config: ServiceConfig,
    now: datetime,
) -> InboundOutcome:
    """Store-and-log automatic mail (DESIGN "No loops"); link bounces of our mail to their consulta."""
    message.kind = _AUTOMATIC_KINDS[verdict.kind]
    if verdict.kind is MailKind.bounce:
        return _bounce(session, mail, message, verdict, config=config, now=now)
    # An auto-reply to one of our mails (the citizen's out-of-office) belongs to that consulta's trail.
    original = _our_message(session, mail.thread_ids, config)
    if original is not None and original.consulta_id is not None:
        message.consulta_id = original.consulta_id
    if verdict.kind is MailKind.auto_reply:  # a Red member's out-of-office hands the consulta over
        on_auto_reply(session, mail, message, original, config=config, now=now)
    session.flush()
    events.record(
        session,
        "automatic_mail",
        now=now,
        message=message,
        consulta=session.get(Consulta, message.consulta_id) if message.consulta_id else None,
        mail_kind=verdict.kind.value,
        reason=verdict.reason,
    )
    logger.info("mail %s is automatic (%s): stored, not answered", mail.message_id, verdict.reason)
    return InboundOutcome(
        OutcomeKind.AUTOMATIC,
        mail.message_id,
        message_pk=message.id,
        consulta_id=message.consulta_id,
        reason=verdict.reason,
    )


def _bounce(
    session: Session,
    mail: ParsedMail,
    message: Message,
    verdict: LoopVerdict,
    *,
    config: ServiceConfig,
    now: datetime,
) -> InboundOutcome:
    original = _our_message(session, list(verdict.bounced_message_ids), config)
    consulta: Consulta | None = None
    if original is not None and original.consulta_id is not None:
        consulta = session.get(Consulta, original.consulta_id)
        message.consulta_id = original.consulta_id
    session.flush()
    events.record(
        session,
        "bounce_received",
        now=now,
        message=message,
        consulta=consulta,
        reason=verdict.reason,
        bounced=list(verdict.bounced_message_ids),
    )
    if original is None or consulta is None:
        logger.info("bounce %s does not match a mail of ours", mail.message_id)
        return InboundOutcome(
            OutcomeKind.BOUNCE, mail.message_id, message_pk=message.id, reason=verdict.reason
        )
    if not on_routed_mail_bounce(session, original, config=config, now=now):
        mark_citizen_unreachable(session, consulta, original, config=config, now=now)
    return InboundOutcome(
        OutcomeKind.BOUNCE,
        mail.message_id,
        message_pk=message.id,
        consulta_id=consulta.id,
        consulta_number=consulta.number,
        reason=verdict.reason,
    )


def mark_citizen_unreachable(
    session: Session, consulta: Consulta, original: Message, *, config: ServiceConfig, now: datetime
) -> None:
    """Record that a mail to the citizen bounced; OGDAU is told once per consulta."""
    events.record(
        session,
        "citizen_unreachable",
        now=now,
        consulta=consulta,
        message=original,
        bounced_message_id=original.message_id,
    )
    tell_ogdau(
        session,
        config=config,
        now=now,
        key=f"ciudadano-inalcanzable:{consulta.id}",
        titulo="El correo del ciudadano rebotó",
        detalle=(
            "Un correo enviado al ciudadano fue rechazado por su servidor. Contacte al ciudadano por "
            "otro medio (teléfono registrado en la consulta)."
        ),
        consulta=consulta,
        asunto=original.subject,
    )
    logger.info(
        "consulta %s: citizen unreachable (bounce of %s)", consulta.number or consulta.id, original.message_id
    )


def _our_message(session: Session, message_ids: list[str], config: ServiceConfig) -> Message | None:
    """The first of our outbound mails among ``message_ids``."""
    pks = sent_message_pks(session, message_ids, sender=config.identity.address)
    return session.get(Message, min(pks.values())) if pks else None


def quarantine_mail(
    session: Session,
    raw: bytes,
    *,
    mailbox: str,
    reason: str,
    config: ServiceConfig,
    now: datetime,
    imap_uid: int | None = None,
    uidvalidity: int | None = None,
) -> Message:
    """Keep a mail that could not be processed (kind ``quarantined``), log it and tell OGDAU.

    Idempotent by the bytes' sha256. The row gets a synthetic Message-ID so that the mail's own
    Message-ID stays free: a re-read after a fix is processed normally, not taken for a duplicate.
    Call it in a fresh transaction (the failed one was rolled back).
    """
    # PostgreSQL's text columns refuse NUL, and an error may quote the mail's bytes.
    reason = reason.replace("\x00", "")
    sha = hashlib.sha256(raw).hexdigest()
    existing = session.scalar(
        select(Message).where(
            Message.mailbox == mailbox,
            Message.direction == Direction.INBOUND,
            Message.kind == MessageKind.QUARANTINED,
            Message.sha256 == sha,
        )
    )
    if existing is not None:
        return existing
    header_id = _header_message_id(raw)
    message = new_row(
        Message,
        direction=Direction.INBOUND,
        channel=Channel.EMAIL,
        kind=MessageKind.QUARANTINED,
        mailbox=mailbox,
        message_id=f"<quarantine-{sha}@consultas.invalid>",
        in_reply_to=header_id,
        raw=raw,
        sha256=sha,
        imap_uid=imap_uid,
        imap_uidvalidity=uidvalidity,
        error=reason[:2000],
        received_at=now,
    )
    session.add(message)
    session.flush()
    events.record(
        session, "mail_quarantined", now=now, message=message, reason=reason[:QUARANTINE_DETAIL_CHARS]
    )
    tell_ogdau(
        session,
        config=config,
        now=now,
        key=f"cuarentena:{sha}",
        titulo="Un correo recibido quedó en cuarentena",
        detalle=(
            "El sistema no pudo procesar un correo recibido en la casilla de consultas. "
            f"Revíselo en la carpeta de cuarentena. Motivo: {reason[:QUARANTINE_DETAIL_CHARS]}"
        ),
        asunto=header_id,
    )
    logger.warning("mail %s quarantined: %s", header_id or sha[:16], reason[:200])
    return message


def _header_message_id(raw: bytes) -> str | None:
    """The Message-ID header of bytes that may not parse as a mail (best effort, for the audit trail)."""
    head = raw[:65536].split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    for line in head.splitlines():
        if line[:11].lower() == b"message-id:":
            return normalize_message_id(line[11:].decode("ascii", "replace").replace("\x00", ""))
    return None

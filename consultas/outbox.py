"""The outbox: every outgoing message is a row written in the caller's transaction.

``enqueue_mail`` renders and stores the mail (``Message`` row, direction outbound) and its delivery
row (``Outbox``) in the session it is given; it never commits. Workers claim rows with a
conditional UPDATE (so two workers never send the same row), send, and mark them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, bindparam, func, literal, or_, select, update
from sqlalchemy.orm import Session

from consultas import events
from consultas.bulkwrite import add_row
from consultas.ids import ensure_id, preassign_id
from consultas.lookup import count_per_recipient
from consultas.mailer import (
    Envelope,
    OutgoingAttachment,
    build_mail,
    deterministic_message_id,
    render,
)
from consultas.models import (
    Channel,
    Consulta,
    Direction,
    Message,
    MessageKind,
    Outbox,
    OutboxStatus,
    new_row,
)
from consultas.txcache import transaction_cache

#: A claim not refreshed for this long belongs to a dead worker and may be retaken. A live worker
#: refreshes its claims several times within it (``workers.claims``), however long a send takes.
CLAIM_TIMEOUT = timedelta(seconds=30)
#: Backoff between attempts: 30 s, 1 min, 2 min ... capped at 1 h.
FIRST_BACKOFF = timedelta(seconds=30)
MAX_BACKOFF = timedelta(hours=1)
#: ``consultas.txcache`` name: primary recipient -> automatic mails queued to it in the last 24 h.
_RECENT_AUTOMATIC_CACHE = "outbox.recent_automatic"


@dataclass(frozen=True)
class MailIdentity:
    """Who our mail comes from (the mailbox) and the domain of our Message-IDs."""

    address: str
    name: str

    @property
    def message_id_domain(self) -> str:
        """Right-hand side of our Message-IDs: ``consultas.mef.gob.pe`` for ``consultas@mef.gob.pe``.

        A dedicated host name (not the ministry's domain, which staff mail also uses) lets loop
        detection recognise our own mail coming back without mistaking a Red member's reply for it.
        """
        local, _, domain = self.address.partition("@")
        return f"{local}.{domain}".lower()


def enqueue_mail(
    session: Session,
    *,
    template: str,
    context: Mapping[str, Any],
    envelope: Envelope,
    identity: MailIdentity,
    idempotency_key: str,
    now: datetime,
    consulta: Consulta | None = None,
    automatic: bool = True,
    auto_reply_cap: int | None = None,
    new_key: bool = False,
) -> Outbox | None:
    """Render ``template`` and add the mail and its delivery row to ``session``.

    Idempotent: a second call with the same key returns the first row. ``new_key=True`` says the
    key names a row created in this transaction (a new consulta's id), so it cannot exist yet and
    is not looked up. When ``automatic`` and ``auto_reply_cap`` is set, at most that many automatic
    mails go to the same first recipient in 24 hours; past it, nothing is queued (an event says so)
    and None is returned.
    """
    primary = envelope.to[0].lower() if envelope.to else None
    capped = automatic and auto_reply_cap is not None and primary is not None
    # Automatic mails per recipient in the last 24 h, read once per transaction and counted on.
    recent_by_recipient = transaction_cache(session, _RECENT_AUTOMATIC_CACHE) if capped else {}
    look_up_key = not new_key
    count_recent = capped and primary not in recent_by_recipient
    if look_up_key or count_recent:
        # One round trip for both checks: the key's row, and the recipient's automatic mails.
        existing_id, recent = session.execute(
            select(
                select(Outbox.id).where(Outbox.idempotency_key == idempotency_key).scalar_subquery()
                if look_up_key
                else literal(None),
                select(func.count(Outbox.id))
                .where(Outbox.primary_recipient == primary, *_automatic_in_last_day(now))
                .scalar_subquery()
                if count_recent
                else literal(0),
            )
        ).one()
        if existing_id is not None:
            return session.get(Outbox, existing_id)
        if count_recent:
            recent_by_recipient[primary] = recent or 0
    if capped:
        assert auto_reply_cap is not None
        if recent_by_recipient[primary] >= auto_reply_cap:
            events.record(
                session,
                "auto_reply_capped",
                now=now,
                consulta=consulta,
                template=template,
                cap=auto_reply_cap,
            )
            return None
        recent_by_recipient[primary] += 1
    rendered = render(template, context)
    message_id = deterministic_message_id(idempotency_key, identity.message_id_domain)
    raw = build_mail(
        rendered, envelope, sender=identity.address, sender_name=identity.name, message_id=message_id, now=now
    )
    message = new_row(
        Message,
        direction=Direction.OUTBOUND,
        channel=Channel.EMAIL,
        kind=MessageKind.OUTGOING,
        mailbox=identity.address,
        message_id=message_id,
        in_reply_to=envelope.in_reply_to,
        references=list(envelope.references),
        sender=identity.address,
        recipients=[*envelope.to, *envelope.cc],
        subject=rendered.subject,
        body_text=rendered.text,
        raw=raw,
        sha256=hashlib.sha256(raw).hexdigest(),
        # Set like an inbound row's (id included): a flush writes rows with the same columns
        # together, so a batch's mails in and out go in a few multi-row INSERTs.
        imap_uid=None,
        imap_uidvalidity=None,
        received_at=now,
    )
    row = new_row(
        Outbox,
        idempotency_key=idempotency_key,
        channel=Channel.EMAIL,
        template=template,
        envelope_to=[*envelope.to, *envelope.cc],
        primary_recipient=primary,
        automatic=automatic,
        status=OutboxStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    message_pk = preassign_id(session, message)
    if message_pk is not None:  # PostgreSQL: linked by ids, so the flush needs no relationship work
        message.consulta_id = row.consulta_id = (
            preassign_id(session, consulta) if consulta is not None else None
        )
        row.message_pk = message_pk
        preassign_id(session, row)
        add_row(session, message)  # both written with COPY within a batch's copy_block
        add_row(session, row)
    else:
        message.consulta = row.consulta = consulta
        row.message = message
        session.add(row)
    ensure_id(session, message)
    ensure_id(session, row)  # callers hint the worker with it; no flush needed on PostgreSQL
    return row


def preload_recent_automatic(session: Session, recipients: Iterable[str], *, now: datetime) -> None:
    """Count, in one query, the automatic mails of the last 24 h to each of ``recipients``.

    For a batch source: ``enqueue_mail`` then applies the per-recipient cap to these recipients
    without a query (and a flush) per mail. Recipients already counted in this transaction keep
    their running count.
    """
    recent_by_recipient = transaction_cache(session, _RECENT_AUTOMATIC_CACHE)
    wanted = sorted({r.lower() for r in recipients if r} - recent_by_recipient.keys())
    if not wanted:
        return
    counts = count_per_recipient(session, wanted, *_automatic_in_last_day(now))
    for recipient in wanted:
        recent_by_recipient[recipient] = counts.get(recipient, 0)


def _automatic_in_last_day(now: datetime) -> tuple[ColumnElement[bool], ...]:
    """The rows the per-recipient cap counts: automatic mails queued in the 24 hours before ``now``."""
    return (Outbox.automatic.is_(True), Outbox.created_at >= now - timedelta(hours=24))


def last_id(session: Session) -> int:
    """The highest outbox id now (0 when empty): the mark before a batch's new rows."""
    return int(session.scalar(select(func.max(Outbox.id))) or 0)


def pending_after(session: Session, after_id: int) -> list[int]:
    """Pending rows with an id above ``after_id``: those a batch queued (plus any concurrent ones;
    a send hint is idempotent, so that is harmless)."""
    return list(
        session.scalars(select(Outbox.id).where(Outbox.id > after_id, Outbox.status == OutboxStatus.PENDING))
    )


def enqueue_telegram(
    session: Session,
    *,
    chat_id: int,
    text: str,
    idempotency_key: str,
    now: datetime,
    consulta: Consulta | None = None,
    documents: Sequence[OutgoingAttachment] = (),
) -> Outbox:
    """Queue a Telegram message (and documents) to ``chat_id``; idempotent by key."""
    existing = session.scalar(select(Outbox).where(Outbox.idempotency_key == idempotency_key))
    if existing is not None:
        return existing
    message = Message(
        consulta_id=consulta.id if consulta else None,
        direction=Direction.OUTBOUND,
        channel=Channel.TELEGRAM,
        kind=MessageKind.OUTGOING,
        mailbox=f"telegram:{chat_id}",
        message_id=f"telegram-out:{idempotency_key}",
        body_text=text,
        received_at=now,
    )
    session.add(message)
    session.flush()
    for document in documents:
        message.attachments.append(
            _attachment_row(document.filename, document.content_type, document.content)
        )
    row = Outbox(
        idempotency_key=idempotency_key,
        consulta_id=consulta.id if consulta else None,
        message_pk=message.id,
        channel=Channel.TELEGRAM,
        template="telegram",
        envelope_to=[],
        payload={"chat_id": chat_id, "text": text},
        automatic=False,
        status=OutboxStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def _attachment_row(filename: str, content_type: str, content: bytes) -> Any:
    from consultas.models import Attachment

    return Attachment(filename=filename, content_type=content_type, size=len(content), content=content)


def claim(session: Session, outbox_id: int, *, worker: str, now: datetime) -> bool:
    """Atomically take a due row for sending; False when it is sent, failed, not due or taken."""
    return bool(claim_many(session, [outbox_id], worker=worker, now=now))


def claim_many(session: Session, outbox_ids: Sequence[int], *, worker: str, now: datetime) -> list[int]:
    """Atomically take the due rows among ``outbox_ids`` (one UPDATE); the ids taken, in id order.

    A row is due when pending and its next attempt has come, or when its claim was last refreshed
    more than ``CLAIM_TIMEOUT`` ago (a dead worker's); one sent, failed or held by a live worker is
    left alone.
    """
    if not outbox_ids:
        return []
    result = session.execute(
        update(Outbox)
        .where(
            Outbox.id.in_(list(outbox_ids)),
            or_(
                (Outbox.status == OutboxStatus.PENDING) & (Outbox.next_attempt_at <= now),
                (Outbox.status == OutboxStatus.SENDING) & (Outbox.claimed_at < now - CLAIM_TIMEOUT),
            ),
        )
        .values(status=OutboxStatus.SENDING, claimed_at=now, claimed_by=worker, attempts=Outbox.attempts + 1)
        .returning(Outbox.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(result.scalars())


def refresh_claims(session: Session, outbox_ids: Sequence[int], *, worker: str, now: datetime) -> int:
    """Renew ``worker``'s claims on these rows (those it still holds); the number renewed."""
    if not outbox_ids:
        return 0
    result = session.execute(
        update(Outbox)
        .where(
            Outbox.id.in_(list(outbox_ids)),
            Outbox.status == OutboxStatus.SENDING,
            Outbox.claimed_by == worker,
        )
        .values(claimed_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def mark_sent_many(session: Session, outbox_ids: Sequence[int], *, now: datetime) -> None:
    """Record the successful send of these rows (one UPDATE)."""
    if outbox_ids:
        session.execute(
            update(Outbox)
            .where(Outbox.id.in_(list(outbox_ids)))
            .values(status=OutboxStatus.SENT, sent_at=now, last_error=None)
            .execution_options(synchronize_session=False)
        )


def postpone(session: Session, outbox_ids: Sequence[int], *, until: datetime) -> None:
    """Give claimed rows back untried, due again at ``until`` (the attempt is not counted)."""
    if outbox_ids:
        session.execute(
            update(Outbox)
            .where(Outbox.id.in_(list(outbox_ids)), Outbox.status == OutboxStatus.SENDING)
            .values(
                status=OutboxStatus.PENDING,
                attempts=Outbox.attempts - 1,
                next_attempt_at=until,
                claimed_at=None,
                claimed_by=None,
            )
            .execution_options(synchronize_session=False)
        )


def mark_sent(session: Session, outbox_id: int, *, now: datetime) -> None:
    """Record a successful send."""
    mark_sent_many(session, [outbox_id], now=now)


def sent_recorder(engine: Engine) -> Connection:
    """A connection for ``commit_sent``, in autocommit mode: each record is its own transaction.

    Without the implicit BEGIN and the separate COMMIT a record is one round trip instead of
    three; on PostgreSQL that halved the client's CPU per record and cut the server's by a third
    (``bench/commit_sent.py``). The caller closes it (``with sent_recorder(engine) as c:``).
    """
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def commit_sent(connection: Connection, outbox_id: int, *, now: datetime) -> None:
    """Record one successful send and commit it at once, on a connection the caller keeps open.

    A sender records every mail this way before handing the next one to the server, so the cost
    is per mail: one UPDATE on a held ``sent_recorder`` connection (no ORM session checking a
    pooled connection out and pinging it), with a statement built once (building it per call
    cost more than executing it). On a connection not in autocommit mode the COMMIT follows.
    """
    connection.execute(_COMMIT_SENT, {"outbox_id": outbox_id, "now": now})
    connection.commit()


#: ``commit_sent``'s statement, built once: building it per mail cost more than executing it.
_COMMIT_SENT = (
    update(Outbox)
    .where(Outbox.id == bindparam("outbox_id"))
    .values(status=OutboxStatus.SENT, sent_at=bindparam("now"), last_error=None)
)


def backoff(attempts: int) -> timedelta:
    """Exponential backoff after ``attempts`` failed tries."""
    return min(FIRST_BACKOFF * (1 << min(max(attempts - 1, 0), 20)), MAX_BACKOFF)


def mark_retry(session: Session, outbox_id: int, *, error: str, now: datetime, max_attempts: int) -> bool:
    """Put a row back for a later attempt; past ``max_attempts`` mark it failed. True if it will retry."""
    row = session.get(Outbox, outbox_id)
    if row is None:
        return False
    row.last_error = error[:2000]
    if row.attempts >= max_attempts:
        row.status = OutboxStatus.FAILED
        row.failed_at = now
        return False
    row.status = OutboxStatus.PENDING
    row.next_attempt_at = now + backoff(row.attempts)
    return True


def mark_failed(session: Session, outbox_id: int, *, error: str, now: datetime) -> None:
    """Record a permanent failure (visible in the digest and ``consultas outbox --failed``)."""
    row = session.get(Outbox, outbox_id)
    if row is not None:
        row.status = OutboxStatus.FAILED
        row.failed_at = now
        row.last_error = error[:2000]


def retry_failed(session: Session, *, now: datetime, outbox_id: int | None = None) -> int:
    """Give failed rows (or one) a fresh start; returns how many."""
    statement = update(Outbox).where(Outbox.status == OutboxStatus.FAILED)
    if outbox_id is not None:
        statement = statement.where(Outbox.id == outbox_id)
    result = session.execute(
        statement.values(
            status=OutboxStatus.PENDING, attempts=0, next_attempt_at=now, failed_at=None
        ).execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def due_ids(
    session: Session, *, now: datetime, limit: int = 500, grace: timedelta = timedelta(0)
) -> list[int]:
    """Rows that should be sent now: pending and due for at least ``grace``, or claimed by a worker
    that died (no grace: nothing else will send them)."""
    return list(
        session.scalars(
            select(Outbox.id)
            .where(
                or_(
                    (Outbox.status == OutboxStatus.PENDING) & (Outbox.next_attempt_at <= now - grace),
                    (Outbox.status == OutboxStatus.SENDING) & (Outbox.claimed_at < now - CLAIM_TIMEOUT),
                )
            )
            .order_by(Outbox.id)
            .limit(limit)
        )
    )

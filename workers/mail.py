"""Sending outbox rows: the ``send_outbox_row`` actor, the batch ``drain_outbox`` and the send hint.

Retry policy (one clock, the database's): a transient failure (SMTP down, timeout, 4xx) is
recorded on the row with ``mark_retry`` (attempts + exponential backoff in ``next_attempt_at``,
failed after ``CONSULTAS_OUTBOX_MAX_ATTEMPTS``) and the actor returns normally; the periodic sweep
re-enqueues the row when it is due. Dramatiq's own retries only cover errors that leave the row
unmarked (the database itself unreachable). A permanent failure (5xx) marks the row failed with an
audit ``Event``; a refused Red member address also gets ``red_member.bounced_at`` (routing decides
what to do with it). The claim (a conditional UPDATE) makes two workers never send one row.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker, undefer

from consultas import events
from consultas.calendar import WorkingCalendar
from consultas.clock import Clock
from consultas.errors import PermanentError, TransientError
from consultas.mailer import OutgoingAttachment
from consultas.models import Channel, Consulta, Message, Outbox, RedMember
from consultas.outbox import (
    claim_many,
    commit_sent,
    due_ids,
    mark_failed,
    mark_retry,
    mark_sent,
    postpone,
    sent_recorder,
)
from workers.broker import OUTBOX_QUEUE, actor, send_hint
from workers.claims import ClaimKeeper
from workers.runtime import Runtime, get_runtime, worker_name
from workers.telegram import TelegramTransport
from workers.transport import Delivery, MailTransport, RecipientsRefusedError, SendResult

logger = logging.getLogger(__name__)


#: Rows per claim / ``sent`` mark in ``Sender.deliver_many``.
DELIVER_CHUNK = 50
#: Rows per ``send_outbox_rows`` message in ``hint_send_batches``.
HINT_BATCH = 50


class Outcome(StrEnum):
    """What one delivery attempt did to its row."""

    SENT = "sent"
    SKIPPED = "skipped"  # not claimed: already sent, failed, not due, or another worker has it
    RETRY = "retry"
    FAILED = "failed"
    POSTPONED = "postponed"  # an office-hours mail outside office hours: due at the next opening


#: Follow-up mails to the Red and OGDAU go out only on working days in office hours (6.1-6.3). They
#: are queued then; one whose send slips past 16:30 (SMTP down, a backlog) waits for the next opening.
OFFICE_HOURS_TEMPLATES = frozenset(
    {"recordatorio_red", "escalamiento", "resumen_diario", "reporte_trimestral"}
)


@dataclass(frozen=True)
class _Job:
    """Plain values of a claimed row, read in the claim's transaction (no ORM object escapes)."""

    outbox_id: int
    consulta_id: int | None
    channel: Channel
    template: str
    message_id: str
    sender: str
    recipients: list[str]
    raw: bytes
    payload: dict[str, Any]
    documents: list[OutgoingAttachment] = field(default_factory=list)


@dataclass(frozen=True)
class Sender:
    """Delivers outbox rows through a mail transport, and Telegram rows through the Telegram one."""

    sessions: sessionmaker[Session]
    transport: MailTransport
    clock: Clock
    max_attempts: int
    #: Sends Telegram rows; None fails them (no bot token configured).
    telegram: TelegramTransport | None = None
    #: Office hours for ``OFFICE_HOURS_TEMPLATES``; None sends them at any time.
    calendar: WorkingCalendar | None = None
    #: Keeps the claims of rows being sent fresh; None lets them expire after ``CLAIM_TIMEOUT``.
    claims: ClaimKeeper | None = None

    @classmethod
    def from_runtime(cls, runtime: Runtime) -> Sender:
        settings = runtime.settings
        return cls(
            sessions=runtime.sessions,
            transport=runtime.transport,
            clock=runtime.clock,
            max_attempts=settings.outbox_max_attempts,
            telegram=TelegramTransport(settings.telegram_token.get_secret_value(), settings.telegram_api_url),
            calendar=runtime.config.calendar,
            claims=runtime.claims,
        )

    def deliver(self, outbox_id: int, *, worker: str) -> Outcome:
        """Claim, send and mark one row. Idempotent: a row already sent or taken is SKIPPED."""
        outcomes = self.deliver_many([outbox_id], worker=worker)
        return next(outcome for outcome, count in outcomes.items() if count)

    def deliver_many(self, outbox_ids: Iterable[int], *, worker: str) -> Counter[Outcome]:
        """Claim, send and mark rows: one claim and one load per ``DELIVER_CHUNK`` rows.

        Each row gets its outcome (sent, skipped when sent or taken already, postponed, retried or
        failed), recorded in its own commit as soon as the server answered and before the next mail
        of the chunk is handed to it; the chunk's mails share the transport's one connection. So a
        crash sends again at most the one mail whose acceptance arrived and whose record did not
        commit.
        """
        ids = sorted(set(outbox_ids))
        outcomes: Counter[Outcome] = Counter()
        for start in range(0, len(ids), DELIVER_CHUNK):
            chunk = ids[start : start + DELIVER_CHUNK]
            with self.sessions.begin() as session:
                claimed = claim_many(session, chunk, worker=worker, now=self.clock.now())
                jobs = _load_jobs(session, claimed)
                outcomes[Outcome.SKIPPED] += len(chunk) - len(jobs)
                loaded = len(jobs)
                jobs = self._in_office_hours(session, jobs)
                outcomes[Outcome.POSTPONED] += loaded - len(jobs)
            outcomes.update(self._send_and_record(jobs, worker=worker))
        return outcomes

    def _send_and_record(self, jobs: list[_Job], *, worker: str) -> Counter[Outcome]:
        """Send the claimed jobs in order, recording each one's outcome right after its send."""
        outcomes: Counter[Outcome] = Counter()
        held = [job.outbox_id for job in jobs]
        if self.claims is not None:
            self.claims.hold(worker, held)
        try:
            mail_jobs = [job for job in jobs if not _is_telegram(job)]
            with sent_recorder(self._engine()) as recorder:

                def record_mail(index: int, result: SendResult | Exception) -> None:
                    outcomes[self._record(mail_jobs[index], result, recorder)] += 1

                if mail_jobs:
                    deliveries = [Delivery(job.raw, job.sender, job.recipients) for job in mail_jobs]
                    self.transport.send_many(deliveries, on_result=record_mail)
                for job in jobs:
                    if _is_telegram(job):
                        outcomes[self._record(job, self._telegram(job), recorder)] += 1
        finally:
            if self.claims is not None:
                self.claims.release(worker, held)
        return outcomes

    def _engine(self) -> Engine:
        engine = self.sessions.kw["bind"]
        assert isinstance(engine, Engine), "Sender needs a sessionmaker bound to an engine"
        return engine

    def _record(self, job: _Job, result: SendResult | Exception, recorder: Connection) -> Outcome:
        """Commit what one send did to its row (a plain success on ``recorder``, held for the chunk)."""
        if isinstance(result, SendResult) and not result.refused:
            commit_sent(recorder, job.outbox_id, now=self.clock.now())
            logger.info("outbox %s sent (%s, %s)", job.outbox_id, job.template, job.message_id)
            return Outcome.SENT
        if isinstance(result, SendResult):
            return self._record_sent(job, result)
        if isinstance(result, PermanentError):
            refused = result.refused if isinstance(result, RecipientsRefusedError) else {}
            return self._record_failure(job, str(result), refused)
        if isinstance(result, TransientError):
            return self._record_retry(job, str(result))
        # Per-row boundary: a bug in one row's send leaves it to the retries.
        logger.error("outbox %s (%s) failed unexpectedly", job.outbox_id, job.message_id, exc_info=result)
        return self._record_retry(job, f"unexpected error: {result!r}")

    def _record_sent(self, job: _Job, result: SendResult) -> Outcome:
        """A send that some recipients refused: sent, the refusals recorded (a Red address bounced)."""
        with self.sessions.begin() as session:
            now = self.clock.now()
            mark_sent(session, job.outbox_id, now=now)
            bounced = _mark_red_bounced(session, result.refused, now=now)
            _record(session, "outbox_recipient_refused", job, now=now, refused=result.refused,
                    red_bounced=bounced)  # fmt: skip
        logger.info("outbox %s sent (%s, %s)", job.outbox_id, job.template, job.message_id)
        return Outcome.SENT

    def _in_office_hours(self, session: Session, jobs: list[_Job]) -> list[_Job]:
        """The jobs that may go now; office-hours mails outside them are postponed to the next opening."""
        now = self.clock.now()
        if self.calendar is None or self.calendar.is_office_hours(now):
            return jobs
        waiting = [job for job in jobs if job.template in OFFICE_HOURS_TEMPLATES]
        if waiting:
            opening = self.calendar.next_office_instant(now)
            postpone(session, [job.outbox_id for job in waiting], until=opening)
            logger.info("outbox %s: outside office hours, due again at %s",
                        [job.outbox_id for job in waiting], opening.isoformat())  # fmt: skip
        return [job for job in jobs if job.template not in OFFICE_HOURS_TEMPLATES]

    def _telegram(self, job: _Job) -> SendResult | Exception:
        try:
            if self.telegram is None:
                raise PermanentError("CONSULTAS_TELEGRAM_TOKEN is not set: Telegram messages cannot be sent")
            self.telegram.send(job.payload, job.documents)
        except Exception as exc:  # per-row boundary, as for mails in ``send_many``
            return exc
        return SendResult()

    def _record_retry(self, job: _Job, error: str) -> Outcome:
        with self.sessions.begin() as session:
            now = self.clock.now()
            if mark_retry(session, job.outbox_id, error=error, now=now, max_attempts=self.max_attempts):
                logger.warning("outbox %s (%s) will be retried: %s", job.outbox_id, job.message_id, error)
                return Outcome.RETRY
            _record(session, "outbox_failed", job, now=now, error=error[:500], reason="max_attempts")
        logger.error("outbox %s (%s) failed after its last attempt: %s", job.outbox_id, job.message_id, error)
        return Outcome.FAILED

    def _record_failure(self, job: _Job, error: str, refused: dict[str, str]) -> Outcome:
        with self.sessions.begin() as session:
            now = self.clock.now()
            mark_failed(session, job.outbox_id, error=error, now=now)
            bounced = _mark_red_bounced(session, refused, now=now) if refused else []
            _record(session, "outbox_failed", job, now=now, error=error[:500], reason="permanent",
                    refused=refused, red_bounced=bounced)  # fmt: skip
        logger.error("outbox %s (%s) failed permanently: %s", job.outbox_id, job.message_id, error)
        return Outcome.FAILED


def _is_telegram(job: _Job) -> bool:
    return job.channel == Channel.TELEGRAM


def _load_jobs(session: Session, outbox_ids: list[int]) -> list[_Job]:
    """The claimed rows with their messages, in id order: one query (plus Telegram documents)."""
    if not outbox_ids:
        return []
    pairs = session.execute(
        select(Outbox, Message)
        .join(Message, Message.id == Outbox.message_pk)
        .options(undefer(Message.raw))  # deferred elsewhere; here every row needs it (no query per row)
        .where(Outbox.id.in_(outbox_ids))
        .order_by(Outbox.id)
    ).all()
    return [_job(row, message) for row, message in pairs]


def _job(row: Outbox, message: Message) -> _Job:
    documents = (
        [
            OutgoingAttachment(filename=a.filename, content_type=a.content_type, content=a.content or b"")
            for a in message.attachments
        ]
        if row.channel == Channel.TELEGRAM
        else []
    )
    return _Job(
        outbox_id=row.id,
        consulta_id=row.consulta_id,
        channel=row.channel,
        template=row.template,
        message_id=message.message_id,
        sender=message.sender or message.mailbox,
        recipients=list(row.envelope_to),
        raw=message.raw or b"",
        payload=dict(row.payload or {}),
        documents=documents,
    )


def _mark_red_bounced(session: Session, refused: dict[str, str], *, now: Any) -> list[str]:
    """Set ``bounced_at`` on current Red members whose address was refused; return those addresses."""
    addresses = [address.lower() for address in refused]
    result = session.execute(
        update(RedMember)
        .where(func.lower(RedMember.email).in_(addresses), RedMember.valid_to.is_(None))
        .values(bounced_at=now)
        .returning(RedMember.email)
        .execution_options(synchronize_session=False)
    )
    return sorted({email.lower() for email in result.scalars()})


def _record(session: Session, kind: str, job: _Job, *, now: Any, **detail: Any) -> None:
    consulta = session.get(Consulta, job.consulta_id) if job.consulta_id is not None else None
    events.record(session, kind, now=now, consulta=consulta, actor="workers.mail", outbox_id=job.outbox_id,
                  template=job.template, message_id=job.message_id, **detail)  # fmt: skip


def drain_outbox(sender: Sender, *, limit: int = 500, worker: str | None = None) -> Counter[Outcome]:
    """Send every due row (up to ``limit``) in this thread, over one reused connection."""
    with sender.sessions() as session:
        ids = due_ids(session, now=sender.clock.now(), limit=limit)
    return sender.deliver_many(ids, worker=worker or worker_name())


@actor(
    queue_name=OUTBOX_QUEUE,
    max_retries=3,
    min_backoff_ms=2_000,
    max_backoff_ms=60_000,
    time_limit_ms=120_000,
)
def send_outbox_row(outbox_id: int) -> None:
    """Send one outbox row (mail or Telegram) if it is still due; running it twice sends once."""
    Sender.from_runtime(get_runtime()).deliver(outbox_id, worker=worker_name())


@actor(
    queue_name=OUTBOX_QUEUE,
    max_retries=3,
    min_backoff_ms=2_000,
    max_backoff_ms=60_000,
    time_limit_ms=600_000,
)
def send_outbox_rows(outbox_ids: list[int]) -> None:
    """Send many outbox rows (those still due) over one connection; running it twice sends once."""
    Sender.from_runtime(get_runtime()).deliver_many(outbox_ids, worker=worker_name())


def hint_send_batches(outbox_ids: Iterable[int], *, batch: int = HINT_BATCH) -> int:
    """Like ``hint_send``, one ``send_outbox_rows`` message per ``batch`` rows; returns rows hinted.

    For a source that commits many rows at once (a Maildir or IMAP batch): each message is sent
    by one worker thread over its one SMTP connection, with one claim and one mark per chunk.
    """
    ids = sorted(set(outbox_ids))
    return sum(
        len(ids[start : start + batch])
        for start in range(0, len(ids), batch)
        if send_hint(send_outbox_rows, ids[start : start + batch])
    )


def hint_send(outbox_ids: Iterable[int]) -> int:
    """After commit, ask the workers to send these rows now; returns how many hints were enqueued.

    A hint that cannot reach the broker (Redis down) is logged and dropped, never raised: the row
    is in the database and the sweep re-enqueues it.
    """
    return sum(send_hint(send_outbox_row, outbox_id) for outbox_id in outbox_ids)


def hint_for_separate_workers(broker_url: str) -> Callable[[list[int]], object] | None:
    """For a process without workers of its own (``consultas poll``, ``consultas bot``).

    With Redis, a hook telling the worker processes about new outbox rows at once; with the
    memory broker None: a queue in this process would reach no worker, the sweep finds the rows.
    """
    if broker_url == "memory":
        return None
    from workers.broker import configure_broker

    configure_broker(broker_url)
    return hint_send_batches

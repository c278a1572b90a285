"""The IMAP intake edge: poll the mailbox and feed each mail, exactly once, to the pipeline.

Exactly-once (DESIGN "Exactly-once intake"): mails are read with ``BODY.PEEK[]``, stored by
``intake.pipeline.process_inbound_mail`` in a committed transaction, and only then moved (UID MOVE)
to the processed folder. A crash anywhere leaves the mail in the intake folder; the next poll
re-reads it and the pipeline's Message-ID dedup finds it done. A mail the pipeline cannot handle is
kept by ``quarantine_mail`` and moved to the quarantine folder; the mails after it go on.

Everything in the intake folder is work (processed mail is moved out), so ``\\Seen`` is never
consulted. ``run_poller`` holds a per-mailbox lease (one poller per mailbox), IDLEs where the
server offers it with a catch-up poll every ``CONSULTAS_IMAP_POLL_INTERVAL_S``, and reconnects with
exponential backoff. The IMAP protocol itself lives in ``intake.imap_client``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from consultas.clock import Clock
from consultas.context import ServiceConfig
from consultas.errors import ConfigurationError, TransientError
from consultas.lease import NamedLease, mailbox_lease_name
from consultas.models import MailboxState
from consultas.outbox import last_id, pending_after
from consultas.settings import Settings
from consultas.watchdog import IMAP_POLL, record_probe_safely
from intake.batching import MAX_BATCH_BYTES, collect_after_batch, size_bounded_batches
from intake.imap_client import ImapConnection, connect
from intake.pipeline import InboundOutcome, process_inbound_batch, process_inbound_mail, quarantine_mail

logger = logging.getLogger(__name__)

#: Mails fetched and committed together: one UID FETCH, one transaction, one UID MOVE per batch.
#: The next batch is fetched while one is processed, so two are in memory: at 50 the poller peaked
#: at 134 MB RSS and the same mails/s as at 100 (164 MB) in bench/bench_intake_imap.py. A batch
#: also stops short of ``intake.batching.MAX_BATCH_BYTES`` of raw mail.
DEFAULT_BATCH_SIZE = 50
#: The steps a crash test can kill the poller at (``crash_at`` is called with each, in order).
CRASH_STEPS = ("after_fetch", "after_commit", "before_move", "after_move")
#: Reconnect delays: doubled after each failure, from the first value up to the cap.
BACKOFF_INITIAL_S = 1.0
BACKOFF_MAX_S = 60.0
#: The mailbox lease outlives several poll cycles, so a live poller never loses it by accident.
LEASE_MIN_TTL = timedelta(seconds=30)

CrashHook = Callable[[str], None]
#: Called after each commit with the ids of the outbox rows it queued (the workers' send hint).
CommittedHook = Callable[[list[int]], object]


class LeaseLostError(TransientError):
    """Raised when another poller took over our mailbox lease: stop working it at once."""


@dataclass
class PollResult:
    """What one poll did: pipeline outcomes by kind, plus ``fetched``, ``moved``, ``quarantined``."""

    counts: Counter[str] = field(default_factory=Counter)

    def merge(self, other: PollResult) -> None:
        self.counts.update(other.counts)


@dataclass(frozen=True)
class PollContext:
    """What a poll needs besides the connection, built once per poller."""

    settings: Settings
    sessions: sessionmaker[Session]
    config: ServiceConfig
    clock: Clock
    crash_at: CrashHook | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    batch_max_bytes: int = MAX_BATCH_BYTES
    lease: NamedLease | None = None
    on_committed: CommittedHook | None = None

    @property
    def state_key(self) -> str:
        """The ``MailboxState`` row of this folder (account, host and folder)."""
        return mailbox_lease_name(self.settings.imap_host, self.settings.imap_user, self.settings.imap_folder)

    def crash(self, step: str) -> None:
        if self.crash_at is not None:
            self.crash_at(step)


@dataclass
class _BatchOutcome:
    done: list[int] = field(default_factory=list)
    quarantined: list[int] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    outbox_ids: list[int] = field(default_factory=list)


# Public entry points ----------------------------------------------------------------------------


def check_imap_settings(settings: Settings) -> None:
    """Fail before connecting when an IMAP setting the poller needs is missing."""
    problems = [
        f"CONSULTAS_IMAP_{name.upper()}: required when CONSULTAS_IMAP_HOST is set"
        for name, value in (
            ("user", settings.imap_user),
            ("password", settings.imap_password.get_secret_value()),
        )
        if not value
    ]
    folders = {settings.imap_folder, settings.imap_processed_folder, settings.imap_quarantine_folder}
    if len(folders) != 3:
        problems.append(
            "CONSULTAS_IMAP_FOLDER, _PROCESSED_FOLDER and _QUARANTINE_FOLDER must be three different folders"
        )
    if problems:
        raise ConfigurationError("invalid setting: " + "; ".join(problems))


async def poll_once(
    settings: Settings,
    sessions: sessionmaker[Session],
    config: ServiceConfig,
    clock: Clock,
    *,
    crash_at: CrashHook | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    batch_max_bytes: int = MAX_BATCH_BYTES,
    on_committed: CommittedHook | None = None,
) -> PollResult:
    """Connect, process every mail now in the intake folder, log out (no lease: tests and tools).

    ``crash_at`` is called with each of ``CRASH_STEPS`` as the poll reaches it (crash tests).
    """
    context = PollContext(
        settings,
        sessions,
        config,
        clock,
        crash_at=crash_at,
        batch_size=batch_size,
        batch_max_bytes=batch_max_bytes,
        on_committed=on_committed,
    )
    async with connect(settings) as connection:
        return await poll_connection(connection, context)


async def run_poller(
    settings: Settings,
    sessions: sessionmaker[Session],
    config: ServiceConfig,
    clock: Clock,
    stop: asyncio.Event,
    *,
    holder: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_committed: CommittedHook | None = None,
) -> None:
    """Poll the mailbox until ``stop`` is set: lease, IDLE + catch-up polls, reconnect with backoff.

    ``on_committed`` (e.g. ``workers.mail.hint_send_batches``) gets the outbox rows each commit queued.
    """
    check_imap_settings(settings)
    cycle_s = min(settings.imap_poll_interval_s, settings.imap_idle_timeout_s)
    lease = NamedLease(
        sessions,
        mailbox_lease_name(settings.imap_host, settings.imap_user, settings.imap_folder),
        holder or f"{socket.gethostname()}:{os.getpid()}:{id(stop):x}",
        clock,
        ttl=max(LEASE_MIN_TTL, timedelta(seconds=4 * cycle_s)),
    )
    context = PollContext(
        settings, sessions, config, clock, batch_size=batch_size, lease=lease, on_committed=on_committed
    )
    failures = 0
    holding = False
    try:
        while not stop.is_set():
            try:
                holding = await asyncio.to_thread(lease.acquire)
            except _DATABASE_DOWN as exc:
                delay = min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * 2**failures)
                failures += 1
                logger.warning("IMAP poller: database unavailable (%s); retrying in %.0f s", exc, delay)
                await _sleep_unless_stopped(stop, delay)
                continue
            if not holding:
                logger.info("mailbox %s is polled by another process; standing by", lease.name)
                await _sleep_unless_stopped(stop, cycle_s)
                continue
            try:
                async with connect(settings) as connection:
                    failures = 0
                    await _serve_connection(connection, context, stop, cycle_s)
            except LeaseLostError:
                logger.warning("lost the lease on %s to another poller; standing by", lease.name)
                holding = False
            except TransientError as exc:
                delay = min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * 2**failures)
                failures += 1
                logger.warning("IMAP poller: %s; retrying in %.0f s", exc, delay)
                await asyncio.to_thread(
                    record_probe_safely, sessions, IMAP_POLL, now=clock.now(), ok=False, error=str(exc)
                )
                await _sleep_unless_stopped(stop, delay)
            except Exception:  # loop boundary: a bug must not end intake; log it and start over
                delay = min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * 2**failures)
                failures += 1
                logger.exception("IMAP poller failed; restarting in %.0f s", delay)
                await _sleep_unless_stopped(stop, delay)
    finally:
        if holding:
            try:
                await asyncio.to_thread(lease.release)
            except sa_exc.SQLAlchemyError:
                logger.warning("could not release the lease on %s; it expires by itself", lease.name)


async def _serve_connection(
    connection: ImapConnection, context: PollContext, stop: asyncio.Event, cycle_s: float
) -> None:
    """On one connection: poll, then IDLE (or wait) up to a cycle, until stopped."""
    while not stop.is_set():
        result = await poll_connection(connection, context)
        await asyncio.to_thread(
            record_probe_safely, context.sessions, IMAP_POLL, now=context.clock.now(), ok=True
        )  # the watchdog's "last successful poll" (consultas.watchdog)
        if result.counts["fetched"]:
            logger.info("IMAP poll: %s", dict(sorted(result.counts.items())))
        await _renew(context.lease)
        if stop.is_set():
            return
        await connection.wait_for_new_mail(cycle_s, stop=stop)


async def poll_connection(connection: ImapConnection, context: PollContext) -> PollResult:
    """Process every mail now in the intake folder over an open connection; return what happened.

    The large mails are weighed first (``_weigh``), so a batch holds at most ``batch_size`` mails
    and ``batch_max_bytes`` bytes (``intake.batching``). For each batch in UID order: UID FETCH
    BODY.PEEK[] -> one transaction through the pipeline
    (a failing batch is redone mail by mail, quarantining the ones that fail) -> commit -> UID MOVE
    of the committed set. The next batch is fetched, and the previous one moved, while this one is
    processed; a batch's mails are moved only after its commit, and a crash before they are re-reads
    them as duplicates.
    """
    settings = context.settings
    selected = await connection.select(settings.imap_folder)
    await asyncio.to_thread(_track_uidvalidity, context, selected.uidvalidity)
    result = PollResult()
    uids = await connection.search_uids()
    if not uids:
        return result
    await connection.ensure_folder(settings.imap_processed_folder)
    sized = await _weigh(connection, uids, context)
    batches = size_bounded_batches(sized, max_count=context.batch_size, max_bytes=context.batch_max_bytes)
    prefetch: asyncio.Task[list[tuple[int, bytes]]] | None = asyncio.create_task(connection.fetch(batches[0]))
    moving: asyncio.Task[int] | None = None
    lease_checked = time.monotonic()
    try:
        for index in range(len(batches)):
            assert prefetch is not None
            fetched = await prefetch
            prefetch = None
            result.counts["fetched"] += len(fetched)
            context.crash("after_fetch")
            if index + 1 < len(batches):
                prefetch = asyncio.create_task(connection.fetch(batches[index + 1]))
            # The previous batch's UID MOVE runs on the connection while this one is written.
            outcome = await asyncio.to_thread(_commit_batch, context, fetched, selected.uidvalidity)
            if moving is not None:
                result.counts["moved"] += await _moved(moving, context)
            collect_after_batch(sum(len(raw) for _, raw in fetched))  # large batches only; ~20 ms
            result.counts.update(outcome.counts)
            context.crash("after_commit")
            if context.on_committed is not None and outcome.outbox_ids:
                context.on_committed(outcome.outbox_ids)
            if outcome.quarantined:
                await connection.ensure_folder(settings.imap_quarantine_folder)
            context.crash("before_move")
            moving = asyncio.create_task(_move(connection, outcome, settings))
            if context.lease is not None and time.monotonic() - lease_checked > _renew_every_s(context.lease):
                await _renew(context.lease)
                lease_checked = time.monotonic()
        if moving is not None:
            result.counts["moved"] += await _moved(moving, context)
    finally:
        for task in (prefetch, moving):
            if task is not None:
                task.cancel()  # a no-op for a task already done
    return result


async def _moved(moving: asyncio.Task[int], context: PollContext) -> int:
    """Wait for a batch's move to finish; returns how many mails it moved to the processed folder."""
    moved = await moving
    context.crash("after_move")
    return moved


async def _move(connection: ImapConnection, outcome: _BatchOutcome, settings: Settings) -> int:
    """Move a committed batch's mails out of the intake folder; returns how many were processed."""
    await connection.move(outcome.done, settings.imap_processed_folder)
    await connection.move(outcome.quarantined, settings.imap_quarantine_folder)
    return len(outcome.done)


async def _weigh(connection: ImapConnection, uids: list[int], context: PollContext) -> list[tuple[int, int]]:
    """``(uid, size)`` for batching: exact sizes for the large mails, an upper bound for the rest.

    One ``UID SEARCH LARGER`` finds the mails over a full batch's fair share of bytes; only those
    are weighed (the common case: none). Every other mail counts as that share, so a batch of
    ``batch_size`` of them stays within ``batch_max_bytes``.
    """
    share = max(1, context.batch_max_bytes // context.batch_size)
    large = await connection.search_uids(f"LARGER {share}")
    sizes = await connection.fetch_sizes(large)
    heavy = set(large)
    return [(uid, sizes.get(uid, context.batch_max_bytes) if uid in heavy else share) for uid in uids]


# Database side (runs in a worker thread) -------------------------------------------------------


def _track_uidvalidity(context: PollContext, uidvalidity: int) -> None:
    """Record the folder's UIDVALIDITY; on a change, restart UID tracking (Message-ID dedup holds)."""
    now = context.clock.now()
    try:
        _track_uidvalidity_unguarded(context, uidvalidity, now)
    except _DATABASE_DOWN as exc:
        raise TransientError(f"database unavailable: {exc}") from exc


def _track_uidvalidity_unguarded(context: PollContext, uidvalidity: int, now: datetime) -> None:
    with context.sessions.begin() as session:
        state = session.get(MailboxState, context.state_key)
        if state is None:
            session.add(
                MailboxState(mailbox=context.state_key, uidvalidity=uidvalidity, last_uid=0, updated_at=now)
            )
        elif state.uidvalidity != uidvalidity:
            logger.warning(
                "UIDVALIDITY of %s changed from %d to %d: UIDs restart; Message-ID dedup prevents repeats",
                context.state_key,
                state.uidvalidity,
                uidvalidity,
            )
            state.uidvalidity = uidvalidity
            state.last_uid = 0
            state.updated_at = now


def _outbox_high_water(session: Session, context: PollContext) -> int:
    """The highest outbox id before this transaction's work (0 when nobody wants send hints)."""
    if context.on_committed is None:
        return 0
    return last_id(session)


def _record_progress(
    session: Session, context: PollContext, uids: Sequence[int], now: datetime, *, outbox_after: int
) -> list[int]:
    """Advance ``last_uid``; return the pending outbox rows queued since ``outbox_after`` (for hints)."""
    state = session.get(MailboxState, context.state_key)
    if state is not None and uids:
        state.last_uid = max(state.last_uid, *uids)
        state.updated_at = now
    if context.on_committed is None:
        return []
    return pending_after(session, outbox_after)


def _commit_batch(
    context: PollContext, batch: Sequence[tuple[int, bytes]], uidvalidity: int
) -> _BatchOutcome:
    """Store a batch in one transaction; if any mail fails, redo the batch mail by mail."""
    outcome = _BatchOutcome()
    if not batch:
        return outcome
    now = context.clock.now()
    mailbox = context.config.mailbox
    if len(batch) > 1:
        try:
            with context.sessions.begin() as session:
                outbox_after = _outbox_high_water(session, context)
                outcomes = process_inbound_batch(
                    session,
                    [(raw, uid) for uid, raw in batch],
                    mailbox=mailbox,
                    config=context.config,
                    now=lambda: now,
                    uidvalidity=uidvalidity,
                )
                kinds = [_kind(outcome) for outcome in outcomes]
                new_outbox = _record_progress(
                    session, context, [uid for uid, _ in batch], now, outbox_after=outbox_after
                )
        except _DATABASE_DOWN as exc:
            raise TransientError(f"database unavailable: {exc}") from exc
        except Exception as exc:  # a mail of the batch failed: the batch rolled back, redo it one by one
            # One line; the traceback only at DEBUG (hostile mail must not fill the output with them).
            logger.info("a batch of %d mails failed (%s); retrying them one by one", len(batch), _reason(exc))
            logger.debug("the batch's error", exc_info=True)
        else:
            outcome.done.extend(uid for uid, _ in batch)
            outcome.counts.update(kinds)
            outcome.outbox_ids.extend(new_outbox)
            return outcome
    for uid, raw in batch:
        _commit_one(context, uid, raw, uidvalidity=uidvalidity, now=now, outcome=outcome)
    return outcome


def _commit_one(
    context: PollContext, uid: int, raw: bytes, *, uidvalidity: int, now: datetime, outcome: _BatchOutcome
) -> None:
    """One mail in its own transaction; if it fails, quarantine it in another (loop boundary)."""
    mailbox = context.config.mailbox
    try:
        with context.sessions.begin() as session:
            outbox_after = _outbox_high_water(session, context)
            kind = _kind(
                process_inbound_mail(
                    session,
                    raw,
                    mailbox=mailbox,
                    config=context.config,
                    now=now,
                    imap_uid=uid,
                    uidvalidity=uidvalidity,
                )
            )
            new_outbox = _record_progress(session, context, [uid], now, outbox_after=outbox_after)
    except _DATABASE_DOWN as exc:
        raise TransientError(f"database unavailable: {exc}") from exc
    except Exception as exc:  # loop boundary: keep the mail aside, go on with the next ones
        logger.warning("mail UID %d of %s quarantined: %s", uid, context.state_key, _reason(exc)[:200])
        logger.debug("mail UID %d failed", uid, exc_info=True)
        try:
            with context.sessions.begin() as session:
                outbox_after = _outbox_high_water(session, context)
                quarantine_mail(
                    session,
                    raw,
                    mailbox=mailbox,
                    reason=_reason(exc),
                    config=context.config,
                    now=now,
                    imap_uid=uid,
                    uidvalidity=uidvalidity,
                )
                new_outbox = _record_progress(session, context, [uid], now, outbox_after=outbox_after)
        except sa_exc.SQLAlchemyError as db_exc:
            # Not even quarantine could be stored: leave the mail in the intake folder for the next poll.
            raise TransientError(f"cannot quarantine mail UID {uid}: {db_exc}") from db_exc
        outcome.quarantined.append(uid)
        outcome.counts["quarantined"] += 1
        outcome.outbox_ids.extend(new_outbox)
        return
    outcome.done.append(uid)
    outcome.counts[kind] += 1
    outcome.outbox_ids.extend(new_outbox)


#: Errors that mean the database, not the mail, is the problem: abort the poll, keep the mails.
_DATABASE_DOWN = (sa_exc.OperationalError, sa_exc.InterfaceError)


def _kind(outcome: InboundOutcome) -> str:
    return outcome.kind.value


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:1000]


# Helpers ----------------------------------------------------------------------------------------


def _renew_every_s(lease: NamedLease) -> float:
    return lease.ttl.total_seconds() / 3


async def _renew(lease: NamedLease | None) -> None:
    if lease is None:
        return
    try:
        renewed = await asyncio.to_thread(lease.renew)
    except _DATABASE_DOWN as exc:
        raise TransientError(f"database unavailable while renewing the lease: {exc}") from exc
    if not renewed:
        raise LeaseLostError(f"lease {lease.name} is held by another poller")


async def _sleep_unless_stopped(stop: asyncio.Event, delay_s: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), delay_s)
    except TimeoutError:
        return

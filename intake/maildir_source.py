"""The embedded inbox: a local Maildir feeding ``intake.pipeline`` (default source, benchmarks).

Owns the folder layout and the exactly-once dance for files: each mail in ``new/`` is processed in
a transaction (a savepoint per mail, several mails per transaction), and only after the commit is
its file moved to the ``.Procesados`` sub-maildir. A crash before the move re-reads the file and
finds it done (outcome ``duplicate``), then moves it. A mail that raises is quarantined in its own
transaction and its file moved to ``.Cuarentena``; the others go on.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from consultas.clock import Clock
from consultas.context import ServiceConfig
from consultas.outbox import last_id, pending_after
from intake.batching import MAX_BATCH_BYTES, collect_after_batch, size_bounded_batches
from intake.pipeline import process_inbound_batch, process_inbound_mail, quarantine_mail
from routing.outcome import InboundOutcome, OutcomeKind

logger = logging.getLogger(__name__)

#: Maildir++ sub-folders (as Dovecot names them) for processed and quarantined mail.
PROCESSED_FOLDER = ".Procesados"
QUARANTINE_FOLDER = ".Cuarentena"
#: Mails per transaction: one commit (and one fsync) per batch instead of per mail.
DEFAULT_BATCH_SIZE = 200
#: Seconds between two looks at ``new/`` when it was empty.
DEFAULT_POLL_INTERVAL_S = 1.0
#: Database errors that mean "the database is unreachable": retried, never a quarantine.
_INFRASTRUCTURE_ERRORS = (OperationalError, InterfaceError)


@dataclass
class MaildirCounts:
    """What one pass over ``new/`` did."""

    processed: int = 0
    duplicates: int = 0
    quarantined: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.processed + self.duplicates + self.quarantined

    def count(self, outcome: InboundOutcome) -> None:
        """Count one processed mail by its outcome."""
        if outcome.kind is OutcomeKind.DUPLICATE:
            self.duplicates += 1
        else:
            self.processed += 1
        self.by_kind[outcome.kind.value] = self.by_kind.get(outcome.kind.value, 0) + 1

    def add(self, other: MaildirCounts) -> None:
        self.processed += other.processed
        self.duplicates += other.duplicates
        self.quarantined += other.quarantined
        for kind, count in other.by_kind.items():
            self.by_kind[kind] = self.by_kind.get(kind, 0) + count


class Maildir:
    """A Maildir (``new``, ``cur``, ``tmp``) with processed and quarantine sub-maildirs (created)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        for folder in (self.root, self.root / PROCESSED_FOLDER, self.root / QUARANTINE_FOLDER):
            for sub in ("new", "cur", "tmp"):
                (folder / sub).mkdir(parents=True, exist_ok=True)

    @property
    def new(self) -> Path:
        return self.root / "new"

    def pending(self, limit: int | None = None) -> list[str]:
        """File names waiting in ``new/``, oldest name first (Maildir names start with the time)."""
        names = sorted(
            entry.name for entry in os.scandir(self.new) if entry.is_file() and not entry.name.startswith(".")
        )
        return names if limit is None else names[:limit]

    def sizes(self, names: Iterable[str]) -> list[tuple[str, int]]:
        """``(name, bytes)`` of mails in ``new/``; one gone meanwhile (another poller) counts 0."""
        sized = []
        for name in names:
            try:
                sized.append((name, (self.new / name).stat().st_size))
            except FileNotFoundError:
                sized.append((name, 0))
        return sized

    def move_to(self, name: str, folder: str) -> None:
        """Move ``new/name`` to ``folder/cur`` with the Seen flag (idempotent: a missing file is fine)."""
        target_name = name if ":2," in name else f"{name}:2,S"
        # Missing: moved already (a crash between two moves, or another poller).
        with suppress(FileNotFoundError):
            os.replace(self.new / name, self.root / folder / "cur" / target_name)

    def deliver(self, raw: bytes, name: str) -> Path:
        """Put a mail into ``new/`` the Maildir way (write in ``tmp/``, then rename): tests, tools."""
        tmp = self.root / "tmp" / name
        tmp.write_bytes(raw)
        target = self.new / name
        os.replace(tmp, target)
        return target


def poll_maildir_once(
    sessions: sessionmaker[Session],
    maildir: Maildir,
    *,
    mailbox: str,
    config: ServiceConfig,
    clock: Clock,
    batch_size: int = DEFAULT_BATCH_SIZE,
    batch_max_bytes: int = MAX_BATCH_BYTES,
    limit: int | None = None,
    on_committed: Callable[[list[int]], object] | None = None,
) -> MaildirCounts:
    """Process what is in ``new/`` now (up to ``limit`` mails), ``batch_size`` mails per transaction.

    A batch also stops short of ``batch_max_bytes`` of raw mail (``intake.batching``), so what one
    batch holds does not grow with what citizens attach.

    ``on_committed`` gets the ids of the outbox rows the batch queued, after the commit (the send
    hint to the workers; the sweep covers a lost hint). Database outages propagate (nothing is
    moved, the next pass retries); any other error quarantines only the mail that caused it.
    """
    counts = MaildirCounts()
    sized = maildir.sizes(maildir.pending(limit))
    size_of = dict(sized)
    for batch in size_bounded_batches(sized, max_count=batch_size, max_bytes=batch_max_bytes):
        counts.add(
            _process_batch(
                sessions,
                maildir,
                batch,
                mailbox=mailbox,
                config=config,
                clock=clock,
                on_committed=on_committed,
            )
        )
        collect_after_batch(sum(size_of[name] for name in batch))
    return counts


def _process_batch(
    sessions: sessionmaker[Session],
    maildir: Maildir,
    names: Iterable[str],
    *,
    mailbox: str,
    config: ServiceConfig,
    clock: Clock,
    on_committed: Callable[[list[int]], object] | None,
) -> MaildirCounts:
    names = list(names)
    if len(names) > 1:
        at_once = _process_batch_at_once(
            sessions, maildir, names, mailbox=mailbox, config=config, clock=clock, on_committed=on_committed
        )
        if at_once is not None:
            return at_once
    counts = MaildirCounts()
    done: list[str] = []
    failed: list[tuple[str, bytes, str]] = []
    with sessions.begin() as session:
        first_outbox = last_id(session) if on_committed else 0
        for name in names:
            try:
                raw = (maildir.new / name).read_bytes()
            except FileNotFoundError:
                continue  # taken by another poller
            try:
                with session.begin_nested():
                    outcome = process_inbound_mail(
                        session, raw, mailbox=mailbox, config=config, now=clock.now()
                    )
            except _INFRASTRUCTURE_ERRORS:
                raise
            except Exception as exc:  # a bug or a malformed mail: quarantine this one, go on
                logger.debug("maildir file %s failed", name, exc_info=True)
                failed.append((name, raw, _reason(exc)))
                continue
            done.append(name)
            counts.count(outcome)
        new_outbox = pending_after(session, first_outbox) if on_committed else []
    for name in done:
        maildir.move_to(name, PROCESSED_FOLDER)
    for name, raw, reason in failed:
        with sessions.begin() as session:
            quarantine_mail(session, raw, mailbox=mailbox, reason=reason, config=config, now=clock.now())
            if on_committed:
                new_outbox += pending_after(session, first_outbox)
        maildir.move_to(name, QUARANTINE_FOLDER)
        counts.quarantined += 1
        logger.warning("maildir file %s quarantined", name)
    if on_committed and new_outbox:
        on_committed(sorted(set(new_outbox)))
    return counts


def _process_batch_at_once(
    sessions: sessionmaker[Session],
    maildir: Maildir,
    names: list[str],
    *,
    mailbox: str,
    config: ServiceConfig,
    clock: Clock,
    on_committed: Callable[[list[int]], object] | None,
) -> MaildirCounts | None:
    """The common case, without a savepoint per mail: the whole batch in one transaction.

    None when a mail raised (the transaction rolled back, nothing was moved): the caller redoes
    the batch mail by mail with savepoints, so only that mail is quarantined.
    """
    counts = MaildirCounts()
    done: list[str] = []
    try:
        with sessions.begin() as session:
            first_outbox = last_id(session) if on_committed else 0
            batch: list[tuple[str, bytes]] = []
            for name in names:
                try:
                    batch.append((name, (maildir.new / name).read_bytes()))
                except FileNotFoundError:
                    continue  # taken by another poller
            outcomes = process_inbound_batch(
                session, [(raw, None) for _, raw in batch], mailbox=mailbox, config=config, now=clock.now
            )
            for (name, _), outcome in zip(batch, outcomes, strict=True):
                done.append(name)
                counts.count(outcome)
            new_outbox = pending_after(session, first_outbox) if on_committed else []
    except _INFRASTRUCTURE_ERRORS:
        raise
    except Exception as exc:  # one mail failed: the caller redoes the batch with a savepoint per mail
        # One line (the failing mail's reason is logged again when it is quarantined); the
        # traceback only at DEBUG: hostile mail must not fill the service's output with them.
        logger.info("a batch of %d mails failed (%s); redoing it mail by mail", len(names), _reason(exc))
        logger.debug("the batch's error", exc_info=True)
        return None
    for name in done:
        maildir.move_to(name, PROCESSED_FOLDER)
    if on_committed and new_outbox:
        on_committed(sorted(set(new_outbox)))
    return counts


def _reason(exc: Exception) -> str:
    """The one-line reason a failed mail is quarantined with."""
    return f"{type(exc).__name__}: {exc}"


async def run_maildir_loop(
    sessions: sessionmaker[Session],
    maildir: Maildir,
    *,
    mailbox: str,
    config: ServiceConfig,
    clock: Clock,
    stop: asyncio.Event,
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_committed: Callable[[list[int]], object] | None = None,
) -> None:
    """Poll ``maildir`` until ``stop`` is set; database work runs in a thread (never on the loop)."""
    while not stop.is_set():
        counts = await asyncio.to_thread(
            poll_maildir_once,
            sessions,
            maildir,
            mailbox=mailbox,
            config=config,
            clock=clock,
            batch_size=batch_size,
            limit=batch_size * 10,
            on_committed=on_committed,
        )
        if counts.total:
            logger.info(
                "maildir: %d processed, %d duplicates, %d quarantined",
                counts.processed,
                counts.duplicates,
                counts.quarantined,
            )
            continue
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=poll_interval_s)

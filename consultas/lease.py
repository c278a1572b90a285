"""Named leases in the ``lease`` table: at most one holder at a time, taken over once expired.

Used so that only one IMAP poller works a mailbox (``mailbox_lease_name``): each poller tries to
acquire the lease, renews it well within its time-to-live while it runs, and releases it on a
clean stop; when a holder dies its lease expires and another poller takes over. Safe under
concurrency on PostgreSQL and SQLite: acquisition is ``INSERT ... ON CONFLICT DO NOTHING`` followed
by a conditional UPDATE (only an expired lease, or our own, changes hands); no read-then-write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from consultas.clock import Clock
from consultas.models import Lease


def mailbox_lease_name(host: str, user: str, folder: str) -> str:
    """The lease that guards polling one mailbox folder."""
    return f"imap:{user.lower()}@{host.lower()}/{folder}"[:200]


def acquire_lease(session: Session, name: str, holder: str, *, now: datetime, ttl: timedelta) -> bool:
    """Take ``name`` for ``holder`` until ``now + ttl`` if free, expired or already ours."""
    expires_at = now + ttl
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    inserted = session.execute(
        insert(Lease)
        .values(name=name, holder=holder, expires_at=expires_at)
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(Lease.name)
    )
    # RETURNING, not rowcount: psycopg reports -1 as the rowcount of INSERT ... ON CONFLICT.
    if inserted.first() is not None:
        return True
    taken = session.execute(
        update(Lease)
        .where(Lease.name == name, (Lease.expires_at <= now) | (Lease.holder == holder))
        .values(holder=holder, expires_at=expires_at)
        .execution_options(synchronize_session=False)
    )
    return bool(taken.rowcount)  # type: ignore[attr-defined]


def renew_lease(session: Session, name: str, holder: str, *, now: datetime, ttl: timedelta) -> bool:
    """Extend our lease; False when another holder took it over (then stop working at once)."""
    renewed = session.execute(
        update(Lease)
        .where(Lease.name == name, Lease.holder == holder)
        .values(expires_at=now + ttl)
        .execution_options(synchronize_session=False)
    )
    return bool(renewed.rowcount)  # type: ignore[attr-defined]


def release_lease(session: Session, name: str, holder: str) -> bool:
    """Give the lease up (clean stop) so another process need not wait for it to expire."""
    released = session.execute(
        delete(Lease)
        .where(Lease.name == name, Lease.holder == holder)
        .execution_options(synchronize_session=False)
    )
    return bool(released.rowcount)  # type: ignore[attr-defined]


@dataclass
class NamedLease:
    """One holder's handle on a lease; each call is its own short transaction.

    Blocking (sync SQLAlchemy): async callers use ``await asyncio.to_thread(lease.renew)``.
    """

    sessions: sessionmaker[Session]
    name: str
    holder: str
    clock: Clock
    ttl: timedelta = timedelta(seconds=60)

    def acquire(self) -> bool:
        """Take the lease if free or expired; True when we hold it now."""
        with self.sessions.begin() as session:
            return acquire_lease(session, self.name, self.holder, now=self.clock.now(), ttl=self.ttl)

    def renew(self) -> bool:
        """Extend the lease; False means we lost it and must stop."""
        with self.sessions.begin() as session:
            return renew_lease(session, self.name, self.holder, now=self.clock.now(), ttl=self.ttl)

    def release(self) -> None:
        """Give the lease up."""
        with self.sessions.begin() as session:
            release_lease(session, self.name, self.holder)

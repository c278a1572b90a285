"""Leases: one IMAP poller per mailbox at a time; another takes over when the holder dies."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from consultas.clock import FixedClock
from consultas.lease import NamedLease, mailbox_lease_name

NOW = datetime(2024, 11, 28, 15, 0, tzinfo=UTC)
NAME = mailbox_lease_name("imap.mef.gob.pe", "Consultas@mef.gob.pe", "INBOX")


def _lease(sessions: sessionmaker[Session], holder: str, clock: FixedClock) -> NamedLease:
    return NamedLease(sessions, NAME, holder, clock, ttl=timedelta(seconds=60))


def test_of_two_pollers_starting_together_exactly_one_holds_the_mailbox(
    sessions: sessionmaker[Session],
) -> None:
    clock = FixedClock(NOW)
    contenders = [_lease(sessions, f"poller-{n}", clock) for n in range(4)]
    barrier = threading.Barrier(len(contenders))
    results: dict[str, bool] = {}

    def contend(lease: NamedLease) -> None:
        barrier.wait()
        results[lease.holder] = lease.acquire()

    threads = [threading.Thread(target=contend, args=(lease,)) for lease in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results.values()) == [False, False, False, True]


def test_a_dead_holders_lease_expires_and_another_poller_takes_over(sessions: sessionmaker[Session]) -> None:
    clock = FixedClock(NOW)
    first, second = _lease(sessions, "poller-a", clock), _lease(sessions, "poller-b", clock)
    assert first.acquire()
    assert not second.acquire()
    clock.advance(timedelta(seconds=59))
    assert first.renew()  # a live holder keeps it by renewing
    clock.advance(timedelta(seconds=59))
    assert not second.acquire()
    clock.advance(timedelta(seconds=2))  # the holder died: no renewal for longer than the ttl
    assert second.acquire()
    assert not first.renew()  # the old holder, if it wakes up, learns it lost the mailbox
    assert not first.acquire()


def test_a_released_lease_is_free_at_once(sessions: sessionmaker[Session]) -> None:
    clock = FixedClock(NOW)
    first, second = _lease(sessions, "poller-a", clock), _lease(sessions, "poller-b", clock)
    assert first.acquire()
    assert first.acquire()  # re-acquiring our own lease is fine (restart of the same holder)
    first.release()
    assert second.acquire()

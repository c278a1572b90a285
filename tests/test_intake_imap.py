"""The IMAP poller against a real Dovecot: exactly-once intake, folders, quarantine, lease, IDLE."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from consultas.clock import FixedClock
from consultas.context import ServiceConfig
from consultas.lease import NamedLease, mailbox_lease_name
from consultas.models import Message, MessageKind
from intake import imap_client
from intake.imap_client import ImapConnection, parse_fetch_bodies, parse_fetch_sizes, quote_folder, uid_set
from intake.imap_poller import poll_once, run_poller
from tests.intake_imap_support import (
    BROKEN_MAIL,
    MAILBOX,
    NOW,
    append_raw,
    citizen_mail,
    collector_off,
    confirmations_per_consulta,
    count_consultas,
    garbage_holding_large_buffers,
    imap_settings,
    wait_until,
    with_attachment,
)
from tests.servers.dovecot import DovecotServer

# Pure helpers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uids", "expected"),
    [
        ([7], "7"),
        ([1, 2, 3], "1:3"),
        ([3, 1, 2, 7, 9, 10], "1:3,7,9:10"),
        ([5, 5, 6], "5:6"),
    ],
)
def test_uid_sets_are_compressed_into_ranges(uids: list[int], expected: str) -> None:
    assert uid_set(uids) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [("Procesados", "Procesados"), ("INBOX", "INBOX"), ("Correo procesado", '"Correo procesado"')],
)
def test_folder_names_with_spaces_are_quoted(name: str, expected: str) -> None:
    assert quote_folder(name) == expected


def test_fetch_responses_yield_each_mail_with_its_uid_wherever_the_server_puts_it() -> None:
    lines: list[bytes | bytearray] = [
        b"1 FETCH (UID 7 BODY[] {5}",
        bytearray(b"hola!"),
        b")",
        b"2 FETCH (BODY[] {3}",
        bytearray(b"abc"),
        b" UID 9)",
        b"Fetch completed.",
    ]
    assert parse_fetch_bodies(lines) == [(7, b"hola!"), (9, b"abc")]


def test_fetch_size_responses_yield_each_mails_size_by_uid() -> None:
    lines: list[bytes | bytearray] = [
        b"1 FETCH (UID 7 RFC822.SIZE 290)",
        b"2 FETCH (RFC822.SIZE 12 UID 9)",
        b"Fetch completed.",
    ]
    assert parse_fetch_sizes(lines) == {7: 290, 9: 12}


def test_missing_imap_credentials_are_named_before_connecting(tmp_path: Path) -> None:
    from consultas.errors import ConfigurationError
    from consultas.settings import Settings
    from intake.imap_poller import check_imap_settings

    settings = Settings(_env_file=None, var_dir=tmp_path, imap_host="imap.mef.gob.pe")
    with pytest.raises(ConfigurationError, match=r"CONSULTAS_IMAP_USER.*CONSULTAS_IMAP_PASSWORD"):
        check_imap_settings(settings)


# Against Dovecot ---------------------------------------------------------------------------------


async def test_a_complete_mail_becomes_a_numbered_consulta_and_moves_unread_to_procesados(
    dovecot: DovecotServer, db_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    # Given a citizen's complete mail in the consultas INBOX
    settings = imap_settings(dovecot, db_url, tmp_path)
    dovecot.deliver(citizen_mail(1), MAILBOX)
    # When the poller runs once
    result = await poll_once(settings, sessions, ServiceConfig.from_settings(settings), FixedClock(NOW))
    # Then the consulta is numbered with one confirmation, the mail is stored with its UID
    assert result.counts["admitted"] == 1
    confirmations = confirmations_per_consulta(sessions)
    assert list(confirmations.values()) == [1]
    with sessions() as session:
        message = session.scalars(
            select(Message).where(Message.message_id == "<consulta-1@example.pe>")
        ).one()
        assert message.imap_uid is not None and message.imap_uidvalidity is not None
    # and the mail left INBOX for Procesados, still unread (BODY.PEEK[])
    assert dovecot.message_count(MAILBOX, "INBOX") == 0
    flags = dovecot.flags(MAILBOX, "Procesados")
    assert list(flags) == ["<consulta-1@example.pe>"]
    assert "\\Seen" not in flags["<consulta-1@example.pe>"]


async def test_the_same_mail_delivered_twice_gives_one_consulta_and_both_copies_leave_inbox(
    dovecot: DovecotServer, db_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    settings = imap_settings(dovecot, db_url, tmp_path)
    dovecot.deliver(citizen_mail(1), MAILBOX)
    dovecot.deliver(citizen_mail(1), MAILBOX)
    result = await poll_once(settings, sessions, ServiceConfig.from_settings(settings), FixedClock(NOW))
    assert (result.counts["admitted"], result.counts["duplicate"]) == (1, 1)
    assert count_consultas(sessions) == 1
    assert list(confirmations_per_consulta(sessions).values()) == [1]
    assert dovecot.message_count(MAILBOX, "INBOX") == 0
    assert dovecot.message_count(MAILBOX, "Procesados") == 2


async def test_a_broken_mail_is_quarantined_and_the_mails_around_it_are_still_admitted(
    dovecot: DovecotServer, db_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    # Given a broken mail between two good ones, all in one batch
    settings = imap_settings(dovecot, db_url, tmp_path)
    dovecot.deliver(citizen_mail(1), MAILBOX)
    append_raw(dovecot, BROKEN_MAIL)
    dovecot.deliver(citizen_mail(2), MAILBOX)
    result = await poll_once(settings, sessions, ServiceConfig.from_settings(settings), FixedClock(NOW))
    # Then the good ones are numbered, the broken one is kept in Cuarentena and in the database
    assert (result.counts["admitted"], result.counts["quarantined"]) == (2, 1)
    assert len(confirmations_per_consulta(sessions)) == 2
    assert dovecot.list_messages(MAILBOX, "Cuarentena") == [BROKEN_MAIL]
    assert dovecot.message_count(MAILBOX, "Procesados") == 2
    assert dovecot.message_count(MAILBOX, "INBOX") == 0
    with sessions() as session:
        kinds = session.scalars(select(Message.kind).where(Message.kind == MessageKind.QUARANTINED)).all()
    assert kinds == [MessageKind.QUARANTINED]


async def test_mails_spread_over_several_batches_are_all_admitted_once_in_arrival_order(
    dovecot: DovecotServer, db_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    settings = imap_settings(dovecot, db_url, tmp_path)
    for n in range(1, 8):
        dovecot.deliver(citizen_mail(n), MAILBOX)
    result = await poll_once(
        settings, sessions, ServiceConfig.from_settings(settings), FixedClock(NOW), batch_size=3
    )
    assert result.counts["admitted"] == 7
    assert result.counts["moved"] == 7
    assert sorted(confirmations_per_consulta(sessions).values()) == [1] * 7
    with sessions() as session:
        stored = session.scalars(select(Message.message_id).order_by(Message.imap_uid)).all()
    inbound = [mid for mid in stored if mid.startswith("<consulta-")]
    assert inbound == [f"<consulta-{n}@example.pe>" for n in range(1, 8)]
    assert dovecot.message_count(MAILBOX, "INBOX") == 0


async def test_large_mails_are_fetched_in_batches_bounded_by_bytes_and_all_admitted(
    dovecot: DovecotServer,
    db_url: str,
    sessions: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = imap_settings(dovecot, db_url, tmp_path)
    attachment_bytes = [0, 300_000, 300_000, 0, 700_000, 0]
    for n, size in enumerate(attachment_bytes, start=1):
        raw = citizen_mail(n)
        dovecot.deliver(with_attachment(raw, size) if size else raw, MAILBOX)
    fetched_sizes: list[list[int]] = []
    fetch = ImapConnection.fetch

    async def recording_fetch(self: ImapConnection, uids: list[int]) -> list[tuple[int, bytes]]:
        fetched = await fetch(self, uids)
        fetched_sizes.append([len(raw) for _, raw in fetched])
        return fetched

    weighed: list[int] = []
    fetch_sizes = ImapConnection.fetch_sizes

    async def recording_fetch_sizes(self: ImapConnection, uids: list[int]) -> dict[int, int]:
        weighed.extend(uids)
        return await fetch_sizes(self, uids)

    monkeypatch.setattr(ImapConnection, "fetch", recording_fetch)
    monkeypatch.setattr(ImapConnection, "fetch_sizes", recording_fetch_sizes)
    monkeypatch.setattr(imap_client, "SIZE_CHUNK", 2)  # the three large mails are weighed in two commands
    budget = 500_000

    result = await poll_once(
        settings, sessions, ServiceConfig.from_settings(settings), FixedClock(NOW), batch_max_bytes=budget
    )

    assert result.counts["admitted"] == 6
    assert len(weighed) == 3  # only the mails with attachments are weighed
    assert sorted(len(batch) for batch in fetched_sizes) != [6]  # counted in mails alone: one batch
    for batch in fetched_sizes:
        assert len(batch) == 1 or sum(batch) <= budget, fetched_sizes
    assert sum(len(batch) for batch in fetched_sizes) == 6
    assert dovecot.message_count(MAILBOX, "INBOX") == 0


async def test_a_changed_uidvalidity_restarts_uid_tracking_without_admitting_anything_twice(
    dovecot: DovecotServer, db_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    from consultas.models import MailboxState

    # Given a mail processed once, then put back in INBOX and a state row from an older UIDVALIDITY
    settings = imap_settings(dovecot, db_url, tmp_path)
    config = ServiceConfig.from_settings(settings)
    dovecot.deliver(citizen_mail(1), MAILBOX)
    await poll_once(settings, sessions, config, FixedClock(NOW))
    key = mailbox_lease_name(settings.imap_host, settings.imap_user, settings.imap_folder)
    with sessions.begin() as session:
        state = session.get(MailboxState, key)
        assert state is not None
        real_uidvalidity = state.uidvalidity
        state.uidvalidity, state.last_uid = real_uidvalidity - 1, 999_999
    dovecot.deliver(citizen_mail(1), MAILBOX)
    # When the poller sees the folder again
    result = await poll_once(settings, sessions, config, FixedClock(NOW))
    # Then it adopts the new UIDVALIDITY, resets last_uid, and dedup keeps one consulta
    assert result.counts["duplicate"] == 1
    with sessions() as session:
        state = session.get(MailboxState, key)
        assert state is not None
        assert state.uidvalidity == real_uidvalidity
        assert state.last_uid < 999_999
    assert count_consultas(sessions) == 1


async def test_the_running_poller_admits_mail_delivered_while_it_idles_and_stops_on_request(
    dovecot: DovecotServer, db_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    # A long catch-up interval: only IDLE can make the new mail show up within the wait
    settings = imap_settings(dovecot, db_url, tmp_path, imap_poll_interval_s=30.0)
    stop = asyncio.Event()
    poller = asyncio.create_task(
        run_poller(settings, sessions, ServiceConfig.from_settings(settings), FixedClock(NOW), stop)
    )
    await _wait_async(lambda: _lease_holder(sessions, settings) is not None, "the poller to take the lease")
    await asyncio.to_thread(dovecot.deliver, citizen_mail(1), MAILBOX)
    await _wait_async(lambda: count_consultas(sessions) == 1, "the mail to be admitted", timeout_s=10)
    stop.set()
    await asyncio.wait_for(poller, 15)
    assert _lease_holder(sessions, settings) is None  # released on a clean stop
    assert await asyncio.to_thread(dovecot.message_count, MAILBOX, "Procesados") == 1


async def test_a_second_poller_stands_by_until_the_first_ones_lease_expires(
    dovecot: DovecotServer, db_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    # Given another (dead) poller holding the mailbox lease
    settings = imap_settings(dovecot, db_url, tmp_path, imap_poll_interval_s=0.2)
    clock = FixedClock(NOW)
    name = mailbox_lease_name(settings.imap_host, settings.imap_user, settings.imap_folder)
    other = NamedLease(sessions, name, "dead-poller", clock, ttl=timedelta(seconds=60))
    assert other.acquire()
    await asyncio.to_thread(dovecot.deliver, citizen_mail(1), MAILBOX)
    stop = asyncio.Event()
    poller = asyncio.create_task(
        run_poller(settings, sessions, ServiceConfig.from_settings(settings), clock, stop)
    )
    try:
        # When our poller starts it leaves the mailbox alone (a few of its cycles)
        await asyncio.sleep(1.0)  # a negative check: nothing may happen during this window
        assert count_consultas(sessions) == 0
        assert _lease_holder(sessions, settings) == "dead-poller"
        # Then once the lease expires it takes over and admits the mail
        clock.advance(timedelta(seconds=61))
        await _wait_async(lambda: count_consultas(sessions) == 1, "the takeover")
    finally:
        stop.set()
        await asyncio.wait_for(poller, 15)


async def test_the_poller_reconnects_after_the_imap_server_comes_back(
    dovecot: DovecotServer, db_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    settings = imap_settings(dovecot, db_url, tmp_path, imap_poll_interval_s=0.2, imap_timeout_s=2.0)
    stop = asyncio.Event()
    poller = asyncio.create_task(
        run_poller(settings, sessions, ServiceConfig.from_settings(settings), FixedClock(NOW), stop)
    )
    try:
        await _wait_async(lambda: _lease_holder(sessions, settings) is not None, "the poller to start")
        await asyncio.to_thread(dovecot.stop)
        await asyncio.to_thread(dovecot.start)
        await asyncio.to_thread(dovecot.deliver, citizen_mail(1), MAILBOX)
        await _wait_async(lambda: count_consultas(sessions) == 1, "the mail after the outage", timeout_s=15)
    finally:
        stop.set()
        await asyncio.wait_for(poller, 15)
    assert not poller.cancelled()


# Helpers -----------------------------------------------------------------------------------------


def _lease_holder(sessions: sessionmaker[Session], settings: object) -> str | None:
    from consultas.models import Lease
    from consultas.settings import Settings

    assert isinstance(settings, Settings)
    with sessions() as session:
        lease = session.get(
            Lease, mailbox_lease_name(settings.imap_host, settings.imap_user, settings.imap_folder)
        )
        return lease.holder if lease is not None else None


async def _wait_async(predicate: object, what: str, timeout_s: float = 20.0) -> None:
    assert callable(predicate)
    await asyncio.to_thread(wait_until, predicate, timeout_s=timeout_s, what=what)


async def test_the_memory_of_a_fetched_batch_of_large_mails_is_given_back_once_it_is_done(
    dovecot: DovecotServer, db_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    settings = imap_settings(dovecot, db_url, tmp_path)
    for n in range(1, 5):
        dovecot.deliver(with_attachment(citizen_mail(n), 700_000), MAILBOX)

    with collector_off():
        result = await poll_once(
            settings, sessions, ServiceConfig.from_settings(settings), FixedClock(NOW), batch_size=2
        )
        assert garbage_holding_large_buffers() == 0

    assert result.counts["admitted"] == 4

"""Sending the outbox: each mail reaches the SMTP sink exactly once, on the in-memory and Redis brokers."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, sessionmaker

from consultas.clock import FixedClock
from consultas.errors import PermanentError
from consultas.models import Event, Organo, Outbox, OutboxStatus, RedMember, RedRole
from consultas.outbox import CLAIM_TIMEOUT, claim_many, due_ids
from consultas.settings import Settings
from tests.servers.smtp_sink import SmtpSink
from tests.workers_support import (
    NOW,
    Workers,
    delivered_counts,
    message_ids_of,
    queue_mails,
    smtp_settings,
    statuses,
)
from workers.broker import configure_broker
from workers.claims import ClaimKeeper
from workers.mail import Outcome, Sender, drain_outbox, hint_send, send_outbox_row
from workers.runtime import close_runtime, init_runtime
from workers.sweep import SWEEP_GRACE, sweep_once
from workers.transport import (
    Delivery,
    FileTransport,
    MailTransport,
    RecipientsRefusedError,
    SendResult,
    SmtpTransport,
)


def test_a_mail_enqueued_twice_reaches_the_sink_once(
    workers_on: Callable[[str], Workers], broker_url: str, smtp_sink: SmtpSink
) -> None:
    # Given five confirmation mails committed to the outbox
    workers = workers_on(broker_url)
    ids = queue_mails(workers.runtime.sessions, 5)
    # When each is enqueued twice (a hint and a sweep racing) and four worker threads run them
    for outbox_id in ids + ids:
        send_outbox_row.send(outbox_id)
    workers.wait()
    # Then each Message-ID arrived exactly once and every row is sent
    expected = message_ids_of(workers.runtime.sessions, ids)
    assert delivered_counts(smtp_sink) == Counter({message_id: 1 for message_id in expected})
    assert statuses(workers.runtime.sessions, ids) == [OutboxStatus.SENT] * 5
    assert all(captured.rcpt_tos == ["jose@example.pe"] for captured in smtp_sink.messages)


def test_two_concurrent_claimers_send_each_row_once(db_url: str, smtp_sink: SmtpSink, tmp_path: Path) -> None:
    runtime = init_runtime(smtp_settings(db_url, smtp_sink, tmp_path), clock=FixedClock(NOW))
    try:
        ids = queue_mails(runtime.sessions, 10)
        sender = Sender.from_runtime(runtime)
        barrier = threading.Barrier(2)
        outcomes: list[Outcome] = []
        lock = threading.Lock()

        def claimer(name: str) -> None:
            for outbox_id in ids:
                barrier.wait()
                outcome = sender.deliver(outbox_id, worker=name)
                with lock:
                    outcomes.append(outcome)

        threads = [threading.Thread(target=claimer, args=(f"w{n}",)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert Counter(outcomes) == Counter({Outcome.SENT: 10, Outcome.SKIPPED: 10})
        assert sorted(delivered_counts(smtp_sink).values()) == [1] * 10
    finally:
        close_runtime()


def test_drain_sends_every_due_row_over_one_connection_and_a_second_drain_sends_nothing(
    db_url: str, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    runtime = init_runtime(smtp_settings(db_url, smtp_sink, tmp_path), clock=FixedClock(NOW))
    try:
        ids = queue_mails(runtime.sessions, 20)
        sender = Sender.from_runtime(runtime)
        assert drain_outbox(sender) == Counter({Outcome.SENT: 20})
        assert drain_outbox(sender) == Counter()
        assert len(smtp_sink.messages) == 20
        assert statuses(runtime.sessions, ids) == [OutboxStatus.SENT] * 20
    finally:
        close_runtime()


def test_a_chunk_of_rows_is_claimed_and_loaded_once_and_each_mail_is_marked_sent_on_its_own(
    db_url: str, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    # The raw mail is a deferred column: loading it row by row made one SELECT per mail sent. Each
    # mail's "sent" is its own UPDATE (committed before the next mail goes out: see the crash tests).
    runtime = init_runtime(smtp_settings(db_url, smtp_sink, tmp_path), clock=FixedClock(NOW))
    try:
        ids = queue_mails(runtime.sessions, 30)
        statements: list[str] = []
        listener = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(runtime.engine, "before_cursor_execute", listener)
        try:
            outcomes = Sender.from_runtime(runtime).deliver_many(ids, worker="test")
        finally:
            event.remove(runtime.engine, "before_cursor_execute", listener)
        assert outcomes == Counter({Outcome.SENT: 30})
        assert len(smtp_sink.messages) == 30
        raw_loads = [s for s in statements if s.lstrip().upper().startswith("SELECT") and "message.raw" in s]
        assert len(raw_loads) == 1, raw_loads
        claims = [s for s in statements if s.startswith("UPDATE outbox SET status") and "claimed_by" in s]
        sent_marks = [s for s in statements if s.startswith("UPDATE outbox SET status") and "sent_at" in s]
        assert (len(claims), len(sent_marks)) == (1, 30)
    finally:
        close_runtime()


def test_each_mail_is_recorded_as_sent_before_the_next_is_handed_to_the_server(
    db_url: str, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    # A crash mid-chunk then sends again at most the one mail in flight, not the chunk's others.
    runtime = init_runtime(smtp_settings(db_url, smtp_sink, tmp_path), clock=FixedClock(NOW))
    try:
        ids = queue_mails(runtime.sessions, 12)
        sent_when_each_arrived: list[int] = []

        def count_sent(_mail: object) -> None:
            with runtime.sessions() as session:
                sent = select(func.count()).select_from(Outbox).where(Outbox.status == OutboxStatus.SENT)
                sent_when_each_arrived.append(session.scalar(sent) or 0)

        smtp_sink.before_accept(count_sent)
        assert Sender.from_runtime(runtime).deliver_many(ids, worker="w") == Counter({Outcome.SENT: 12})
        assert sent_when_each_arrived == list(range(12))
    finally:
        close_runtime()


def test_a_live_workers_claims_stay_its_own_and_a_dead_workers_are_retaken_after_the_timeout(
    sessions: sessionmaker[Session],
) -> None:
    clock = FixedClock(NOW)
    live_row, dead_row = queue_mails(sessions, 2)
    with sessions.begin() as session:
        assert claim_many(session, [live_row], worker="live", now=clock.now()) == [live_row]
        assert claim_many(session, [dead_row], worker="dead", now=clock.now()) == [dead_row]
    keeper = ClaimKeeper(sessions, clock, interval_s=3600)  # refreshed by hand below
    try:
        keeper.hold("live", [live_row])
        for _ in range(6):  # a send that takes three minutes: the live worker keeps refreshing
            clock.advance(CLAIM_TIMEOUT / 2)
            assert keeper.refresh_once() == 1
        with sessions.begin() as session:
            assert due_ids(session, now=clock.now()) == [dead_row]
            assert claim_many(session, [live_row, dead_row], worker="other", now=clock.now()) == [dead_row]
        keeper.release("live", [live_row])  # e.g. its database connection broke: it stops refreshing
        clock.advance(CLAIM_TIMEOUT + timedelta(seconds=1))
        with sessions.begin() as session:
            assert claim_many(session, [live_row], worker="other", now=clock.now()) == [live_row]
    finally:
        keeper.close()


def test_the_claim_keepers_thread_refreshes_held_claims_on_its_own(sessions: sessionmaker[Session]) -> None:
    clock = FixedClock(NOW)
    (row,) = queue_mails(sessions, 1)
    with sessions.begin() as session:
        assert claim_many(session, [row], worker="w", now=clock.now()) == [row]
    keeper = ClaimKeeper(sessions, clock, interval_s=0.05)
    try:
        keeper.hold("w", [row])
        clock.advance(timedelta(minutes=10))
        deadline = time.monotonic() + 10
        while _claimed_at(sessions, row) != clock.now() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _claimed_at(sessions, row) == clock.now()
    finally:
        keeper.close()


def test_the_periodic_sweep_hands_a_dead_workers_rows_on_without_waiting_out_its_grace(
    sessions: sessionmaker[Session],
) -> None:
    (row,) = queue_mails(sessions, 1)
    with sessions.begin() as session:
        claim_many(session, [row], worker="dead", now=NOW)
    later = NOW + CLAIM_TIMEOUT + timedelta(seconds=1)
    handed: list[int] = []
    assert sweep_once(sessions, now=later, enqueue=handed.append, grace=SWEEP_GRACE) == [row]
    assert handed == [row]


def _claimed_at(sessions: sessionmaker[Session], row_id: int) -> datetime | None:
    with sessions() as session:
        claimed_at = session.scalar(select(Outbox.claimed_at).where(Outbox.id == row_id))
    # SQLite hands back naive UTC datetimes.
    return claimed_at.replace(tzinfo=UTC) if claimed_at and claimed_at.tzinfo is None else claimed_at


def test_refused_recipient_fails_the_row_with_an_audit_event(
    db_url: str, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    runtime = init_runtime(smtp_settings(db_url, smtp_sink, tmp_path), clock=FixedClock(NOW))
    try:
        smtp_sink.reject_rcpt("nadie@example.pe", 550)
        [outbox_id] = queue_mails(runtime.sessions, 1, to=("nadie@example.pe",))
        assert Sender.from_runtime(runtime).deliver(outbox_id, worker="w") == Outcome.FAILED
        with runtime.sessions() as session:
            row = session.get(Outbox, outbox_id)
            assert row is not None
            assert row.status == OutboxStatus.FAILED
            assert row.last_error is not None and "550" in row.last_error
            event = session.scalars(select(Event).where(Event.kind == "outbox_failed")).one()
            assert event.detail["outbox_id"] == outbox_id
            assert event.detail["reason"] == "permanent"
        assert smtp_sink.messages == []
    finally:
        close_runtime()


def test_a_refused_titular_is_marked_bounced_while_the_alterno_still_gets_the_routed_mail(
    db_url: str, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    runtime = init_runtime(smtp_settings(db_url, smtp_sink, tmp_path), clock=FixedClock(NOW))
    try:
        with runtime.sessions.begin() as session:
            session.add(Organo(code="DGPP", name="Presupuesto Público", topics=[], updated_at=NOW))
            session.flush()
            for role, address in (
                (RedRole.TITULAR, "titular@mef.gob.pe"),
                (RedRole.ALTERNO, "alt@mef.gob.pe"),
            ):
                session.add(RedMember(organo_code="DGPP", role=role, name=role.value, email=address,
                                      valid_from=NOW))  # fmt: skip
        smtp_sink.reject_rcpt("titular@mef.gob.pe", 550)
        [outbox_id] = queue_mails(runtime.sessions, 1, to=("titular@mef.gob.pe", "alt@mef.gob.pe"))
        assert Sender.from_runtime(runtime).deliver(outbox_id, worker="w") == Outcome.SENT
        assert [captured.rcpt_tos for captured in smtp_sink.messages] == [["alt@mef.gob.pe"]]
        with runtime.sessions() as session:
            bounced = {m.email: m.bounced_at for m in session.scalars(select(RedMember))}
        assert bounced == {"titular@mef.gob.pe": NOW, "alt@mef.gob.pe": None}
    finally:
        close_runtime()


def test_a_telegram_row_without_a_token_fails_with_the_reason(
    db_url: str, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    from consultas.outbox import enqueue_telegram

    runtime = init_runtime(smtp_settings(db_url, smtp_sink, tmp_path), clock=FixedClock(NOW))
    try:
        with runtime.sessions.begin() as session:
            outbox_id = enqueue_telegram(session, chat_id=42, text="Hola", idempotency_key="tg:1", now=NOW).id
        assert Sender.from_runtime(runtime).deliver(outbox_id, worker="w") == Outcome.FAILED
        with runtime.sessions() as session:
            row = session.get(Outbox, outbox_id)
            assert row is not None and row.last_error is not None
            assert "CONSULTAS_TELEGRAM_TOKEN" in row.last_error
    finally:
        close_runtime()


def test_file_transport_writes_one_readable_eml_per_mail(db_url: str, tmp_path: Path) -> None:
    outbox_dir = tmp_path / "var" / "outbox"
    settings = Settings(database_url=db_url, var_dir=tmp_path / "var", secret_key="x")
    runtime = init_runtime(settings, clock=FixedClock(NOW))
    try:
        assert isinstance(runtime.transport, FileTransport)
        [outbox_id] = queue_mails(runtime.sessions, 1)
        sender = Sender.from_runtime(runtime)
        assert sender.deliver(outbox_id, worker="w") == Outcome.SENT
        assert sender.deliver(outbox_id, worker="w") == Outcome.SKIPPED
        with runtime.sessions() as session:
            raw = session.get(Outbox, outbox_id).message.raw  # type: ignore[union-attr]
        assert raw is not None
        runtime.transport.send(raw, sender="consultas@mef.gob.pe", recipients=["jose@example.pe"])
        files = sorted(outbox_dir.iterdir())
        assert [f.suffix for f in files] == [".eml"]
        mail = message_from_bytes(files[0].read_bytes(), policy=policy.default)
        assert mail["Subject"] == "[CONS-2024-000001] Su consulta ha sido registrada"
        assert files[0].name == str(mail["Message-ID"]).strip("<>") + ".eml"
    finally:
        close_runtime()


def test_in_process_workers_send_rows_committed_before_start_and_hinted_after(
    db_url: str, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    from workers.embedded import start_inprocess_workers

    settings = smtp_settings(db_url, smtp_sink, tmp_path)
    before = queue_mails(init_runtime(settings).sessions, 2, key="before")
    handle = start_inprocess_workers(settings, threads=2, sweep_interval_s=0.2)
    try:
        runtime_sessions = init_runtime_sessions()
        after = queue_mails(runtime_sessions, 2, key="after")
        assert hint_send(after) == 2
        smtp_sink.wait_for(4)
    finally:
        handle.stop()
        close_runtime()
        configure_broker("memory")
    assert sorted(delivered_counts(smtp_sink).values()) == [1, 1, 1, 1]
    assert len(before) == 2


def init_runtime_sessions() -> sessionmaker[Session]:
    from workers.runtime import get_runtime

    return get_runtime().sessions


def _mail(n: int) -> bytes:
    return (
        f"From: consultas@mef.gob.pe\r\nTo: jose@example.pe\r\nSubject: Aviso {n}\r\n"
        f"Message-ID: <aviso-{n}@consultas.mef.gob.pe>\r\n\r\nCuerpo {n}\r\n"
    ).encode()


@pytest.mark.parametrize("transport_kind", ["smtp", "file"])
def test_send_many_gives_each_mail_its_own_result_and_a_failure_stops_none(
    transport_kind: str, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    transport: MailTransport
    if transport_kind == "smtp":
        transport = SmtpTransport(host=smtp_sink.host, port=smtp_sink.port, starttls=False)
        smtp_sink.reject_rcpt("nadie@example.pe", 550)
    else:
        transport = FileTransport(tmp_path / "outbox")
    sender = "consultas@mef.gob.pe"
    try:
        results = transport.send_many(
            [
                Delivery(_mail(1), sender, ["jose@example.pe"]),
                Delivery(_mail(2), sender, []),  # nobody to send it to
                Delivery(_mail(3), sender, ["nadie@example.pe"]),  # refused by the SMTP server
                Delivery(_mail(4), sender, ["jose@example.pe", "nadie@example.pe"]),
            ]
        )
    finally:
        transport.close()
    if transport_kind == "file":  # a file is written whoever the mail is for
        assert all(isinstance(result, SendResult) for result in results)
        assert len(list((tmp_path / "outbox").iterdir())) == 4
        return
    assert isinstance(results[0], SendResult) and not results[0].refused
    assert isinstance(results[1], PermanentError) and "no recipients" in str(results[1])
    assert isinstance(results[2], RecipientsRefusedError) and "550" in results[2].refused["nadie@example.pe"]
    assert isinstance(results[3], SendResult) and list(results[3].refused) == ["nadie@example.pe"]
    assert [(m.subject, m.rcpt_tos) for m in smtp_sink.messages] == [
        ("Aviso 1", ["jose@example.pe"]),
        ("Aviso 4", ["jose@example.pe"]),
    ]

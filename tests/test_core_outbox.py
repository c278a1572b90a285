"""The outbox: mails are rendered and stored in the caller's transaction, idempotent, capped, claimed once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from consultas import outbox
from consultas.mailer import Envelope, fecha
from consultas.models import Event, Message, Outbox, OutboxStatus
from tests.core_support import CONTEXT, IDENTITY, NOW


def _enqueue(
    session: Session, key: str, to: str = "jose@example.pe", cap: int | None = None
) -> Outbox | None:
    return outbox.enqueue_mail(
        session,
        template="consulta_recibida",
        context=CONTEXT,
        envelope=Envelope(to=[to], in_reply_to="<orig@example.pe>", references=["<orig@example.pe>"]),
        identity=IDENTITY,
        idempotency_key=key,
        now=NOW,
        auto_reply_cap=cap,
    )


def test_a_queued_mail_is_a_threaded_automatic_spanish_mail_with_the_number(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        row = _enqueue(session, "recibida:1")
        assert row is not None
        row_id = row.id
    with sessions() as session:
        stored = session.get(Outbox, row_id)
        assert stored is not None
        assert stored.status == OutboxStatus.PENDING
        raw = session.get(Message, stored.message_pk).raw  # type: ignore[union-attr]
    mail = message_from_bytes(raw or b"", policy=policy.default)
    assert mail["Subject"] == "[CONS-2024-000001] Su consulta ha sido registrada"
    assert mail["Auto-Submitted"] == "auto-replied"
    assert mail["In-Reply-To"] == "<orig@example.pe>"
    assert mail["Message-ID"].endswith("@consultas.mef.gob.pe>")
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "viernes 13 de diciembre de 2024" in text
    assert "RUC 20131380951" in text
    html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Jos\u00e9 P\u00e9rez Quispe" in html


def test_the_same_idempotency_key_queues_one_mail(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        first = _enqueue(session, "recibida:1")
        second = _enqueue(session, "recibida:1")
        assert first is second
    with sessions() as session:
        assert session.scalar(select(func.count(Outbox.id))) == 1


def test_automatic_mails_to_one_sender_stop_at_the_daily_cap(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        queued = [_enqueue(session, f"k{i}", cap=3) for i in range(5)]
    assert [row is not None for row in queued] == [True, True, True, False, False]
    with sessions() as session:
        capped = session.scalars(select(Event).where(Event.kind == "auto_reply_capped")).all()
        assert len(capped) == 2


def test_a_row_is_claimed_by_one_worker_only_and_a_dead_claim_expires(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        row = _enqueue(session, "k")
        assert row is not None
        row_id = row.id
    with sessions.begin() as session:
        assert outbox.claim(session, row_id, worker="a", now=NOW) is True
    with sessions.begin() as session:
        assert outbox.claim(session, row_id, worker="b", now=NOW) is False
        assert outbox.due_ids(session, now=NOW) == []
    later = NOW + outbox.CLAIM_TIMEOUT + timedelta(seconds=1)
    with sessions.begin() as session:
        assert outbox.due_ids(session, now=later) == [row_id]
        assert outbox.claim(session, row_id, worker="b", now=later) is True
        outbox.mark_sent(session, row_id, now=later)
    with sessions.begin() as session:
        assert outbox.claim(session, row_id, worker="c", now=later + timedelta(hours=1)) is False


def test_retries_back_off_then_fail_and_can_be_retried_by_command(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        row = _enqueue(session, "k")
        assert row is not None
        row_id = row.id
    moment = NOW
    for attempt in range(1, 4):
        with sessions.begin() as session:
            assert outbox.claim(session, row_id, worker="w", now=moment)
            will_retry = outbox.mark_retry(session, row_id, error="421 busy", now=moment, max_attempts=3)
        assert will_retry is (attempt < 3)
        with sessions() as session:
            stored = session.get(Outbox, row_id)
            assert stored is not None
            if will_retry:
                assert stored.next_attempt_at == moment + outbox.backoff(attempt)
                moment = stored.next_attempt_at
    with sessions.begin() as session:
        stored = session.get(Outbox, row_id)
        assert stored is not None and stored.status == OutboxStatus.FAILED
        assert outbox.retry_failed(session, now=moment) == 1
    with sessions() as session:
        assert outbox.due_ids(session, now=moment) == [row_id]


def test_template_context_round_trips_through_json() -> None:
    assert json.loads(json.dumps(CONTEXT)) == CONTEXT


def test_dates_render_in_spanish_in_lima_whatever_the_os_locale() -> None:
    assert fecha("2024-12-09") == "lunes 9 de diciembre de 2024"
    # 02:00 UTC on the 1st is still the 31st in Lima (UTC-5).
    assert (
        fecha(datetime(2025, 1, 1, 2, 0, tzinfo=UTC), with_time=True)
        == "martes 31 de diciembre de 2024, 21:00"
    )

"""The answer to the citizen: by mail (and Telegram when that was the channel); closed on time or late."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from consultas.mailer import OutgoingAttachment
from consultas.models import Channel, Consulta, ConsultaStatus, Outbox
from routing.answer import send_answer
from tests.routing_support import (
    CITIZEN,
    CONFIG,
    NOW,
    events_of,
    load_example_red,
    make_consulta,
    queued_mails,
)

GUIDE = OutgoingAttachment("guia.pdf", "application/pdf", b"%PDF-1.4 guia")


def test_a_telegram_consulta_gets_the_answer_by_telegram_and_by_mail(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        load_example_red(session)
        consulta = make_consulta(
            session, channel=Channel.TELEGRAM, telegram_chat_id=777001, organo_code="DGTP"
        )
        send_answer(
            session,
            consulta,
            body="Su giro fue abonado.",
            attachments=[GUIDE],
            answered_by="DGTP",
            config=CONFIG,
            now=NOW,
        )
    with sessions() as session:
        telegram = session.scalar(select(Outbox).where(Outbox.channel == Channel.TELEGRAM))
        [mail] = queued_mails(session)
        assert telegram is not None
        assert telegram.payload["chat_id"] == 777001
        assert (
            "CONS-2025-000123" in telegram.payload["text"]
            and "Su giro fue abonado." in telegram.payload["text"]
        )
        assert [a.filename for a in telegram.message.attachments] == ["guia.pdf"]
    assert mail.to == [CITIZEN] and mail.attachment_names() == ["guia.pdf"]
    assert "Dirección General del Tesoro Público" in mail.text


def test_an_answer_on_the_due_date_is_on_time_and_one_after_it_is_late(
    sessions: sessionmaker[Session],
) -> None:
    on_due_day = datetime(2025, 3, 26, 21, 0, tzinfo=UTC)  # 16:00 in Lima on the due date
    next_day = datetime(2025, 3, 27, 14, 0, tzinfo=UTC)
    with sessions.begin() as session:
        first = make_consulta(session)
        second = make_consulta(session, number="CONS-2025-000124")
        send_answer(
            session,
            first,
            body="A tiempo.",
            attachments=[],
            answered_by="OGDAU",
            config=CONFIG,
            now=on_due_day,
        )
        send_answer(
            session, second, body="Tarde.", attachments=[], answered_by="OGDAU", config=CONFIG, now=next_day
        )
    with sessions() as session:
        answered = events_of(session, "answered")
        closed = session.scalars(select(Consulta).order_by(Consulta.id)).all()
    assert [e.detail["on_time"] for e in answered] == [True, False]
    assert [(c.status, c.answered_on, c.answered_by) for c in closed] == [
        (ConsultaStatus.RESPONDIDA, date(2025, 3, 26), "OGDAU"),
        (ConsultaStatus.RESPONDIDA, date(2025, 3, 27), "OGDAU"),
    ]
    assert all(c.closed_at is not None for c in closed)

"""OGDAU's daily digest: hand-counted figures, a randomized cross-check, the mail and its idempotency."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime
from email import message_from_bytes, policy

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from consultas.mailer import Envelope
from consultas.models import (
    Channel,
    ConsultaStatus,
    Direction,
    Message,
    MessageKind,
    Outbox,
)
from consultas.outbox import enqueue_mail, mark_failed
from tests.followup_support import (
    DIGEST_HAND_MADE,
    ON,
    add_organos,
    insert,
    lima,
    make_config,
    naive_working_days,
    random_rows,
)
from workers.digest import build_digest, render_digest, send_digest_for

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def add_mail(session: Session, kind: MessageKind, received_at: datetime, n: int) -> None:
    session.add(
        Message(
            direction=Direction.INBOUND,
            channel=Channel.EMAIL,
            kind=kind,
            mailbox="consultas@mef.gob.pe",
            message_id=f"<m{n}@example.pe>",
            sender=f"persona{n}@example.pe",
            subject=f"Correo {n}",
            error="no se pudo leer el MIME" if kind == MessageKind.QUARANTINED else None,
            received_at=received_at,
        )
    )


def add_outbox(session: Session, key: str, *, failed: bool) -> None:
    row = enqueue_mail(
        session,
        template="aviso_ogdau",
        context={
            "titulo": "Prueba",
            "numero": "",
            "detalle": "x",
            "remitente": "",
            "asunto": "",
            "mensaje": "",
        },
        envelope=Envelope(to=["destino@example.pe"]),
        identity=make_config().identity,
        idempotency_key=key,
        now=T0,
    )
    assert row is not None
    if failed:
        mark_failed(session, row.id, error="550 mailbox unavailable", now=T0)


def test_digest_figures_match_a_hand_count(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        add_organos(session)
        insert(session, DIGEST_HAND_MADE)
        add_mail(session, MessageKind.QUARANTINED, lima(date(2025, 8, 15), 9), 1)  # 3 days ago: listed
        add_mail(session, MessageKind.QUARANTINED, lima(date(2025, 8, 5), 9), 2)  # 13 days ago: not
        add_mail(session, MessageKind.CITIZEN, lima(date(2025, 8, 15), 9), 3)
        add_outbox(session, "a", failed=True)
        add_outbox(session, "b", failed=False)
    with sessions() as session:
        digest = build_digest(session, config=make_config(), on=ON)

    assert [(x.organo, x.pendientes, x.por_vencer, x.vencidas) for x in digest.por_organo] == [
        ("DGPP", 4, 2, 1),
        ("OGDAU", 1, 0, 1),
    ]
    assert (digest.total_pendientes, digest.total_por_vencer, digest.total_vencidas) == (5, 2, 2)
    assert [(v.organo, v.due_on, v.dias_atraso) for v in digest.vencidas] == [
        ("DGPP", "2025-08-13", 3),
        ("OGDAU", "2025-08-15", 1),
    ]
    assert digest.total_subsanacion == 1 and digest.subsanacion[0].faltantes == ["documento"]
    assert [q.remitente for q in digest.cuarentena] == ["persona1@example.pe"]
    assert digest.total_fallidos == 1 and "550" in digest.fallidos[0].error
    assert json.loads(json.dumps(digest.as_dict()))["total_vencidas"] == 2  # JSON round trip

    rendered = render_digest(digest)
    assert (
        rendered.subject
        == "Resumen diario de consultas del lunes 18 de agosto de 2025: 5 pendientes, 2 vencidas"
    )
    assert "(3 días hábiles de atraso)" in rendered.text
    assert "(1 día hábil de atraso)" in rendered.text
    assert rendered.html is not None and "persona1@example.pe" in rendered.html


def test_digest_is_queued_to_ogdau_once_per_working_day_and_never_before_0830(
    sessions: sessionmaker[Session],
) -> None:
    config = make_config()
    with sessions.begin() as session:
        add_organos(session)
        insert(session, DIGEST_HAND_MADE)
    attempts = [
        (ON, lima(ON, 8, 0), False),  # before the office opens
        (ON, lima(ON, 8, 30), True),
        (ON, lima(ON, 9, 0), False),  # already queued
        (date(2025, 8, 16), lima(date(2025, 8, 16), 9), False),  # Saturday
        (date(2025, 8, 6), lima(date(2025, 8, 6), 9), False),  # holiday
    ]
    for on, now, expected in attempts:
        with sessions.begin() as session:
            assert send_digest_for(session, config=config, on=on, now=now) is expected
    with sessions() as session:
        rows = session.scalars(select(Outbox).where(Outbox.template == "resumen_diario")).all()
        assert [row.envelope_to for row in rows] == [["ogdau@mef.gob.pe"]]
        message = session.get(Message, rows[0].message_pk)
        assert message is not None and message.raw is not None
        mail = message_from_bytes(message.raw, policy=policy.default)
    assert "5 pendientes" in mail["Subject"]
    assert mail.get_body(("html",)) is not None


def test_digest_per_organo_matches_a_naive_count_on_random_data(sessions: sessionmaker[Session]) -> None:
    config = make_config()
    rows = random_rows(7, 400, config.calendar, ON)
    with sessions.begin() as session:
        add_organos(session)
        insert(session, rows)
    with sessions() as session:
        digest = build_digest(session, config=config, on=ON, list_limit=1000)

    soon_end = date(2025, 8, 20)  # 2 working days after Monday 18 August: Tuesday 19, Wednesday 20
    expected: Counter[tuple[str, str]] = Counter()
    for row in rows:
        if row.status in (ConsultaStatus.ADMITIDA, ConsultaStatus.ASIGNADA) and row.due_on is not None:
            organo = row.organo or "OGDAU"
            expected[(organo, "pendientes")] += 1
            expected[(organo, "por_vencer")] += ON <= row.due_on <= soon_end
            expected[(organo, "vencidas")] += row.due_on < ON
    got: Counter[tuple[str, str]] = Counter()
    for line in digest.por_organo:
        got[(line.organo, "pendientes")] += line.pendientes
        got[(line.organo, "por_vencer")] += line.por_vencer
        got[(line.organo, "vencidas")] += line.vencidas
    assert +got == +expected
    assert digest.total_subsanacion == sum(r.status == ConsultaStatus.SUBSANACION for r in rows)
    late = sorted(
        (r.due_on, naive_working_days(config.calendar, r.due_on, ON))
        for r in rows
        if r.status in (ConsultaStatus.ADMITIDA, ConsultaStatus.ASIGNADA)
        and r.due_on is not None
        and r.due_on < ON
    )
    assert sorted((date.fromisoformat(v.due_on), v.dias_atraso) for v in digest.vencidas) == late

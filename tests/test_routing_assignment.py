"""Routing a new consulta: técnica to the Red (titular + alterno), administrativa to OGDAU, bounces."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from consultas.models import Channel, Consulta, ConsultaStatus, Message, RedMember
from routing.assignment import assign_new_consulta, on_routed_mail_bounce
from routing.reply_address import parse_reply_address
from tests.routing_support import (
    CONFIG,
    DGPMI_ALTERNO,
    DGPMI_TITULAR,
    MAILBOX,
    NOW,
    OGDAU_EMAIL,
    SECRET,
    events_of,
    load_example_red,
    make_consulta,
    queued_mails,
)

PDF = b"%PDF-1.4 ficha tecnica"


def test_a_tecnica_consulta_goes_to_the_titular_with_the_alterno_in_cc_and_a_signed_reply_to(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        load_example_red(session)
        consulta = make_consulta(session, attachments=(("ficha.pdf", "application/pdf", PDF),))
        assign_new_consulta(session, consulta, config=CONFIG, now=NOW, text=consulta.question or "")
    with sessions() as session:
        stored = session.scalar(select(Consulta))
        assert stored is not None
        assert (stored.status, stored.tipo, stored.organo_code) == (
            ConsultaStatus.ASIGNADA,
            "tecnica",
            "DGPMI",
        )
        assert stored.assigned_at == NOW
        [routed] = queued_mails(session)
        classified = events_of(session, "classified")
    assert routed.to == [DGPMI_TITULAR] and routed.cc == [DGPMI_ALTERNO]
    assert routed.subject.startswith(
        "[CONS-2025-000123] Consulta técnica asignada: Registro del formato 12-B"
    )
    assert routed.reply_to is not None
    token = parse_reply_address(routed.reply_to, MAILBOX, SECRET)
    assert token is not None and token.valid and token.number == "CONS-2025-000123"
    assert "45678912" in routed.text and "IOARR" in routed.text
    assert "miércoles 26 de marzo de 2025" in routed.text  # the due date
    assert "#derivar" in routed.text and "DGTP: Dirección General del Tesoro Público" in routed.text
    assert routed.attachment_names() == ["ficha.pdf"]
    assert classified[0].detail["organo"] == "DGPMI" and "formato 12" in classified[0].detail["reason"]


def test_an_absent_titular_leaves_the_alterno_alone_in_to(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        load_example_red(session)
        session.execute(update(RedMember).where(RedMember.email == DGPMI_TITULAR).values(absent=True))
        consulta = make_consulta(session)
        assign_new_consulta(session, consulta, config=CONFIG, now=NOW, text=consulta.question or "")
    with sessions() as session:
        [routed] = queued_mails(session)
    assert routed.to == [DGPMI_ALTERNO] and routed.cc == []


def test_an_administrativa_consulta_goes_to_ogdau_with_the_reason_in_the_audit_trail(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        load_example_red(session)
        consulta = make_consulta(
            session,
            subject="Estado de mi trámite",
            question="Quisiera saber el estado de mi trámite presentado por mesa de partes virtual.",
        )
        assign_new_consulta(session, consulta, config=CONFIG, now=NOW, text=consulta.question or "")
    with sessions() as session:
        stored = session.scalar(select(Consulta))
        assert stored is not None and stored.tipo == "administrativa" and stored.organo_code is None
        [routed] = queued_mails(session)
        [classified] = events_of(session, "classified")
    assert routed.to == [OGDAU_EMAIL]
    assert routed.subject.startswith("[CONS-2025-000123] Consulta administrativa asignada")
    assert classified.detail["type"] == "administrativa" and classified.detail["reason"]


def test_the_bot_theme_wins_over_the_text(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        load_example_red(session)
        consulta = make_consulta(session, channel=Channel.TELEGRAM)
        assign_new_consulta(session, consulta, config=CONFIG, now=NOW, text="", tema="DGTP")
    with sessions() as session:
        [routed] = queued_mails(session)
    assert routed.to == ["fcastaneda@mef.gob.pe"]


def test_a_bounced_routed_mail_marks_the_titular_and_goes_again_to_the_alterno_alone(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        load_example_red(session)
        consulta = make_consulta(session)
        assign_new_consulta(session, consulta, config=CONFIG, now=NOW, text=consulta.question or "")
    with sessions.begin() as session:
        [first] = queued_mails(session)
        original = session.scalar(select(Message).where(Message.subject == first.subject))
        assert original is not None
        assert on_routed_mail_bounce(session, original, config=CONFIG, now=NOW)
    with sessions() as session:
        titular = session.scalar(select(RedMember).where(RedMember.email == DGPMI_TITULAR))
        assert titular is not None and titular.bounced_at == NOW
        mails = queued_mails(session)
    resent = [m for m in mails if m.template == "derivacion_red"][1]
    assert resent.to == [DGPMI_ALTERNO] and resent.cc == []
    assert any(m.template == "aviso_ogdau" and m.to == [OGDAU_EMAIL] for m in mails)


def test_a_bounce_of_a_mail_that_was_not_routed_is_left_to_intake(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        load_example_red(session)
        consulta = make_consulta(session)
        citizen_mail = consulta.messages[0]
        assert not on_routed_mail_bounce(session, citizen_mail, config=CONFIG, now=NOW)
        assert queued_mails(session) == []

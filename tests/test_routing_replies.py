"""Red replies: only the assigned Red, through the signed address, reaches the citizen; commands work."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from consultas.models import Consulta, ConsultaStatus, Message, MessageKind
from routing.assignment import assign_new_consulta
from routing.replies import handle_reply
from tests.routing_support import (
    CITIZEN,
    CONFIG,
    DGPMI_ALTERNO,
    DGPMI_TITULAR,
    DGTP_ALTERNO,
    DGTP_TITULAR,
    MAILBOX,
    NOW,
    OGDAU_EMAIL,
    QueuedMail,
    event_kinds,
    events_of,
    load_example_red,
    make_consulta,
    queued_mails,
    red_reply,
    reply_address,
    store_inbound,
)

REPLIES = Path(__file__).parent / "fixtures" / "replies"
GMAIL_REPLY = (REPLIES / "gmail_es.txt").read_text(encoding="utf-8")
GMAIL_EXPECTED = (REPLIES / "gmail_es.expected.txt").read_text(encoding="utf-8").strip()


def _routed(session: Session, **consulta_fields: object) -> Consulta:
    load_example_red(session)
    consulta = make_consulta(session, **consulta_fields)  # type: ignore[arg-type]
    assign_new_consulta(session, consulta, config=CONFIG, now=NOW, text=consulta.question or "")
    return consulta


def _handle(session: Session, raw: bytes) -> tuple[bool, Message]:
    mail, message = store_inbound(session, raw)
    return handle_reply(session, mail, message, config=CONFIG, now=NOW), message


def _to_citizen(mails: list[QueuedMail]) -> list[QueuedMail]:
    return [m for m in mails if CITIZEN in m.to]


def test_the_titulars_reply_reaches_the_citizen_without_quoted_history_and_with_the_number(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        _routed(session)
        handled, _ = _handle(session, red_reply(sender=DGPMI_TITULAR, body=GMAIL_REPLY))
        assert handled
    with sessions() as session:
        [answer] = _to_citizen(queued_mails(session))
        consulta = session.scalar(select(Consulta))
        assert consulta is not None and consulta.status == ConsultaStatus.RESPONDIDA
    assert answer.subject.startswith("[CONS-2025-000123] Respuesta a su consulta")
    assert GMAIL_EXPECTED in answer.text
    assert "escribió" not in answer.text and ">" not in answer.text
    assert DGPMI_TITULAR not in answer.mail.as_string()
    assert "Dirección General de Programación Multianual de Inversiones" in answer.text
    assert answer.reply_to == MAILBOX
    assert str(answer.mail["In-Reply-To"]) == "<origen-123@example.pe>"


def test_the_alterno_may_answer_too_and_the_attachments_go_to_the_citizen(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        _routed(session)
        raw = red_reply(
            sender=DGPMI_ALTERNO,
            body="Adjunto el instructivo del formato 12-B.\n\nAtentamente,\nMarco Llerena",
            attachments=(("instructivo.pdf", "application/pdf", b"%PDF-1.4 instructivo"),),
        )
        _handle(session, raw)
    with sessions() as session:
        [answer] = _to_citizen(queued_mails(session))
    assert answer.attachment_names() == ["instructivo.pdf"]


@pytest.mark.parametrize(
    ("sender", "to", "reason"),
    [
        ("intruso@gmail.com", None, "el remitente no es titular ni alterno de DGPMI"),
        (DGTP_TITULAR, None, "el remitente no es titular ni alterno de DGPMI"),
        (DGPMI_TITULAR, "consultas+cons-2025-000123.aaaaaaaaaaaaaaaa@mef.gob.pe", "alterada o falsificada"),
        (DGPMI_TITULAR, reply_address("CONS-2025-000124", b"other-secret"), "número de consulta desconocido"),
        (
            DGPMI_TITULAR,
            reply_address().replace("cons-2025-000123", "cons-2025-000124"),
            "número de consulta desconocido",
        ),
        (DGPMI_TITULAR, MAILBOX, "no llegó por la dirección firmada"),
    ],
    ids=["stranger", "other-organo", "forged-token", "other-secret", "altered-number", "no-token"],
)
def test_a_reply_that_fails_authentication_never_reaches_the_citizen_and_ogdau_is_told(
    sessions: sessionmaker[Session], sender: str, to: str | None, reason: str
) -> None:
    with sessions.begin() as session:
        _routed(session)
        handled, message = _handle(session, red_reply(sender=sender, to=to, body="La respuesta es sí."))
        assert handled
        message_pk = message.id
    with sessions() as session:
        mails = queued_mails(session)
        consulta = session.scalar(select(Consulta))
        stored = session.get(Message, message_pk)
        [rejected] = events_of(session, "reply_rejected")
    assert _to_citizen(mails) == []
    assert consulta is not None and consulta.status == ConsultaStatus.ASIGNADA
    assert stored is not None and stored.kind == MessageKind.REJECTED_REPLY
    assert reason in rejected.detail["reason"]
    [alert] = [m for m in mails if m.template == "aviso_ogdau"]
    assert alert.to == [OGDAU_EMAIL] and "La respuesta es sí." in alert.text


def test_a_reply_in_the_thread_without_the_signed_address_is_recognised_but_rejected(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        _routed(session)
        routed_id = session.scalar(select(Message.message_id).where(Message.subject.like("[CONS-%")))
        raw = red_reply(
            sender=DGPMI_TITULAR, to=MAILBOX, subject="Re: consulta", body="Sí.", in_reply_to=routed_id
        )
        handled, _ = _handle(session, raw)
        assert handled
        assert _to_citizen(queued_mails(session)) == []


def test_a_citizens_mail_quoting_the_number_is_left_to_intake(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        _routed(session)
        raw = red_reply(
            sender=CITIZEN, to=MAILBOX, subject="Consulta CONS-2025-000123: ¿novedades?", body="Hola"
        )
        handled, _ = _handle(session, raw)
        assert not handled
        assert "reply_rejected" not in event_kinds(session)


def test_derivar_moves_the_consulta_to_the_other_organo_which_gets_the_routed_mail(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        _routed(session)
        body = (
            "#derivar DGTP\nEs un tema de la carta orden electrónica, corresponde a Tesoro.\n\n"
            "El mié, 12 mar 2025 a las 10:00, Consultas MEF escribió:\n> x"
        )
        _handle(session, red_reply(sender=DGPMI_TITULAR, body=body))
    with sessions() as session:
        consulta = session.scalar(select(Consulta))
        mails = queued_mails(session)
        [derived] = events_of(session, "derived")
    assert (
        consulta is not None and consulta.organo_code == "DGTP" and consulta.status == ConsultaStatus.ASIGNADA
    )
    assert consulta.due_on is not None and consulta.due_on.isoformat() == "2025-03-26"  # the due date stays
    assert derived.detail["from_organo"] == "DGPMI" and derived.detail["to_organo"] == "DGTP"
    assert _to_citizen(mails) == []
    new = [m for m in mails if m.template == "derivacion_red"][-1]
    assert new.to == [DGTP_TITULAR] and new.cc == [DGTP_ALTERNO]
    assert new.subject.startswith("[CONS-2025-000123] Consulta técnica derivada")
    assert "corresponde a Tesoro" in new.text and "Derivada por: DGPMI" in new.text


def test_after_a_derivation_the_old_organo_can_no_longer_answer(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        _routed(session)
        _handle(session, red_reply(sender=DGPMI_TITULAR, body="#derivar DGTP"))
        _handle(session, red_reply(sender=DGPMI_TITULAR, body="Mejor la respondo yo: sí."))
        assert _to_citizen(queued_mails(session)) == []
        _handle(session, red_reply(sender=DGTP_ALTERNO, body="Respuesta de Tesoro."))
        [answer] = _to_citizen(queued_mails(session))
    assert "Dirección General del Tesoro Público" in answer.text


def test_derivar_to_an_unknown_code_changes_nothing_and_tells_the_sender_and_ogdau(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        _routed(session)
        _handle(session, red_reply(sender=DGPMI_TITULAR, body="#derivar XYZ\nNo es nuestro."))
        consulta = session.scalar(select(Consulta))
        mails = queued_mails(session)
    assert consulta is not None and consulta.organo_code == "DGPMI"
    assert [m.to for m in mails if m.template == "aviso_red"] == [[DGPMI_TITULAR]]
    assert any(m.template == "aviso_ogdau" and "XYZ" in m.text for m in mails)
    assert _to_citizen(mails) == []


def test_administrativa_sends_it_back_to_ogdau_who_may_then_answer(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        _routed(session)
        _handle(
            session,
            red_reply(sender=DGPMI_TITULAR, body="#administrativa\nEs sobre el estado de un trámite."),
        )
        consulta = session.scalar(select(Consulta))
        assert consulta is not None and consulta.tipo == "administrativa" and consulta.organo_code is None
        back = [m for m in queued_mails(session) if m.template == "derivacion_red"][-1]
        assert back.to == [OGDAU_EMAIL] and "Es sobre el estado de un trámite." in back.text
        _handle(
            session, red_reply(sender=OGDAU_EMAIL, body="Su trámite está en evaluación.", sender_name="OGDAU")
        )
        [answer] = _to_citizen(queued_mails(session))
    assert "Oficina de Gestión Documental y Atención al Usuario" in answer.text
    assert "Su trámite está en evaluación." in answer.text


def test_a_nota_is_recorded_and_never_reaches_the_citizen(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        _routed(session)
        _handle(
            session,
            red_reply(sender=DGPMI_TITULAR, body="#nota Consultado con el equipo de Banco de Inversiones"),
        )
        notas = events_of(session, "nota")
        mails = queued_mails(session)
        consulta = session.scalar(select(Consulta))
    assert [n.detail["text"] for n in notas] == ["Consultado con el equipo de Banco de Inversiones"]
    assert _to_citizen(mails) == []
    assert consulta is not None and consulta.status == ConsultaStatus.ASIGNADA


def test_a_nota_before_the_answer_stays_internal_while_the_answer_goes_out(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        _routed(session)
        _handle(
            session,
            red_reply(sender=DGPMI_TITULAR, body="#nota revisado con el jefe\nSí, puede registrarlo."),
        )
        [answer] = _to_citizen(queued_mails(session))
    assert "Sí, puede registrarlo." in answer.text and "revisado con el jefe" not in answer.text


def test_an_unknown_command_is_reported_to_the_sender_and_nothing_goes_to_the_citizen(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        _routed(session)
        _handle(session, red_reply(sender=DGPMI_TITULAR, body="#derviar DGTP\nPor favor derivar."))
        mails = queued_mails(session)
    [notice] = [m for m in mails if m.template == "aviso_red"]
    assert notice.to == [DGPMI_TITULAR] and "#derviar DGTP" in notice.text
    assert _to_citizen(mails) == []


def test_a_second_reply_after_the_answer_is_recorded_and_ogdau_told_but_not_sent(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        _routed(session)
        _handle(session, red_reply(sender=DGPMI_TITULAR, body="Primera respuesta."))
        _handle(session, red_reply(sender=DGPMI_ALTERNO, body="Segunda respuesta."))
        mails = queued_mails(session)
        kinds = event_kinds(session)
    assert len(_to_citizen(mails)) == 1
    assert "reply_after_close" in kinds
    assert any(m.template == "aviso_ogdau" and "Segunda respuesta." in m.text for m in mails)

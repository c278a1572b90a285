"""Intake pipeline acceptance (issue 3): mails in as bytes, the database and the outbox as people see them."""

from __future__ import annotations

from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from consultas.errors import MalformedMailError
from consultas.models import Consulta, ConsultaStatus, Event, Message, MessageKind, Outbox
from intake.pipeline import process_inbound_mail, quarantine_mail
from routing.outcome import OutcomeKind
from tests.intake_support import COMPLETE_BODY, INCOMPLETE_BODY, citizen_mail, process
from tests.routing_support import CITIZEN, CONFIG, MAILBOX, NOW, OGDAU_EMAIL, QueuedMail, queued_mails

FIXTURES = Path(__file__).parent / "fixtures" / "mails"


def mails(sessions: sessionmaker[Session], template: str) -> list[QueuedMail]:
    with sessions() as session:
        return [m for m in queued_mails(session) if m.template == template]


def consultas(sessions: sessionmaker[Session]) -> list[Consulta]:
    with sessions() as session:
        return list(session.scalars(select(Consulta).order_by(Consulta.id)))


def outbox_count(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count(Outbox.id))) or 0


def message_id_of(mail: QueuedMail) -> str:
    return str(mail.mail["Message-ID"])


def test_a_complete_mail_gets_a_number_and_a_threaded_confirmation_with_its_dates(
    sessions: sessionmaker[Session],
) -> None:
    raw = citizen_mail()
    outcome = process(sessions, raw)

    [consulta] = consultas(sessions)
    assert outcome.kind is OutcomeKind.ADMITTED and outcome.consulta_number == consulta.number
    assert consulta.number == "CONS-2025-000001"
    assert consulta.status is ConsultaStatus.ASIGNADA  # admitted, then routed at once
    assert (consulta.full_name, consulta.document_number, consulta.phone) == (
        "José Pérez Quispe",
        "45678912",
        "+51987654321",
    )
    [confirmation] = mails(sessions, "consulta_recibida")
    assert confirmation.to == [CITIZEN]
    assert "CONS-2025-000001" in confirmation.subject
    assert "miércoles 12 de marzo de 2025" in confirmation.text  # presented: the arrival day
    assert "miércoles 26 de marzo de 2025" in confirmation.text  # due: 10 working days later
    original_id = f"<{raw.split(b'Message-ID: <')[1].split(b'>')[0].decode()}>"
    assert confirmation.mail["In-Reply-To"] == original_id
    assert confirmation.mail["Auto-Submitted"] == "auto-replied"


def test_a_mail_after_office_hours_counts_as_presented_the_next_working_day_whatever_its_date_header(
    sessions: sessionmaker[Session],
) -> None:
    # Friday 14 March 2025, 17:00 in Lima; the Date header claims Wednesday morning.
    friday_evening = NOW + timedelta(days=2, hours=7)
    with sessions.begin() as session:
        process_inbound_mail(session, citizen_mail(), mailbox=MAILBOX, config=CONFIG, now=friday_evening)
    [consulta] = consultas(sessions)
    assert consulta.presented_on is not None and consulta.presented_on.isoformat() == "2025-03-17"


def test_the_same_mail_twice_gives_one_consulta_and_one_confirmation(sessions: sessionmaker[Session]) -> None:
    raw = citizen_mail()
    process(sessions, raw, imap_uid=7, uidvalidity=1)
    again = process(sessions, raw, imap_uid=9, uidvalidity=1)  # re-delivered under another UID

    assert again.kind is OutcomeKind.DUPLICATE
    assert len(consultas(sessions)) == 1
    assert len(mails(sessions, "consulta_recibida")) == 1


def test_an_out_of_office_reply_to_the_confirmation_gets_nothing(sessions: sessionmaker[Session]) -> None:
    process(sessions, citizen_mail())
    [confirmation] = mails(sessions, "consulta_recibida")
    before = outbox_count(sessions)

    outcome = process(
        sessions,
        citizen_mail(
            "Estaré fuera de la oficina hasta el lunes.",
            subject=f"Respuesta automática: {confirmation.subject}",
            in_reply_to=message_id_of(confirmation),
            headers={"Auto-Submitted": "auto-replied"},
        ),
    )

    assert outcome.kind is OutcomeKind.AUTOMATIC
    assert outbox_count(sessions) == before
    assert len(consultas(sessions)) == 1
    with sessions() as session:
        kinds = list(session.scalars(select(Message.kind).where(Message.direction == "inbound")))
    assert kinds == [MessageKind.CITIZEN, MessageKind.AUTO_REPLY]


def test_an_incomplete_mail_gets_a_subsanacion_naming_exactly_what_is_missing_and_no_number(
    sessions: sessionmaker[Session],
) -> None:
    outcome = process(sessions, citizen_mail(INCOMPLETE_BODY, subject="Formato 12-B"))

    [consulta] = consultas(sessions)
    assert outcome.kind is OutcomeKind.SUBSANACION
    assert consulta.number is None and consulta.status is ConsultaStatus.SUBSANACION
    [ask] = mails(sessions, "subsanacion_requisitos")
    assert ask.to == [CITIZEN]
    assert f"[REF-{consulta.id}]" in ask.subject
    assert "Número de documento de identidad" in ask.text
    assert "Número de teléfono de contacto" in ask.text
    assert "Correo electrónico de contacto" not in ask.text  # the sender's address counts
    assert "Descripción concreta de su consulta" not in ask.text
    assert not mails(sessions, "consulta_recibida") and not mails(sessions, "derivacion_red")


def test_an_invalid_dni_is_named_with_the_reason(sessions: sessionmaker[Session]) -> None:
    body = COMPLETE_BODY.replace("DNI: 45678912", "DNI: 4567891")
    process(sessions, citizen_mail(body))
    [ask] = mails(sessions, "subsanacion_requisitos")
    assert "Datos que no son válidos" in ask.text
    assert "El DNI debe tener 8 dígitos." in ask.text
    assert consultas(sessions)[0].document_number is None


def test_the_citizens_reply_completing_the_requisitos_numbers_the_same_consulta(
    sessions: sessionmaker[Session],
) -> None:
    process(sessions, citizen_mail(INCOMPLETE_BODY))
    [ask] = mails(sessions, "subsanacion_requisitos")

    outcome = process(
        sessions,
        citizen_mail(
            "DNI: 45678912\nTeléfono: 987654321\n\nEl mié, 12 mar 2025, Consultas MEF escribió:\n> Estimado",
            subject=f"RE: {ask.subject}",
            in_reply_to=message_id_of(ask),
        ),
    )

    [consulta] = consultas(sessions)
    assert outcome.kind is OutcomeKind.ADMITTED and outcome.consulta_id == consulta.id
    assert consulta.number == "CONS-2025-000001"
    assert consulta.question is not None and "formato 12-B" in consulta.question
    [confirmation] = mails(sessions, "consulta_recibida")
    assert "CONS-2025-000001" in confirmation.subject and "45678912" in confirmation.text


def test_a_reply_without_threading_headers_is_matched_by_the_reference_in_the_subject(
    sessions: sessionmaker[Session],
) -> None:
    process(sessions, citizen_mail(INCOMPLETE_BODY))
    [ask] = mails(sessions, "subsanacion_requisitos")
    process(sessions, citizen_mail("DNI: 45678912\nCelular: 987 654 321", subject=f"RE: {ask.subject}"))
    assert [c.number for c in consultas(sessions)] == ["CONS-2025-000001"]


def test_a_reply_still_incomplete_asks_again_for_only_what_is_still_missing(
    sessions: sessionmaker[Session],
) -> None:
    process(sessions, citizen_mail(INCOMPLETE_BODY))
    [ask] = mails(sessions, "subsanacion_requisitos")
    process(
        sessions,
        citizen_mail("Mi DNI es 45678912.", subject=f"RE: {ask.subject}", in_reply_to=message_id_of(ask)),
    )

    _first, second = mails(sessions, "subsanacion_requisitos")
    assert "Número de documento de identidad" not in second.text
    assert "Número de teléfono de contacto" in second.text
    assert consultas(sessions)[0].number is None


def test_a_later_mail_citing_the_number_is_attached_not_a_new_consulta(
    sessions: sessionmaker[Session],
) -> None:
    process(sessions, citizen_mail())
    outcome = process(
        sessions, citizen_mail("Adjunto más información sobre mi caso.", subject="Sobre CONS-2025-000001")
    )

    assert outcome.kind is OutcomeKind.FOLLOW_UP
    [consulta] = consultas(sessions)
    with sessions() as session:
        assert (
            session.scalar(
                select(func.count(Message.id)).where(
                    Message.consulta_id == consulta.id, Message.direction == "inbound"
                )
            )
            == 2
        )
    routed = mails(sessions, "derivacion_red")
    assert len(routed) == 2 and "Adjunto más información" in routed[-1].text


def test_a_number_cited_by_someone_else_starts_a_new_consulta(sessions: sessionmaker[Session]) -> None:
    process(sessions, citizen_mail())
    process(sessions, citizen_mail(subject="Sobre CONS-2025-000001", sender="otra.persona@example.pe"))
    assert [c.number for c in consultas(sessions)] == ["CONS-2025-000001", "CONS-2025-000002"]


def test_a_mail_on_a_closed_consulta_is_attached_and_ogdau_told_without_reopening(
    sessions: sessionmaker[Session],
) -> None:
    process(sessions, citizen_mail())
    with sessions.begin() as session:
        consulta = session.scalars(select(Consulta)).one()
        consulta.status = ConsultaStatus.RESPONDIDA
    process(sessions, citizen_mail("No entendí la respuesta.", subject="RE: [CONS-2025-000001] Respuesta"))

    [consulta] = consultas(sessions)
    assert consulta.status is ConsultaStatus.RESPONDIDA
    [alert] = mails(sessions, "aviso_ogdau")
    assert alert.to == [OGDAU_EMAIL] and "No entendí la respuesta." in alert.text


def test_a_bounce_of_the_confirmation_marks_the_citizen_unreachable_and_tells_ogdau_once(
    sessions: sessionmaker[Session],
) -> None:
    process(sessions, citizen_mail())
    [confirmation] = mails(sessions, "consulta_recibida")
    fixture = (FIXTURES / "dsn_bounce_postfix.eml").read_bytes()
    bounce = fixture.replace(
        b"<recibida.2025-000151@consultas.mef.gob.pe>", message_id_of(confirmation).encode()
    )
    second = bounce.replace(b"5D1A213E4B@mx1", b"5D1A213E4C@mx1")  # the same bounce, relayed twice

    outcome = process(sessions, bounce)
    process(sessions, second)

    [consulta] = consultas(sessions)
    assert outcome.kind is OutcomeKind.BOUNCE and outcome.consulta_id == consulta.id
    with sessions() as session:
        kinds = list(session.scalars(select(Event.kind).where(Event.consulta_id == consulta.id)))
    assert "citizen_unreachable" in kinds
    assert len(mails(sessions, "aviso_ogdau")) == 1
    assert len(mails(sessions, "consulta_recibida")) == 1


def test_a_broken_mail_is_quarantined_and_the_next_mail_is_still_confirmed(
    sessions: sessionmaker[Session],
) -> None:
    broken = (FIXTURES / "broken_binary.eml").read_bytes()
    with pytest.raises(MalformedMailError), sessions.begin() as session:
        process_inbound_mail(session, broken, mailbox=MAILBOX, config=CONFIG, now=NOW)
    for _ in range(2):  # a crash replay quarantines it once
        with sessions.begin() as session:
            quarantine_mail(
                session, broken, mailbox=MAILBOX, reason="MalformedMailError", config=CONFIG, now=NOW
            )
    process(sessions, citizen_mail())

    with sessions() as session:
        quarantined = [
            m.raw for m in session.scalars(select(Message).where(Message.kind == MessageKind.QUARANTINED))
        ]
    assert quarantined == [broken]
    assert len(mails(sessions, "aviso_ogdau")) == 1
    assert len(mails(sessions, "consulta_recibida")) == 1


def test_the_per_sender_cap_stops_a_flood_of_automatic_replies(sessions: sessionmaker[Session]) -> None:
    # A misbehaving responder that never marks its mail automatic keeps writing incomplete mails.
    for index in range(CONFIG.auto_reply_cap + 3):
        process(sessions, citizen_mail(INCOMPLETE_BODY, subject=f"Consulta {index}"))
    assert len(mails(sessions, "subsanacion_requisitos")) == CONFIG.auto_reply_cap
    with sessions() as session:
        capped = session.scalar(select(func.count(Event.id)).where(Event.kind == "auto_reply_capped"))
    assert capped == 3


def test_attachments_are_stored_with_their_content(sessions: sessionmaker[Session]) -> None:
    mail = EmailMessage()
    mail["From"] = f"José Pérez Quispe <{CITIZEN}>"
    mail["To"] = MAILBOX
    mail["Subject"] = "Formato 12-B"
    mail["Message-ID"] = make_msgid(domain="example.pe")
    mail.set_content(COMPLETE_BODY)
    mail.add_attachment(b"%PDF-1.4 contenido", maintype="application", subtype="pdf", filename="formato.pdf")
    process(sessions, mail.as_bytes())
    with sessions() as session:
        [message] = session.scalars(select(Message).where(Message.direction == "inbound"))
        assert [(a.filename, a.content) for a in message.attachments] == [
            ("formato.pdf", b"%PDF-1.4 contenido")
        ]
    [routed] = mails(sessions, "derivacion_red")
    assert routed.attachment_names() == ["formato.pdf"]

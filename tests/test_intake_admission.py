"""Admission's other doors: the bot's structured form and the expiry of abandoned subsanaciones."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from consultas.models import Channel, Consulta, ConsultaStatus
from consultas.requisitos import Requisitos
from routing.admission import admit_structured, expire_subsanaciones
from tests.intake_support import INCOMPLETE_BODY, citizen_mail, process
from tests.routing_support import CONFIG, NOW, queued_mails

FORM = Requisitos(
    full_name="Ana Flores Quispe",
    document_type="DNI",
    document_number="45678912",
    email="ana.flores@example.pe",
    phone="987 654 321",
    question="¿Cómo registro el formato 12-B de una IOARR en Invierte.pe?",
)


def test_a_complete_telegram_form_is_numbered_confirmed_by_mail_and_routed(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        consulta = admit_structured(
            session, FORM, channel=Channel.TELEGRAM, config=CONFIG, now=NOW, telegram_chat_id=42
        )
        number = consulta.number
    with sessions() as session:
        stored = session.scalars(select(Consulta)).one()
        sent = queued_mails(session)
    assert number == "CONS-2025-000001" and stored.telegram_chat_id == 42
    assert stored.status is ConsultaStatus.ASIGNADA and stored.phone == "+51987654321"
    [confirmation] = [m for m in sent if m.template == "consulta_recibida"]
    assert confirmation.to == ["ana.flores@example.pe"] and number in confirmation.subject


def test_an_incomplete_form_is_refused_naming_each_problem_and_nothing_is_stored(
    sessions: sessionmaker[Session],
) -> None:
    form = Requisitos(full_name="Ana Flores Quispe", document_number="4567891", question=FORM.question)
    with pytest.raises(ValueError) as refused, sessions.begin() as session:
        admit_structured(session, form, channel=Channel.TELEGRAM, config=CONFIG, now=NOW)
    assert str(refused.value) == (
        "Falta: Correo electrónico de contacto; Falta: Número de teléfono de contacto; "
        "No es válido: Número de documento de identidad (DNI, carné de extranjería o pasaporte)"
    )
    with sessions() as session:
        assert session.scalars(select(Consulta)).first() is None


@pytest.mark.parametrize(("days_later", "archived"), [(13, False), (15, True)])
def test_a_subsanacion_without_reply_is_archived_after_ten_working_days(
    sessions: sessionmaker[Session], days_later: int, archived: bool
) -> None:
    process(sessions, citizen_mail(INCOMPLETE_BODY))  # Wednesday 12 March 2025
    # 10 working days after 12 March 2025 is Wednesday 26 March (day 14); day 13 is Tuesday 25.
    with sessions.begin() as session:
        count = expire_subsanaciones(session, config=CONFIG, now=NOW + timedelta(days=days_later))
    with sessions() as session:
        consulta = session.scalars(select(Consulta)).one()
        templates = [m.template for m in queued_mails(session)]
    assert count == int(archived)
    assert (consulta.status is ConsultaStatus.ARCHIVADA) is archived
    assert ("consulta_archivada" in templates) is archived
    assert consulta.number is None

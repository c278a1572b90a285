"""Acceptance of issue 4 through the intake pipeline: mails in as bytes, the outbox as recipients see it.

Runs against ``intake.pipeline.process_inbound_mail`` (the architecture's one entry point for a raw
mail). The black-box variant through Dovecot, ``consultas serve`` and an SMTP sink is
``tests/test_e2e_routing_imap.py``.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from consultas.models import Consulta
from tests.routing_support import (
    CITIZEN,
    CONFIG,
    DGPMI_ALTERNO,
    DGPMI_TITULAR,
    DGTP_TITULAR,
    MAILBOX,
    NOW,
    OGDAU_EMAIL,
    load_example_red,
    queued_mails,
    red_reply,
)

pipeline: Any = pytest.importorskip("intake.pipeline", reason="intake.pipeline is not written yet")


def citizen_mail(subject: str, question: str) -> bytes:
    mail = EmailMessage()
    mail["From"] = f"José Pérez Quispe <{CITIZEN}>"
    mail["To"] = MAILBOX
    mail["Subject"] = subject
    mail["Message-ID"] = make_msgid(domain="example.pe")
    mail["Date"] = "Wed, 12 Mar 2025 10:00:00 -0500"
    mail.set_content(
        "Nombres y apellidos: José Pérez Quispe\nDNI: 45678912\n"
        f"Correo: {CITIZEN}\nTeléfono: 987654321\n\nConsulta: {question}\n"
    )
    return mail.as_bytes()


def process(session: Session, raw: bytes) -> Any:
    return pipeline.process_inbound_mail(session, raw, mailbox=MAILBOX, config=CONFIG, now=NOW)


def routed_number(sessions: sessionmaker[Session]) -> str:
    with sessions() as session:
        number: str | None = session.scalar(select(Consulta.number))
    assert number is not None
    return number


def test_a_technical_mail_is_routed_answered_and_derived_as_the_issue_asks(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        load_example_red(session)
    with sessions.begin() as session:
        process(
            session,
            citizen_mail("Formato 12-B", "¿Cómo registro el formato 12-B de una IOARR en Invierte.pe?"),
        )
    number = routed_number(sessions)
    with sessions() as session:
        routed = [m for m in queued_mails(session) if m.template == "derivacion_red"]
    assert routed[0].to == [DGPMI_TITULAR] and routed[0].cc == [DGPMI_ALTERNO]
    assert routed[0].reply_to is not None and number in routed[0].subject
    signed = routed[0].reply_to
    subject = f"RE: {routed[0].subject}"

    # Someone else, and a forged token: nothing reaches the citizen.
    forged = signed.split(".")[0] + ".aaaaaaaaaaaaaaaa@mef.gob.pe"
    with sessions.begin() as session:
        process(
            session, red_reply(sender="otro@gmail.com", to=signed, subject=subject, body="Respuesta falsa")
        )
        process(session, red_reply(sender=DGPMI_TITULAR, to=forged, subject=subject, body="Respuesta falsa"))
    with sessions() as session:
        assert not [m for m in queued_mails(session) if CITIZEN in m.to and "Respuesta falsa" in m.text]

    # #derivar moves it to DGTP, which gets the routed mail.
    with sessions.begin() as session:
        process(session, red_reply(sender=DGPMI_ALTERNO, to=signed, subject=subject, body="#derivar DGTP"))
    with sessions() as session:
        routed = [m for m in queued_mails(session) if m.template == "derivacion_red"]
    assert routed[-1].to == [DGTP_TITULAR]

    # DGTP's titular answers: the citizen gets it without the quoted history, with the number.
    body = (
        "Debe solicitarlo a la OPMI del sector.\n\n"
        "El mié, 12 mar 2025 a las 10:00, Consultas MEF escribió:\n> hola"
    )
    with sessions.begin() as session:
        process(session, red_reply(sender=DGTP_TITULAR, to=signed, subject=subject, body=body))
    with sessions() as session:
        [answer] = [m for m in queued_mails(session) if m.template == "respuesta_ciudadano"]
    assert answer.to == [CITIZEN] and number in answer.subject
    assert "OPMI del sector" in answer.text and "escribió" not in answer.text


def test_an_administrative_mail_reaches_ogdau(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        load_example_red(session)
    with sessions.begin() as session:
        process(
            session, citizen_mail("Estado de trámite", "¿En qué estado está mi trámite de mesa de partes?")
        )
    with sessions() as session:
        [routed] = [m for m in queued_mails(session) if m.template == "derivacion_red"]
    assert routed.to == [OGDAU_EMAIL]

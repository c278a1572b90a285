"""An out-of-office absence ends by itself after CONSULTAS_ABSENCE_DAYS."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from intake.pipeline import process_inbound_mail
from routing.absence import away_members
from routing.assignment import routed_recipients
from tests.ops_support import CITIZENS, take_in
from tests.routing_support import (
    CONFIG,
    DGPMI_ALTERNO,
    DGPMI_TITULAR,
    MAILBOX,
    NOW,
    load_example_red,
    queued_mails,
)


def test_an_absent_titular_is_routed_to_again_once_the_absence_days_pass(
    sessions: sessionmaker[Session],
) -> None:
    config = replace(CONFIG, absence_days=3)
    with sessions.begin() as session:
        load_example_red(session)
    number = take_in(sessions, CITIZENS[0], config=config)
    with sessions() as session:
        [routed] = [m for m in queued_mails(session) if m.template == "derivacion_red"]
    reply = (
        f"From: {DGPMI_TITULAR}\r\nTo: {routed.reply_to}\r\n"
        f"Subject: Respuesta automática: {routed.subject}\r\n"
        "Message-ID: <oof-1@mef.gob.pe>\r\nAuto-Submitted: auto-replied\r\n\r\nFuera de la oficina.\r\n"
    ).encode()
    with sessions.begin() as session:
        process_inbound_mail(session, reply, mailbox=MAILBOX, config=config, now=NOW)
    with sessions() as session:
        assert [m.email for m in away_members(session, now=NOW)] == [DGPMI_TITULAR]
        assert routed_recipients(session, "DGPMI", now=NOW + timedelta(days=2, hours=23)) == (
            [DGPMI_ALTERNO],
            [],
        )
        after = NOW + timedelta(days=3, seconds=1)
        assert routed_recipients(session, "DGPMI", now=after) == ([DGPMI_TITULAR], [DGPMI_ALTERNO])
        assert away_members(session, now=after) == []
        handed = [m for m in queued_mails(session) if m.template == "derivacion_red"]
    assert [m.to for m in handed] == [[DGPMI_TITULAR], [DGPMI_ALTERNO]] and number in handed[1].subject


def test_the_daily_digest_shows_the_watchdog_incidents_and_the_red_members_away(
    sessions: sessionmaker[Session],
) -> None:
    from datetime import date

    from consultas.watchdog import IncidentKind, apply_incidents
    from workers.digest import build_digest, render_digest

    with sessions.begin() as session:
        load_example_red(session)
    take_in(sessions, CITIZENS[0])
    with sessions() as session:
        [routed] = [m for m in queued_mails(session) if m.template == "derivacion_red"]
    reply = (
        f"From: {DGPMI_TITULAR}\r\nTo: {routed.reply_to}\r\nSubject: Auto: {routed.subject}\r\n"
        "Message-ID: <oof-2@mef.gob.pe>\r\nAuto-Submitted: auto-replied\r\n\r\nFuera de la oficina.\r\n"
    ).encode()
    with sessions.begin() as session:
        process_inbound_mail(session, reply, mailbox=MAILBOX, config=CONFIG, now=NOW)
        apply_incidents(
            session,
            {IncidentKind.SMTP_REFUSING: "El servidor SMTP rechaza la conexión."},
            now=NOW,
            identity=CONFIG.identity,
            recipients=["ogdau@mef.gob.pe"],
        )
    with sessions() as session:
        digest = build_digest(session, config=CONFIG, on=date(2025, 3, 13))
    text = render_digest(digest).text
    assert "El servidor de correo saliente rechaza los envíos: desde el miércoles 12 de marzo de 2025" in text
    assert "(sin resolver)" in text
    assert f"DGPMI, titular {DGPMI_TITULAR}: ausente hasta el miércoles 19 de marzo de 2025" in text


def test_reminders_skip_a_titular_away_on_an_out_of_office_reply(sessions: sessionmaker[Session]) -> None:
    from datetime import UTC, datetime

    from workers.reminders import run_reminders

    config = replace(CONFIG, absence_days=14)
    with sessions.begin() as session:
        load_example_red(session)
    take_in(sessions, CITIZENS[0], config=config)
    with sessions() as session:
        [routed] = [m for m in queued_mails(session) if m.template == "derivacion_red"]
    reply = (
        f"From: {DGPMI_TITULAR}\r\nTo: {routed.reply_to}\r\nSubject: Auto: {routed.subject}\r\n"
        "Message-ID: <oof-3@mef.gob.pe>\r\nAuto-Submitted: auto-replied\r\n\r\nFuera de la oficina.\r\n"
    ).encode()
    with sessions.begin() as session:
        process_inbound_mail(session, reply, mailbox=MAILBOX, config=config, now=NOW)
    # Due 26 March 2025; three working days before, the titular is still away (14 days)
    with sessions.begin() as session:
        run_reminders(session, config=config, now=datetime(2025, 3, 21, 15, 0, tzinfo=UTC))
    with sessions() as session:
        [reminder] = [m for m in queued_mails(session) if m.template == "recordatorio_red"]
    assert reminder.to == [DGPMI_ALTERNO] and reminder.cc == []

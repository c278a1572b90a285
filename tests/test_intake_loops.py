"""Automatic mail (auto-replies, bounces, lists, our own mail) is recognised; citizens' mail is not."""

from __future__ import annotations

from pathlib import Path

import pytest

from consultas.loops import LoopVerdict, MailKind, classify_automatic
from consultas.mime import parse_mail

MAILS = Path(__file__).parent / "fixtures" / "mails"
OWN_ADDRESSES = frozenset({"consultas@mef.gob.pe"})
OWN_DOMAIN = "consultas.mef.gob.pe"


def classify(raw: bytes) -> LoopVerdict:
    return classify_automatic(parse_mail(raw), own_addresses=OWN_ADDRESSES, own_message_id_domain=OWN_DOMAIN)


def load(name: str) -> bytes:
    return (MAILS / name).read_bytes()


def with_header(raw: bytes, header: bytes) -> bytes:
    """Add one header line on top of a fixture, as Zulip's fixture variants do."""
    return header + b"\r\n" + raw


def without_header(raw: bytes, name: bytes) -> bytes:
    lines = raw.split(b"\n")
    return b"\n".join(line for line in lines if not line.lower().startswith(name.lower() + b":"))


@pytest.mark.parametrize(
    ("fixture", "kind"),
    [
        ("exchange_out_of_office_es.eml", MailKind.auto_reply),
        ("gmail_vacation.eml", MailKind.auto_reply),
        ("dsn_bounce_postfix.eml", MailKind.bounce),
        ("mailing_list_newsletter.eml", MailKind.bulk),
        ("outlook_alternative_labelled.eml", MailKind.person),
        ("gmail_alternative_prose.eml", MailKind.person),
        ("thunderbird_latin1_8bit.eml", MailKind.person),
        ("apple_mail_attachments.eml", MailKind.person),
        ("phone_client_8bit.eml", MailKind.person),
        ("outlook_forward.eml", MailKind.person),
        ("gmail_quoted_reply_subsanacion.eml", MailKind.person),
        ("html_only_table.eml", MailKind.person),
        ("no_message_id.eml", MailKind.person),
    ],
)
def test_each_fixture_is_classified_as_the_kind_of_sender_that_wrote_it(fixture: str, kind: MailKind) -> None:
    verdict = classify(load(fixture))

    assert verdict.kind is kind, verdict.reason
    assert verdict.is_automatic is (kind is not MailKind.person)


def test_bounce_reports_the_message_id_of_our_undelivered_mail() -> None:
    verdict = classify(load("dsn_bounce_postfix.eml"))

    assert verdict.bounced_message_ids == ("<recibida.2025-000151@consultas.mef.gob.pe>",)


def test_bounce_with_the_whole_message_attached_reports_its_message_id() -> None:
    raw = (
        b"From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\n"
        b"To: consultas@mef.gob.pe\nSubject: Delivery Status Notification (Failure)\n"
        b"Message-ID: <bounce-1@mx.google.com>\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        b"--b\nContent-Type: text/plain\n\nAddress not found\n"
        b"--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; google\n\n"
        b"Final-Recipient: rfc822; x@gmial.com\nAction: failed\nStatus: 5.1.1\n\n"
        b"--b\nContent-Type: message/rfc822\n\n"
        b"From: consultas@mef.gob.pe\nMessage-ID: <derivacion.77@consultas.mef.gob.pe>\n"
        b"Subject: x\n\ncuerpo\n--b--\n"
    )

    verdict = classify(raw)

    assert verdict.kind is MailKind.bounce
    assert verdict.bounced_message_ids == ("<derivacion.77@consultas.mef.gob.pe>",)


def test_plain_text_bounce_from_mailer_daemon_finds_the_original_message_id_in_its_text() -> None:
    raw = (
        b"From: MAILER-DAEMON@mail.example.pe\nTo: consultas@mef.gob.pe\nSubject: failure notice\n"
        b"Message-ID: <q1@mail.example.pe>\n\n"
        b"Hi. This is the qmail-send program. I'm afraid I wasn't able to deliver your message.\n"
        b"--- Below this line is a copy of the message.\n\n"
        b"Message-ID: <recibida.9@consultas.mef.gob.pe>\nSubject: Su consulta\n"
    )

    verdict = classify(raw)

    assert verdict.kind is MailKind.bounce
    assert verdict.bounced_message_ids == ("<recibida.9@consultas.mef.gob.pe>",)


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        (b"Auto-Submitted: auto-replied", MailKind.auto_reply),
        (b"Auto-Submitted: auto-generated; owner-email=x@y.pe", MailKind.auto_reply),
        (b"Precedence: bulk", MailKind.bulk),
        (b"Precedence: junk", MailKind.bulk),
        (b"Precedence: list", MailKind.bulk),
        (b"Precedence: auto_reply", MailKind.auto_reply),
        (b"X-Autoreply: yes", MailKind.auto_reply),
        (b"X-Autorespond: vacation", MailKind.auto_reply),
        (b"X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent", MailKind.auto_reply),
        (b"List-Id: <boletin.example.pe>", MailKind.bulk),
        (b"List-Unsubscribe: <mailto:baja@example.pe>", MailKind.bulk),
        (b"Return-Path: <>", MailKind.auto_reply),
        (b"X-Failed-Recipients: x@gmial.com", MailKind.bounce),
        # Negatives: headers a citizen's client may send on an ordinary mail.
        (b"Auto-Submitted: no", MailKind.person),
        (b"Precedence: normal", MailKind.person),
        (b"X-Auto-Response-Suppress: All", MailKind.person),
        (b"X-MS-Exchange-Inbox-Rules-Loop: colega@mef.gob.pe", MailKind.person),
        (b"Return-Path: <jorgel.quispe.m@gmail.com>", MailKind.person),
    ],
)
def test_one_header_added_to_a_citizen_mail_decides_whether_it_is_automatic(
    header: bytes, kind: MailKind
) -> None:
    raw = without_header(load("gmail_alternative_prose.eml"), b"Return-Path")

    verdict = classify(with_header(raw, header))

    assert verdict.kind is kind, verdict.reason


def test_out_of_office_without_auto_submitted_is_still_caught_by_its_subject() -> None:
    raw = without_header(load("exchange_out_of_office_es.eml"), b"Auto-Submitted")

    verdict = classify(raw)

    assert verdict.kind is MailKind.auto_reply
    assert verdict.reason == "out-of-office subject"


def test_citizen_subject_mentioning_an_automatic_reply_is_not_an_auto_reply() -> None:
    raw = load("no_charset_8bit.eml").replace(
        b"Subject: Plazo de acceso a la informacion", b"Subject: No recibi la respuesta automatica"
    )

    assert classify(raw).kind is MailKind.person


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (
            b"From: Percy Villanueva <percy.villanueva@live.com>",
            b"From: Consultas MEF <Consultas@MEF.gob.pe>",
        ),
        (b"Subject: Consulta sobre SIAF", b"Message-ID: <recibida.1@consultas.mef.gob.pe>\nSubject: x"),
    ],
    ids=["our-address", "our-message-id-domain"],
)
def test_our_own_mail_looping_back_is_recognised(old: bytes, new: bytes) -> None:
    raw = load("no_message_id.eml").replace(old, new)

    assert classify(raw).kind is MailKind.own


def test_read_receipt_report_is_automatic_but_not_a_bounce() -> None:
    raw = (
        b"From: Ana <ana@example.pe>\nTo: consultas@mef.gob.pe\nSubject: Leido: Su consulta\n"
        b"Message-ID: <mdn1@example.pe>\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/report; report-type=disposition-notification; boundary="m"\n\n'
        b"--m\nContent-Type: text/plain\n\nSu mensaje fue leido.\n"
        b"--m\nContent-Type: message/disposition-notification\n\n"
        b"Original-Message-ID: <recibida.5@consultas.mef.gob.pe>\n"
        b"Disposition: manual-action/MDN-sent-manually; displayed\n"
        b"--m--\n"
    )

    assert classify(raw).kind is MailKind.auto_reply

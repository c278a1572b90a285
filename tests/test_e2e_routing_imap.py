"""Black-box acceptance of issue 4: routing to the Red and answers by email, through Dovecot and SMTP.

`consultas db upgrade` then `consultas serve` as a subprocess configured only with CONSULTAS_*
settings (the Red registry from CONSULTAS_RED_FILE), polling the test Dovecot and sending to the
SMTP sink; stopped with SIGTERM. Citizens' mails and the Red's replies are delivered into the
consultas mailbox as real mails; the Red replies as a mail client does (To = the routed mail's
Reply-To, In-Reply-To/References = its Message-ID, quoted history below the answer). Asserted is
what people see at the SMTP sink: recipients, the number in the subject, the answer's text.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.e2e_routing_support import (
    DGPMI_NAME,
    DGTP_NAME,
    REJECTED,
    TECNICA,
    citizen_mail,
    header_addresses,
    mails_to,
    number_of,
    red_reply,
    serving_with_red,
    text_of,
    wait_mails,
)
from tests.intake_imap_support import MAILBOX, wait_until
from tests.routing_support import (
    DGPMI_ALTERNO,
    DGPMI_TITULAR,
    DGTP_ALTERNO,
    DGTP_TITULAR,
    OGDAU_EMAIL,
)
from tests.servers.dovecot import DovecotServer
from tests.servers.smtp_sink import Captured, SmtpSink

ADMINISTRATIVA = (
    "Estado de mi trámite",
    "¿En qué estado está mi trámite de mesa de partes? Lo presenté hace dos semanas.",
)
#: Marks the text of replies that must never reach a citizen.
FALSA = "Respuesta falsa"


@pytest.fixture
def served(
    db_url: str, dovecot: DovecotServer, smtp_sink: SmtpSink, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with serving_with_red(db_url, dovecot, smtp_sink, tmp_path) as process:
        yield process


# Mails out, as their recipients read them ---------------------------------------------------------


def html_of(mail: Captured) -> str:
    body = mail.message.get_body(preferencelist=("html",))
    return str(body.get_content()) if isinstance(body, EmailMessage) else ""


def wait_rejection(smtp_sink: SmtpSink, count: int, what: str) -> Captured:
    """Wait for OGDAU's ``count``-th "reply rejected" alert and return it."""
    alerts = wait_mails(smtp_sink, OGDAU_EMAIL, count, what, lambda m: REJECTED in m.subject)
    return alerts[count - 1]


def assert_citizen_answer(answer: Captured, *, citizen: str, number: str, text: str, organo: str) -> None:
    """The answer as the citizen reads it: to them alone, numbered, the Red's text and nothing quoted."""
    assert answer.rcpt_tos == [citizen]
    assert header_addresses(answer, "To") == [citizen] and not answer.message.get_all("Cc")
    assert number_of(answer) == number and "Respuesta a su consulta" in answer.subject
    body = text_of(answer)
    assert text in body and number in body and organo in body
    for shown in (body, html_of(answer)):
        # No quoted history: no client attribution line, quote marks, routed mail text or token.
        assert "escribió" not in shown and "Mensaje original" not in shown
        assert "CÓMO RESPONDER" not in shown and "Plazo máximo" not in shown
        assert "consultas+" not in shown
        # Signed by the órgano, never a personal address.
        assert "@mef.gob.pe" not in shown.replace(MAILBOX, "")
    assert not [line for line in body.splitlines() if line.startswith(">")]


# Tests --------------------------------------------------------------------------------------------


def test_technical_consulta_routed_answered_and_derived_as_the_red_sees_it(
    served: subprocess.Popen[bytes], dovecot: DovecotServer, smtp_sink: SmtpSink
) -> None:
    citizen_1, citizen_2 = "ciudadano1@example.pe", "ciudadano2@example.pe"

    # A técnica consulta: confirmed to the citizen, routed to DGPMI's titular with the alterno in Cc
    dovecot.deliver(citizen_mail(1, *TECNICA), MAILBOX)
    [confirmation_1] = wait_mails(smtp_sink, citizen_1, 1, "the confirmation of consulta 1")
    number_1 = number_of(confirmation_1)
    [routed_1] = wait_mails(smtp_sink, DGPMI_TITULAR, 1, "the routed mail to DGPMI's titular")
    assert sorted(routed_1.rcpt_tos) == sorted([DGPMI_TITULAR, DGPMI_ALTERNO])
    assert header_addresses(routed_1, "To") == [DGPMI_TITULAR]
    assert header_addresses(routed_1, "Cc") == [DGPMI_ALTERNO]
    assert number_of(routed_1) == number_1
    signed = str(routed_1.message["Reply-To"])
    assert signed.startswith(f"consultas+{number_1.lower()}.") and signed.endswith("@mef.gob.pe")
    routed_text = text_of(routed_1)
    assert TECNICA[1].split("?")[0] in routed_text and "#derivar" in routed_text
    assert "45678912" in routed_text  # the requisitos travel with it
    assert not mails_to(smtp_sink, DGTP_TITULAR) and not mails_to(smtp_sink, OGDAU_EMAIL)

    # Someone else replying to the signed address, and the titular with a forged or an altered
    # token: recorded, OGDAU told each time, nothing to the citizen
    token = signed.partition(".")[2].partition("@")[0]
    altered = signed.replace(token, token[:-1] + ("a" if token[-1] != "a" else "b"))
    forged = f"consultas+{number_1.lower()}.aaaaaaaaaaaaaaaa@mef.gob.pe"
    assert signed not in (altered, forged)
    not_member = "el remitente no es titular ni alterno de DGPMI"
    bad_token = "la dirección de respuesta firmada fue alterada o falsificada"
    for count, (sender, to, who, reason) in enumerate(
        [
            ("Pedro Impostor <pedro.impostor@gmail.com>", None, "someone else", not_member),
            (DGPMI_TITULAR, forged, "a forged token", bad_token),
            (DGPMI_TITULAR, altered, "an altered token", bad_token),
        ],
        start=1,
    ):
        dovecot.deliver(
            red_reply(routed_1, sender=sender, to=to, answer=f"{FALSA} ({who}): no aplica."), MAILBOX
        )
        alert = wait_rejection(smtp_sink, count, f"OGDAU's alert about the reply from {who}")
        assert number_of(alert) == number_1 and reason in text_of(alert)
    assert mails_to(smtp_sink, citizen_1) == [confirmation_1]

    # The titular's reply: the citizen gets the answer with the number and without the history
    answer_text = "Debe registrar el formato 12-B en el Banco de Inversiones con el usuario de la OPMI."
    dovecot.deliver(red_reply(routed_1, sender=DGPMI_TITULAR, answer=answer_text), MAILBOX)
    [_, answer_1] = wait_mails(smtp_sink, citizen_1, 2, "the answer to citizen 1")
    assert_citizen_answer(answer_1, citizen=citizen_1, number=number_1, text=answer_text, organo=DGPMI_NAME)
    # ... and the titular is told it went out
    [ack] = wait_mails(
        smtp_sink, DGPMI_TITULAR, 1, "the ack to the titular", lambda m: "Respuesta enviada" in m.subject
    )
    assert number_of(ack) == number_1 and ack.rcpt_tos == [DGPMI_TITULAR]

    # A second técnica consulta, which DGPMI's alterno sends on to DGTP (Outlook-style reply)
    dovecot.deliver(citizen_mail(2, *TECNICA), MAILBOX)
    [confirmation_2] = wait_mails(smtp_sink, citizen_2, 1, "the confirmation of consulta 2")
    number_2 = number_of(confirmation_2)
    assert number_2 != number_1
    [routed_2] = wait_mails(
        smtp_sink, DGPMI_TITULAR, 1, "consulta 2 routed to DGPMI", lambda m: number_2 in m.subject
    )
    nota = "Corresponde a la Dirección General del Tesoro Público: es sobre la carta orden electrónica."
    dovecot.deliver(
        red_reply(routed_2, sender=DGPMI_ALTERNO, answer=f"#derivar DGTP\n\n{nota}", client="outlook"),
        MAILBOX,
    )
    [derived] = wait_mails(smtp_sink, DGTP_TITULAR, 1, "the routed mail to DGTP's titular")
    assert sorted(derived.rcpt_tos) == sorted([DGTP_TITULAR, DGTP_ALTERNO])
    assert header_addresses(derived, "To") == [DGTP_TITULAR]
    assert header_addresses(derived, "Cc") == [DGTP_ALTERNO]
    assert number_of(derived) == number_2 and "derivada" in derived.subject
    derived_text = text_of(derived)
    assert "DGPMI" in derived_text and nota in derived_text and "Mensaje original" not in derived_text
    assert TECNICA[1].split("?")[0] in derived_text
    assert str(derived.message["Reply-To"]).startswith(f"consultas+{number_2.lower()}.")

    # DGPMI's titular no longer holds it: their reply is refused
    dovecot.deliver(
        red_reply(routed_2, sender=DGPMI_TITULAR, answer=f"{FALSA} (old órgano): use el formato 12-C."),
        MAILBOX,
    )
    assert number_of(wait_rejection(smtp_sink, 4, "OGDAU's alert about DGPMI's late reply")) == number_2

    # DGTP's titular answers the derived mail: the citizen gets it, signed by DGTP
    answer_text_2 = "La carta orden electrónica se registra en el módulo de tesorería del SIAF-SP."
    dovecot.deliver(red_reply(derived, sender=DGTP_TITULAR, answer=answer_text_2), MAILBOX)
    [_, answer_2] = wait_mails(smtp_sink, citizen_2, 2, "the answer to citizen 2")
    assert_citizen_answer(answer_2, citizen=citizen_2, number=number_2, text=answer_text_2, organo=DGTP_NAME)

    # In the end each citizen saw exactly a confirmation and one answer, never a refused reply
    for citizen, confirmation, answer in (
        (citizen_1, confirmation_1, answer_1),
        (citizen_2, confirmation_2, answer_2),
    ):
        assert mails_to(smtp_sink, citizen) == [confirmation, answer]
    assert not [m for m in smtp_sink.messages if FALSA in text_of(m) and not set(m.rcpt_tos) <= {OGDAU_EMAIL}]
    wait_until(lambda: dovecot.message_count(MAILBOX, "INBOX") == 0, what="an empty INBOX")
    assert dovecot.message_count(MAILBOX, "Procesados") == 9
    assert dovecot.message_count(MAILBOX, "Cuarentena") == 0


def test_administrative_consulta_reaches_ogdau_who_answers_it(
    served: subprocess.Popen[bytes], dovecot: DovecotServer, smtp_sink: SmtpSink
) -> None:
    citizen = "ciudadano3@example.pe"
    dovecot.deliver(citizen_mail(3, *ADMINISTRATIVA), MAILBOX)
    [confirmation] = wait_mails(smtp_sink, citizen, 1, "the confirmation")
    number = number_of(confirmation)
    [routed] = wait_mails(smtp_sink, OGDAU_EMAIL, 1, "the routed mail to OGDAU")
    assert routed.rcpt_tos == [OGDAU_EMAIL]
    assert header_addresses(routed, "To") == [OGDAU_EMAIL] and not routed.message.get_all("Cc")
    assert number_of(routed) == number and "administrativa" in routed.subject
    assert ADMINISTRATIVA[1].split("?")[0] in text_of(routed)
    assert str(routed.message["Reply-To"]).startswith(f"consultas+{number.lower()}.")
    red = {DGPMI_TITULAR, DGPMI_ALTERNO, DGTP_TITULAR, DGTP_ALTERNO}
    assert not [m for m in smtp_sink.messages if red & set(m.rcpt_tos)]

    # OGDAU answers it like the Red does
    answer_text = "Su trámite está en evaluación en la Oficina General de Administración."
    dovecot.deliver(red_reply(routed, sender=OGDAU_EMAIL, answer=answer_text), MAILBOX)
    [_, answer] = wait_mails(smtp_sink, citizen, 2, "OGDAU's answer to the citizen")
    assert_citizen_answer(
        answer, citizen=citizen, number=number, text=answer_text, organo="Oficina de Gestión Documental"
    )

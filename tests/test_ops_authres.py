"""Authenticated Red replies (CONSULTAS_AUTHSERV_ID): the header table, then end to end."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from routing.authres import authentication_failure
from tests.e2e_routing_support import (
    REJECTED,
    TECNICA,
    citizen_mail,
    mails_to,
    number_of,
    red_reply,
    serving_with_red,
    text_of,
    wait_mails,
)
from tests.intake_imap_support import MAILBOX
from tests.routing_support import DGPMI_TITULAR, OGDAU_EMAIL
from tests.servers.dovecot import DovecotServer
from tests.servers.smtp_sink import SmtpSink

OURS = "mx.mef.gob.pe"


def with_results(raw: bytes, *values: str) -> bytes:
    """``raw`` as our MTA hands it over: its Authentication-Results prepended, topmost first."""
    return b"".join(f"Authentication-Results: {v}\r\n".encode() for v in values) + raw


MAIL = b"From: g@mef.gob.pe\r\nSubject: RE\r\n\r\nok\r\n"


@pytest.mark.parametrize(
    ("headers", "accepted"),
    [
        ([f"{OURS}; dmarc=pass (p=reject) header.from=mef.gob.pe"], True),
        ([f"{OURS} 1; spf=pass smtp.mailfrom=mef.gob.pe; dkim=pass header.d=mef.gob.pe header.s=s1"], True),
        ([f"{OURS}; dkim=pass header.i=@correo.mef.gob.pe"], True),  # a subdomain aligns (relaxed)
        ([f"{OURS}; dkim=pass header.d=gmail.com; dmarc=fail header.from=mef.gob.pe"], False),
        ([f"{OURS}; spf=pass smtp.mailfrom=mef.gob.pe"], False),  # SPF alone is not enough
        ([f"{OURS.upper()}; DMARC=Pass header.from=mef.gob.pe"], True),
        (["otro.example; dmarc=pass header.from=mef.gob.pe"], False),  # anyone can write one
        ([], False),
        # Only the topmost header of our MTA counts; a forged one below it changes nothing
        ([f"{OURS}; dmarc=fail", f"{OURS}; dmarc=pass"], False),
        ([f"{OURS}; dmarc=pass", "otro.example; dmarc=fail"], True),
        ([f"{OURS}; dmarc=pass (comment (nested) here) header.from=mef.gob.pe"], True),
    ],
)
def test_only_our_mtas_dmarc_or_aligned_dkim_pass_authenticates(headers: list[str], accepted: bool) -> None:
    failure = authentication_failure(with_results(MAIL, *headers), "g@mef.gob.pe", OURS)
    assert (failure is None) == accepted, failure


@pytest.fixture
def served(
    db_url: str, dovecot: DovecotServer, smtp_sink: SmtpSink, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with serving_with_red(db_url, dovecot, smtp_sink, tmp_path, CONSULTAS_AUTHSERV_ID=OURS) as process:
        yield process


@pytest.mark.slow
def test_red_replies_need_our_mtas_authentication_end_to_end(
    served: subprocess.Popen[bytes], dovecot: DovecotServer, smtp_sink: SmtpSink
) -> None:
    citizen = "ciudadano1@example.pe"
    dovecot.deliver(citizen_mail(1, *TECNICA), MAILBOX)
    [routed] = wait_mails(smtp_sink, DGPMI_TITULAR, 1, "the routed mail")
    number = number_of(routed)

    # A reply whose only pass comes from another authserv-id, and one our MTA failed: impostors
    forged = with_results(
        red_reply(routed, sender=DGPMI_TITULAR, answer="Respuesta falsa (otro servidor)."),
        "otro.example; dmarc=pass header.from=mef.gob.pe",
    )
    failed = with_results(
        red_reply(routed, sender=DGPMI_TITULAR, answer="Respuesta falsa (dmarc fail)."),
        f"{OURS}; spf=fail smtp.mailfrom=mef.gob.pe; dkim=pass header.d=gmail.com; dmarc=fail",
    )
    for count, raw in enumerate((forged, failed), start=1):
        dovecot.deliver(raw, MAILBOX)
        alerts = wait_mails(smtp_sink, OGDAU_EMAIL, count, "OGDAU's alert", lambda m: REJECTED in m.subject)
        assert number_of(alerts[-1]) == number
        assert "autentic" in text_of(alerts[-1])
    assert len(mails_to(smtp_sink, citizen)) == 1  # the confirmation only

    # Our MTA's pass on top (a forged failing one below changes nothing): the citizen gets the answer
    genuine = with_results(
        red_reply(routed, sender=DGPMI_TITULAR, answer="Registre el formato 12-B con su usuario OPMI."),
        f"{OURS}; dkim=pass header.d=mef.gob.pe; dmarc=pass header.from=mef.gob.pe",
        "otro.example; dmarc=fail",
    )
    dovecot.deliver(genuine, MAILBOX)
    [_, answer] = wait_mails(smtp_sink, citizen, 2, "the answer")
    assert "formato 12-B con su usuario OPMI" in text_of(answer)
    assert not [m for m in mails_to(smtp_sink, citizen) if "Respuesta falsa" in text_of(m)]

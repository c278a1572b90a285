"""Helpers for the routing end-to-end tests: the Red registry, citizens' and the Red's mails, the sink read.

The service runs as `consultas serve` on the test Dovecot and SMTP sink; these build what goes in
(a citizen's complete consulta, a Red member's reply as a mail client writes it) and read what
came out as its recipients see it.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from email.utils import formataddr, formatdate, getaddresses, make_msgid, parseaddr
from pathlib import Path
from typing import Literal

from tests.intake_imap_support import MAILBOX, serve_env, serving, wait_until
from tests.routing_support import (
    DGPMI_ALTERNO,
    DGPMI_TITULAR,
    DGTP_ALTERNO,
    DGTP_TITULAR,
    OGDAU_EMAIL,
)
from tests.servers.dovecot import DovecotServer
from tests.servers.smtp_sink import Captured, SmtpSink

NUMBER = re.compile(r"\[(CONS-\d{4}-\d{6})\]")
WITHIN_S = 20.0
DGPMI_NAME = "Dirección General de Programación Multianual de Inversiones"
DGTP_NAME = "Dirección General del Tesoro Público"
#: A Red registry with two órganos that answer técnica consultas (and a third for the classifier).
RED_YAML = f"""\
organos:
  - code: DGPMI
    name: {DGPMI_NAME}
    topics: ["invierte.pe", "banco de inversiones", "formato 12-b", "IOARR", "inversión pública"]
    titular:
      name: "Giovanna Rengifo Salas"
      cargo: "Coordinadora"
      email: "{DGPMI_TITULAR}"
      phone: "(01) 311-5930"
    alterno:
      name: "Marco Llerena Pinto"
      cargo: "Especialista"
      email: "{DGPMI_ALTERNO}"
      phone: "(01) 311-5930"
  - code: DGTP
    name: {DGTP_NAME}
    topics: ["tesorería", "Cuenta Única del Tesoro", "deuda pública", "carta orden electrónica"]
    titular:
      name: "Fiorella Castañeda Ruiz"
      cargo: "Especialista"
      email: "{DGTP_TITULAR}"
      phone: "(01) 311-5930"
    alterno:
      name: "Julio Barrientos Vega"
      cargo: "Analista"
      email: "{DGTP_ALTERNO}"
      phone: "(01) 311-5930"
  - code: DGPP
    name: Dirección General de Presupuesto Público
    topics: ["presupuesto público", "modificación presupuestaria", "transferencia de partidas"]
    titular:
      name: "Rocío Zevallos Aranda"
      cargo: "Especialista"
      email: "rzevallos@mef.gob.pe"
      phone: "(01) 311-5930"
    alterno:
      name: "Hugo Palomino Tello"
      cargo: "Analista"
      email: "hpalomino@mef.gob.pe"
      phone: "(01) 311-5930"
"""
TECNICA = (
    "Registro del formato 12-B en el Banco de Inversiones",
    "¿Cómo registro el formato 12-B de una IOARR en el Banco de Inversiones de Invierte.pe? "
    "Necesito saber los plazos.",
)
#: Display names the Red members' mail clients put in From.
NAMES = {
    DGPMI_TITULAR: "Giovanna Rengifo Salas",
    DGPMI_ALTERNO: "Marco Llerena Pinto",
    DGTP_TITULAR: "Fiorella Castañeda Ruiz",
    OGDAU_EMAIL: "OGDAU - Mesa de Ayuda",
}
#: The subject of OGDAU's alert that a reply was rejected.
REJECTED = "Respuesta rechazada"


# Mails in -----------------------------------------------------------------------------------------


def citizen_mail(n: int, subject: str, question: str) -> bytes:
    """A complete consulta (Anexo N° 1 requisitos) from ciudadanoN@example.pe."""
    sender = f"ciudadano{n}@example.pe"
    mail = EmailMessage()
    mail["From"] = formataddr(("José Pérez Quispe", sender))
    mail["To"] = MAILBOX
    mail["Subject"] = subject
    mail["Message-ID"] = make_msgid(domain="example.pe")
    mail["Date"] = formatdate(localtime=True)
    mail.set_content(
        "Buenos días:\n\n"
        "Nombres y apellidos: José Pérez Quispe\nDNI: 45678912\nTeléfono: 987654321\n"
        f"Correo: {sender}\n\n{question}\n\nGracias.\n"
    )
    return mail.as_bytes()


def red_reply(
    routed: Captured,
    *,
    sender: str,
    answer: str,
    to: str | None = None,
    client: Literal["gmail", "outlook"] = "gmail",
) -> bytes:
    """A reply to ``routed`` as a mail client writes it: the answer on top, the history quoted below.

    ``sender`` is an address (named from NAMES) or a whole From value. ``to`` replaces the routed
    mail's Reply-To (the signed address), e.g. with a forged token.
    """
    original = routed.message
    message_id = str(original["Message-ID"])
    routed_text = text_of(routed)
    mail = EmailMessage()
    mail["From"] = formataddr((NAMES[sender], sender)) if sender in NAMES else sender
    mail["To"] = to if to is not None else str(original["Reply-To"])
    mail["Subject"] = f"RE: {routed.subject}"
    mail["Message-ID"] = make_msgid(domain=parseaddr(sender)[1].rpartition("@")[2])
    mail["Date"] = formatdate(localtime=True)
    mail["In-Reply-To"] = message_id
    mail["References"] = " ".join(filter(None, [str(original.get("References", "")), message_id]))
    name, address = parseaddr(str(original["From"]))
    if client == "gmail":
        quoted = "\n".join(f"> {line}".rstrip() for line in routed_text.splitlines())
        history = f"El mié, 12 mar 2025 a las 10:00, {name} (<{address}>)\nescribió:\n\n{quoted}\n"
    else:  # Outlook: a separator and a header block, the original not quoted
        history = (
            "-----Mensaje original-----\n"
            f"De: {name} <{address}>\n"
            "Enviado el: miércoles, 12 de marzo de 2025 10:00\n"
            f"Para: {sender}\n"
            f"Asunto: {routed.subject}\n\n"
            f"{routed_text}\n"
        )
    mail.set_content(f"{answer}\n\n{history}")
    return mail.as_bytes()


# Mails out, as their recipients read them ---------------------------------------------------------


def text_of(mail: Captured) -> str:
    body = mail.message.get_body(preferencelist=("plain",))
    assert isinstance(body, EmailMessage), mail.subject
    return str(body.get_content()).replace("\r\n", "\n")


def header_addresses(mail: Captured, name: str) -> list[str]:
    return [address.lower() for _, address in getaddresses(mail.message.get_all(name, []))]


def number_of(mail: Captured) -> str:
    found = NUMBER.search(mail.subject)
    assert found is not None, mail.subject
    return found.group(1)


def mails_to(
    smtp_sink: SmtpSink, address: str, where: Callable[[Captured], bool] = lambda _: True
) -> list[Captured]:
    return [m for m in smtp_sink.messages if address in m.rcpt_tos and where(m)]


def wait_mails(
    smtp_sink: SmtpSink,
    address: str,
    count: int,
    what: str,
    where: Callable[[Captured], bool] = lambda _: True,
) -> list[Captured]:
    """Wait (bounded) until ``address`` has received ``count`` mails matching ``where``; return them."""
    wait_until(lambda: len(mails_to(smtp_sink, address, where)) >= count, timeout_s=WITHIN_S, what=what)
    return mails_to(smtp_sink, address, where)


@contextmanager
def serving_with_red(
    db_url: str, dovecot: DovecotServer, smtp_sink: SmtpSink, tmp_path: Path, **env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`consultas serve` on Dovecot and the SMTP sink with ``RED_YAML`` loaded and OGDAU's address set;
    ``env`` adds or overrides settings."""
    red_file = tmp_path / "red.yaml"
    red_file.write_text(RED_YAML, encoding="utf-8")
    settings = serve_env(
        db_url,
        dovecot,
        smtp_sink,
        tmp_path / "var",
        CONSULTAS_OGDAU_EMAIL=OGDAU_EMAIL,
        CONSULTAS_RED_FILE=str(red_file),
        **env,
    )
    with serving(settings, tmp_path) as process:
        yield process

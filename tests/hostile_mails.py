"""Generators of hostile mails (issue 16): built as raw bytes in the tests, never committed as fixtures.

Each generator returns the bytes of one mail a careless or malicious sender could deliver; the
intake must parse it into one JSON object or refuse it with `MalformedMailError`, never raise
anything else, and never take minutes. The mails that carry a sender also carry complete
requisitos, so a service that processes them admits a consulta (the tests then see a confirmation).
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable

SENDER = "hostil@example.pe"
REQUISITOS = (
    "Nombres y apellidos: Rosa Quispe Mamani\r\nDNI: 41234567\r\n"
    f"Correo: {SENDER}\r\nTeléfono: 987654321\r\n\r\n"
    "Consulta: ¿Cómo registro el formato 12-B de una IOARR en Invierte.pe?\r\n"
).encode()

#: Sizes the issue names.
NESTING_DEPTH = 2_000
LONG_LINE_BYTES = 5 * 1024 * 1024
HEADER_COUNT = 20_000
BIG_ATTACHMENT_BYTES = 40 * 1024 * 1024


def _head(tag: str, content_type: str = "text/plain; charset=utf-8", extra: bytes = b"") -> bytes:
    return (
        f"From: Rosa Quispe <{SENDER}>\r\nTo: consultas@mef.gob.pe\r\n"
        f"Subject: Consulta {tag}\r\nMessage-ID: <{tag}@hostil.example.pe>\r\n"
        f"Date: Wed, 12 Mar 2025 10:00:00 -0500\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: {content_type}\r\n"
    ).encode() + extra


def _with_attachment(tag: str, part_headers: bytes, content: bytes) -> bytes:
    boundary = f"b-{tag}"
    return (
        _head(tag, f'multipart/mixed; boundary="{boundary}"')
        + f"\r\n--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n".encode()
        + REQUISITOS
        + f"\r\n--{boundary}\r\n".encode()
        + part_headers
        + b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(content).replace(b"\n", b"\r\n")
        + f"\r\n--{boundary}--\r\n".encode()
    )


def rfc2231_nul_charset() -> bytes:
    """An RFC 2231 filename whose charset label holds a NUL byte."""
    return _with_attachment(
        "rfc2231-nul-charset",
        b"Content-Type: application/pdf\r\n"
        b"Content-Disposition: attachment; filename*=utf\x00-8''factura%C3%B1.pdf\r\n",
        b"%PDF-1.4 factura",
    )


def rfc2231_nul_bytes() -> bytes:
    """An RFC 2231 filename whose percent-encoded bytes decode to NUL (and a raw NUL in a name)."""
    return _with_attachment(
        "rfc2231-nul-bytes",
        b'Content-Type: application/pdf; name="an\x00exo.pdf"\r\n'
        b"Content-Disposition: attachment; filename*0*=utf-8''fac%00tura; filename*1=.pdf\r\n",
        b"%PDF-1.4 factura",
    )


def date_overflow() -> bytes:
    """A Date header whose numbers overflow every integer and datetime type."""
    return (
        _head(
            "date-overflow",
            extra=b"Resent-Date: Wed, 12 Mar 99999999999999999999 10:00:00 -0500\r\n",
        ).replace(
            b"Date: Wed, 12 Mar 2025 10:00:00 -0500",
            # The zone offset overflows a C int, the year a C long (each an OverflowError in the stdlib).
            b"Date: Wed, 12 Mar 2025 10:00:00 +99999999999999999999",
        )
        + b"\r\n"
        + REQUISITOS
    )


def deep_multipart(depth: int = NESTING_DEPTH) -> bytes:
    """A multipart nested ``depth`` levels deep, the text at the bottom."""
    opening = b"".join(
        f'--d{level}\r\nContent-Type: multipart/mixed; boundary="d{level + 1}"\r\n\r\n'.encode()
        for level in range(depth)
    )
    closing = b"".join(f"\r\n--d{level}--\r\n".encode() for level in reversed(range(depth + 1)))
    return (
        _head("deep-multipart", 'multipart/mixed; boundary="d0"')
        + b"\r\n"
        + opening
        + f"--d{depth}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n".encode()
        + REQUISITOS
        + closing
    )


def long_line(size: int = LONG_LINE_BYTES) -> bytes:
    """A body whose question line goes on for ``size`` bytes (words, no newline)."""
    question = REQUISITOS.rstrip(b"\r\n") + b" Detalle:" + b" presupuesto" * (size // 12)
    return _head("long-line") + b"\r\n" + question + b"\r\n"


def many_headers(count: int = HEADER_COUNT) -> bytes:
    """A mail with ``count`` headers."""
    extra = b"".join(f"X-Relleno-{n}: valor {n}\r\n".encode() for n in range(count))
    return _head("many-headers", extra=extra) + b"\r\n" + REQUISITOS


def big_attachment(size: int = BIG_ATTACHMENT_BYTES) -> bytes:
    """A mail with an attachment of ``size`` bytes (base64: the mail is ~4/3 of that)."""
    content = random.Random(16).randbytes(size)
    return _with_attachment(
        "big-attachment",
        b'Content-Type: application/pdf\r\nContent-Disposition: attachment; filename="grande.pdf"\r\n',
        content,
    )


def nul_body() -> bytes:
    """NUL bytes in the body (8bit, no transfer encoding), in the subject and in a header."""
    return (
        _head("nul-body", extra=b"X-Mailer: Cliente\x00Roto\r\n").replace(
            b"Subject: Consulta nul-body", b"Subject: Consulta \x00con NUL"
        )
        + b"\r\n"
        + REQUISITOS.replace(b"Consulta: ", b"Consulta: \x00\x00")
        + b"texto\x00con\x00nulos\r\n"
    )


def binary_file() -> bytes:
    """Random bytes (a binary file saved as a mail), with NULs and no header structure."""
    return b"\x00\x01\x02\x7fELF" + random.Random(7).randbytes(64 * 1024)


def empty_file() -> bytes:
    return b""


#: name -> generator; the big ones are generated once per test module (see the tests' fixtures).
HOSTILE_MAILS: dict[str, Callable[[], bytes]] = {
    "rfc2231_nul_charset": rfc2231_nul_charset,
    "rfc2231_nul_bytes": rfc2231_nul_bytes,
    "date_overflow": date_overflow,
    "deep_multipart": deep_multipart,
    "long_line": long_line,
    "many_headers": many_headers,
    "big_attachment": big_attachment,
    "nul_body": nul_body,
    "binary_file": binary_file,
    "empty_file": empty_file,
}

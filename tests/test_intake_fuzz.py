"""A bounded fuzz of the intake: mutated fixture mails through `parse_to_json` and the pipeline.

Hypothesis draws mutations (byte flips, hostile snippets inserted, spans deleted or repeated,
truncation) of the mails in tests/fixtures/mails. Derandomized (the same examples every run), a
fixed number of examples and a per-example deadline: a quadratic path or a hang fails the test.
The only exception allowed is the documented refusal: `MalformedMailError` from the parser,
`QuarantineError` (its base) from the pipeline, which then quarantines the mail.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from consultas.errors import MalformedMailError, QuarantineError
from intake.parse_command import parse_to_json
from intake.pipeline import process_inbound_batch, process_inbound_mail, quarantine_mail
from tests.routing_support import CONFIG, MAILBOX, NOW

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "mails").glob("*.eml"))
MAILS = [path.read_bytes() for path in FIXTURES]

#: What hostile senders put in mails: NULs, broken encoded-words and RFC 2231 values, numbers that
#: overflow, MIME structure, 8-bit bytes, ids and addresses longer than any column.
SNIPPETS = [
    b"\x00",
    b"\x00\x00\x00\x00",
    b"\xff\xfe\xc3(\xed\xa0\x80",
    b"=?utf-8?q?a=00b?=",
    b"=?utf\x00-8?b?QUFB?=",
    b"=?x-unknown?q?=C3=B1?=",
    b"=?utf-8?b?!!!?=",
    b"; filename*=utf\x00-8''%00%ff.pdf",
    b"; filename*0*=''%00; filename*1=x",
    b'; charset="\x00"',
    b'; boundary=""',
    b"99999999999999999999999999",
    b"Date: Wed, 12 Mar 99999999999999999999 99:99:99 +99999999999\r\n",
    b'\r\nContent-Type: multipart/mixed; boundary="z"\r\n\r\n--z\r\n',
    b"\r\n--z--\r\n",
    b"\r\nContent-Type: message/rfc822\r\n\r\n",
    b"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
    b"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=00=0",
    b"\r\n\r\n",
    b"\n\r\n \r\n\t",
    b"Message-ID: <" + b"x" * 1200 + b"@example.pe>\r\n",
    b"From: " + b"a" * 400 + b"@example.pe\r\n",
    b"In-Reply-To: <" + b"r" * 1100 + b">\r\n",
    b"Subject: " + b"=?utf-8?q?=C3=B1?= " * 300 + b"\r\n",
    b"DNI: 99999999999999999999 RUC: 2" + b"0" * 40 + b"\r\n",
    b"<html><body><table><tr><td>" * 50,
]

mutation = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.sampled_from(range(len(SNIPPETS)))),
    st.tuples(st.just("delete"), st.floats(0, 1), st.integers(1, 400)),
    st.tuples(st.just("repeat"), st.floats(0, 1), st.integers(1, 200)),
    st.tuples(st.just("truncate"), st.floats(0, 1), st.just(0)),
)
mutated_mail = st.tuples(st.sampled_from(range(len(MAILS))), st.lists(mutation, min_size=1, max_size=6))


def mutate(index: int, mutations: list[tuple[str, float, int]]) -> bytes:
    raw = bytearray(MAILS[index])
    for op, where, arg in mutations:
        at = int(where * len(raw))
        if op == "flip" and raw:
            raw[min(at, len(raw) - 1)] = arg
        elif op == "insert":
            raw[at:at] = SNIPPETS[arg]
        elif op == "delete":
            del raw[at : at + arg]
        elif op == "repeat":
            raw[at:at] = raw[at : at + arg] * 20
        elif op == "truncate":
            del raw[at:]
    return bytes(raw)


def fuzz(max_examples: int) -> settings:
    """Seeded and bounded: the same ``max_examples`` examples every run, each within the deadline."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=timedelta(seconds=10),
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@fuzz(max_examples=1500)
@given(mutated_mail)
def test_parse_returns_one_json_object_or_the_documented_refusal(case: tuple[int, list]) -> None:  # type: ignore[type-arg]
    raw = mutate(*case)
    try:
        result = parse_to_json(raw, own_addresses=frozenset({MAILBOX}), own_message_id_domain="mef.gob.pe")
    except MalformedMailError:
        return
    # What `consultas parse` prints: strict UTF-8 (no lone surrogates) and no NUL characters.
    printed = json.dumps(result, ensure_ascii=False).encode("utf-8")
    assert b"\\u0000" not in printed
    assert json.loads(printed) == result


@fuzz(max_examples=200)
@given(mutated_mail)
def test_the_pipeline_processes_or_quarantines_every_mutated_mail(
    sessions: sessionmaker[Session],
    case: tuple[int, list],  # type: ignore[type-arg]
) -> None:
    raw = mutate(*case)

    def rolled_back(work: Callable[[Session], object]) -> None:
        # Each example starts from the same empty database.
        with sessions() as session:
            session.begin()
            try:
                work(session)
                session.flush()
            finally:
                session.rollback()

    try:
        rolled_back(lambda s: process_inbound_mail(s, raw, mailbox=MAILBOX, config=CONFIG, now=NOW))
    except QuarantineError as exc:
        reason = str(exc)
        rolled_back(lambda s: quarantine_mail(s, raw, mailbox=MAILBOX, reason=reason, config=CONFIG, now=NOW))
    else:
        # The sources' batch path too (ids reserved for the batch, COPY on PostgreSQL), a good mail after.
        batch = [(raw, None), (MAILS[0], None)]
        rolled_back(
            lambda s: process_inbound_batch(s, batch, mailbox=MAILBOX, config=CONFIG, now=lambda: NOW)
        )

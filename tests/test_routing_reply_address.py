"""Signed per-consulta reply addresses."""

from __future__ import annotations

import re

import pytest

from routing.reply_address import (
    ReplyToken,
    find_reply_token,
    make_reply_address,
    parse_reply_address,
    redact_address,
)

MAILBOX = "consultas@mef.gob.pe"
SECRET = b"s3cret-for-tests"


def test_reply_address_is_a_lowercase_plus_address_with_an_80_bit_token() -> None:
    address = make_reply_address(MAILBOX, "CONS-2025-000123", SECRET)

    match = re.fullmatch(r"consultas\+cons-2025-000123\.([a-z2-7]+)@mef\.gob\.pe", address)
    assert match is not None
    assert len(match[1]) * 5 >= 80


def test_reply_address_round_trips_to_the_canonical_number() -> None:
    address = make_reply_address(MAILBOX, "cons-2025-000123", SECRET)

    assert parse_reply_address(address, MAILBOX, SECRET) == ReplyToken("CONS-2025-000123", True)


@pytest.mark.parametrize("transform", [str.upper, str.title, lambda a: f"<{a}>", lambda a: f"  {a} "])
def test_reply_address_survives_case_folding_by_mail_systems(transform: object) -> None:
    address = make_reply_address(MAILBOX, "CONS-2025-000123", SECRET)
    assert callable(transform)

    assert parse_reply_address(transform(address), MAILBOX, SECRET) == ReplyToken("CONS-2025-000123", True)


def test_other_number_prefixes_are_accepted() -> None:
    address = make_reply_address(MAILBOX, "OGDAU-2026-000001", SECRET)

    assert parse_reply_address(address, MAILBOX, SECRET) == ReplyToken("OGDAU-2026-000001", True)


def test_forged_token_is_not_valid() -> None:
    address = "consultas+cons-2025-000123.aaaaaaaaaaaaaaaa@mef.gob.pe"

    assert parse_reply_address(address, MAILBOX, SECRET) == ReplyToken("CONS-2025-000123", False)


def test_altered_number_with_the_old_token_is_not_valid() -> None:
    address = make_reply_address(MAILBOX, "CONS-2025-000123", SECRET)
    altered = address.replace("000123", "000124")

    assert parse_reply_address(altered, MAILBOX, SECRET) == ReplyToken("CONS-2025-000124", False)


def test_token_made_with_another_secret_is_not_valid() -> None:
    address = make_reply_address(MAILBOX, "CONS-2025-000123", b"another secret")

    token = parse_reply_address(address, MAILBOX, SECRET)

    assert token is not None
    assert token.valid is False


@pytest.mark.parametrize(
    "address",
    [
        "consultas@mef.gob.pe",  # plain mailbox, no plus
        "consultas+cons-2025-000123.abcdefghabcdefgh@otro.gob.pe",  # other domain
        "mesadepartes+cons-2025-000123.abcdefghabcdefgh@mef.gob.pe",  # other mailbox
        "consultasx+cons-2025-000123.abcdefghabcdefgh@mef.gob.pe",
        "consultas+hola@mef.gob.pe",  # a plus address that is not ours
        "consultas+cons-2025-000123@mef.gob.pe",  # no token
        "not an address",
    ],
)
def test_address_that_is_not_our_plus_address_gives_none(address: str) -> None:
    assert parse_reply_address(address, MAILBOX, SECRET) is None


def test_find_reply_token_picks_it_from_to_cc_and_delivered_to_headers() -> None:
    address = make_reply_address(MAILBOX, "CONS-2025-000777", SECRET)
    headers = [
        "Consultas MEF <consultas@mef.gob.pe>, Ana <aruiz@mef.gob.pe>",
        f'"Consultas MEF" <{address.upper()}>',
        "otro@mef.gob.pe",
    ]

    assert find_reply_token(headers, MAILBOX, SECRET) == ReplyToken("CONS-2025-000777", True)
    assert find_reply_token([f"Consultas (MEF) <{address}> (via Outlook)"], MAILBOX, SECRET) == ReplyToken(
        "CONS-2025-000777", True
    )


def test_find_reply_token_prefers_a_valid_token_over_a_forged_one() -> None:
    good = make_reply_address(MAILBOX, "CONS-2025-000777", SECRET)
    forged = "consultas+cons-2025-000778.aaaaaaaaaaaaaaaa@mef.gob.pe"

    assert find_reply_token([forged, good], MAILBOX, SECRET) == ReplyToken("CONS-2025-000777", True)
    assert find_reply_token([forged], MAILBOX, SECRET) == ReplyToken("CONS-2025-000778", False)
    assert find_reply_token(["consultas@mef.gob.pe"], MAILBOX, SECRET) is None


@pytest.mark.parametrize("number", ["CONS-25-000123", "CONS-2025-123", "2025-000123", "CONS 2025 000123"])
def test_malformed_consulta_number_is_refused(number: str) -> None:
    with pytest.raises(ValueError, match="not a consulta number"):
        make_reply_address(MAILBOX, number, SECRET)


def test_redacted_address_never_shows_the_token() -> None:
    address = make_reply_address(MAILBOX, "CONS-2025-000123", SECRET)
    token = address.split(".")[1].split("@")[0]

    redacted = redact_address(address)

    assert token not in redacted
    assert "000123" not in redacted
    assert redacted == "consultas+<redacted>@mef.gob.pe"
    assert redact_address("aruiz@mef.gob.pe") == "aruiz@mef.gob.pe"

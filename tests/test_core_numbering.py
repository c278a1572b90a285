"""Consulta numbers: format, per-year sequence, and uniqueness under concurrent writers."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from consultas.db import make_engine, make_sessionmaker
from consultas.numbering import find_numbers, format_number, next_number, number_block


def test_numbers_are_prefix_year_and_six_digits() -> None:
    assert format_number("CONS", 2025, 42) == "CONS-2025-000042"


def test_numbers_are_sequential_per_year_and_restart_each_year(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        taken = [next_number(session, prefix="CONS", year=2025) for _ in range(3)]
        taken.append(next_number(session, prefix="CONS", year=2026))
        taken.append(next_number(session, prefix="MEF", year=2025))
    assert taken == [
        "CONS-2025-000001",
        "CONS-2025-000002",
        "CONS-2025-000003",
        "CONS-2026-000001",
        "MEF-2025-000001",
    ]


def test_a_rolled_back_transaction_gives_its_number_back(sessions: sessionmaker[Session]) -> None:
    session = sessions()
    session.begin()
    assert next_number(session, prefix="CONS", year=2025) == "CONS-2025-000001"
    session.rollback()
    session.close()
    with sessions.begin() as session:
        assert next_number(session, prefix="CONS", year=2025) == "CONS-2025-000001"


def _take_numbers_concurrently(engine: Engine, writers: int) -> list[str]:
    sessions = make_sessionmaker(engine)
    start = threading.Barrier(writers)

    def take(_: int) -> str:
        start.wait()
        with sessions.begin() as session:
            return next_number(session, prefix="CONS", year=2025)

    with ThreadPoolExecutor(max_workers=writers) as pool:
        return list(pool.map(take, range(writers)))


def test_eight_concurrent_writers_get_eight_distinct_numbers(db_url: str) -> None:
    engine = make_engine(db_url, pool_size=10) if db_url.startswith("postgresql") else make_engine(db_url)
    try:
        numbers = _take_numbers_concurrently(engine, 8)
    finally:
        engine.dispose()
    assert sorted(numbers) == [f"CONS-2025-{n:06d}" for n in range(1, 9)]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("Re: Consulta CONS-2025-000123 recibida", ["CONS-2025-000123"]),
        ("re: cons-2025-000123 y CONS-2024-000009", ["CONS-2025-000123", "CONS-2024-000009"]),
        ("Sin número CONS-25-12", []),
        ("", []),
    ],
)
def test_numbers_are_found_in_subjects_whatever_the_case(text: str, found: list[str]) -> None:
    assert find_numbers(text) == found


def test_a_number_block_hands_out_in_order_and_gives_the_unused_back(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session, number_block(session, 50):
        taken = [next_number(session, prefix="CONS", year=2025) for _ in range(3)]
    with sessions.begin() as session:
        taken.append(next_number(session, prefix="CONS", year=2025))  # no gap after the block
    assert taken == [format_number("CONS", 2025, seq) for seq in (1, 2, 3, 4)]


def test_a_block_that_fails_leaves_no_gap_once_its_transaction_rolls_back(
    sessions: sessionmaker[Session],
) -> None:
    with pytest.raises(RuntimeError), sessions.begin() as session, number_block(session, 50):
        next_number(session, prefix="CONS", year=2025)
        raise RuntimeError("a mail of the batch failed")
    with sessions.begin() as session:
        assert next_number(session, prefix="CONS", year=2025) == "CONS-2025-000001"

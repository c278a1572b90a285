"""Consulta numbers: ``<PREFIX>-<year>-<6 digits>``, sequential per year, unique under concurrency.

The counter row is incremented with one ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``: on
PostgreSQL the row lock serialises concurrent writers until their transactions end, on SQLite the
single writer does; either way no two transactions get the same number, and a rolled-back
transaction gives its number back (no gaps from failures).

A batch source wraps its batch in ``number_block(session, n)``: the first number taken reserves
up to ``n`` at once (one statement instead of one per consulta) and the block's end gives the
unused ones back. The transaction holds the counter row's lock from the reservation to its
commit, so nobody else can take a number in between and the sequence stays gap-free.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from consultas.models import ConsultaCounter

NUMBER_PATTERN = re.compile(r"\b([A-Z]{2,10})-(\d{4})-(\d{6})\b", re.IGNORECASE)


def format_number(prefix: str, year: int, seq: int) -> str:
    """``CONS-2025-000042``."""
    return f"{prefix}-{year:04d}-{seq:06d}"


_BLOCK_KEY = "consultas.numbering.block"


@dataclass
class _Block:
    size: int
    #: (prefix, year) -> [next number to hand out, last number reserved]
    spans: dict[tuple[str, int], list[int]] = field(default_factory=dict)


def next_number(session: Session, *, prefix: str, year: int) -> str:
    """Take the next number of ``year``; the caller's transaction owns the counter row until commit."""
    block: _Block | None = session.info.get(_BLOCK_KEY)
    if block is None or session.in_nested_transaction():
        seq = _advance(session, prefix, year, 1)
    else:
        span = block.spans.get((prefix, year))
        if span is None or span[0] > span[1]:
            last = _advance(session, prefix, year, block.size)
            span = block.spans[(prefix, year)] = [last - block.size + 1, last]
        seq = span[0]
        span[0] += 1
    if seq > 999_999:
        raise OverflowError(f"more than 999999 consultas in {year} for prefix {prefix}")
    return format_number(prefix, year, seq)


@contextmanager
def number_block(session: Session, size: int) -> Iterator[None]:
    """Within the block, numbers are reserved ``size`` at a time; the unused ones are given back.

    For one transaction's batch, without savepoints inside (a savepoint takes one at a time). When
    the block raises, nothing is given back: the caller rolls the transaction back, which undoes
    the reservation.
    """
    if size <= 1 or _BLOCK_KEY in session.info:
        yield
        return
    block = session.info[_BLOCK_KEY] = _Block(size)
    try:
        yield
        for (prefix, year), (next_seq, last) in block.spans.items():
            if next_seq <= last:
                with session.no_autoflush:
                    session.execute(
                        update(ConsultaCounter)
                        .where(ConsultaCounter.prefix == prefix, ConsultaCounter.year == year)
                        .values(last_seq=next_seq - 1)
                    )
    finally:
        del session.info[_BLOCK_KEY]


def _advance(session: Session, prefix: str, year: int, count: int) -> int:
    """Add ``count`` to the counter (creating it); returns its new value, the last number taken."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(ConsultaCounter)
        .values(prefix=prefix, year=year, last_seq=count)
        .on_conflict_do_update(
            index_elements=["prefix", "year"], set_={"last_seq": ConsultaCounter.last_seq + count}
        )
        .returning(ConsultaCounter.last_seq)
    )
    with session.no_autoflush:  # the counter row depends on nothing pending in the session
        return int(session.execute(statement).scalar_one())


def find_numbers(text: str) -> list[str]:
    """Every consulta number written in ``text`` (subject lines, bodies), upper-cased, in order."""
    return [f"{p.upper()}-{y}-{s}" for p, y, s in NUMBER_PATTERN.findall(text or "")]

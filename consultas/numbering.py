"""Consulta numbers: ``<PREFIX>-<year>-<6 digits>``, sequential per year, unique under concurrency.

The counter row is incremented with one ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``: on
PostgreSQL the row lock serialises concurrent writers until their transactions end, on SQLite the
single writer does; either way no two transactions get the same number, and a rolled-back
transaction gives its number back (no gaps from failures).
"""

from __future__ import annotations

import re

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from consultas.models import ConsultaCounter

NUMBER_PATTERN = re.compile(r"\b([A-Z]{2,10})-(\d{4})-(\d{6})\b", re.IGNORECASE)


def format_number(prefix: str, year: int, seq: int) -> str:
    """``CONS-2025-000042``."""
    return f"{prefix}-{year:04d}-{seq:06d}"


def next_number(session: Session, *, prefix: str, year: int) -> str:
    """Take the next number of ``year``; the caller's transaction owns the counter row until commit."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(ConsultaCounter)
        .values(prefix=prefix, year=year, last_seq=1)
        .on_conflict_do_update(
            index_elements=["prefix", "year"], set_={"last_seq": ConsultaCounter.last_seq + 1}
        )
        .returning(ConsultaCounter.last_seq)
    )
    with session.no_autoflush:  # the counter row depends on nothing pending in the session
        seq = session.execute(statement).scalar_one()
    if seq > 999_999:
        raise OverflowError(f"more than 999999 consultas in {year} for prefix {prefix}")
    return format_number(prefix, year, seq)


def find_numbers(text: str) -> list[str]:
    """Every consulta number written in ``text`` (subject lines, bodies), upper-cased, in order."""
    return [f"{p.upper()}-{y}-{s}" for p, y, s in NUMBER_PATTERN.findall(text or "")]

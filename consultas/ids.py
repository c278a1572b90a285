"""Primary keys known before the INSERT, so a batch of new rows is written in one flush.

Code that needs a new row's id (an idempotency key such as ``recibida:<consulta id>``) calls
``ensure_id``. On PostgreSQL the id comes from the table's own sequence, fetched ``POOL_SIZE`` at a
time per session, so nothing is flushed and the ORM later writes the whole batch with a few
multi-row INSERTs. Elsewhere (SQLite, the embedded default) it flushes and reads the id, as the
ORM does on its own. Ids taken and not used leave gaps; they are internal (the public consulta
number has its own gap-free counter, ``consultas.numbering``).
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy import inspect, text
from sqlalchemy.orm import Session

#: Sequence values fetched per round trip and table.
POOL_SIZE = 100

_POOL_KEY = "consultas.ids.pool"


class _HasId(Protocol):
    __tablename__: str
    id: int


def ensure_id(session: Session, row: _HasId) -> int:
    """``row.id``, assigning it first if the row is new; ``row`` must be in ``session``."""
    if preassign_id(session, row) is None:
        session.flush()
    return row.id


def preassign_id(session: Session, row: _HasId) -> int | None:
    """Give a new row its id from the sequence pool on PostgreSQL; elsewhere leave it to the flush.

    For rows nobody needs the id of yet (audit events): with every id known, the ORM writes the
    batch as one prepared executemany instead of a multi-row INSERT ... RETURNING. Returns the id,
    or None where it is assigned at the flush (never flushes).
    """
    if row.id is not None:
        return row.id
    if session.get_bind().dialect.name != "postgresql":
        return None
    pools: dict[str, list[int]] = session.info.setdefault(_POOL_KEY, {})
    pool = pools.setdefault(row.__tablename__, [])
    if not pool:
        with session.no_autoflush:
            fetched = session.execute(
                text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"),
                {"table": row.__tablename__, "n": POOL_SIZE},
            ).scalars()
            pool.extend(sorted(fetched, reverse=True))  # pop() hands them out in ascending order
    row.id = pool.pop()
    return row.id


def is_new(row: object) -> bool:
    """True while ``row`` was added in this transaction and not written yet (no row can refer to it)."""
    return bool(inspect(row).pending)

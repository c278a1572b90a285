"""Primary keys known before the INSERT, so a batch of new rows is written in one flush.

Code that needs a new row's id (an idempotency key such as ``recibida:<consulta id>``) calls
``ensure_id``. On PostgreSQL the id comes from the table's own sequence, fetched ``POOL_SIZE`` at a
time per session, so nothing is flushed and the ORM later writes the whole batch with a few
multi-row INSERTs. Elsewhere (SQLite, the embedded default) it flushes and reads the id, as the
ORM does on its own. Ids taken and not used leave gaps; they are internal (the public consulta
number has its own gap-free counter, ``consultas.numbering``).
"""

from __future__ import annotations

from collections.abc import Mapping
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
    # Read from the row's dict first (called ~25 times per mail, mostly for rows that have theirs);
    # the attribute when it is not there (a written row whose attributes expired loads it).
    known: int | None = row.__dict__.get("id")
    if known is None:
        known = row.id
    if known is not None:
        return known
    pool = _pools(session).get(row.__tablename__)
    if not pool:  # (only PostgreSQL fills pools: a pool with ids needs no look at the dialect)
        if session.get_bind().dialect.name != "postgresql":
            return None
        pool = _pools(session).setdefault(row.__tablename__, [])
        reserve_ids(session, {row.__tablename__: POOL_SIZE})
    # Straight into the row: it is new (no id yet), so nothing but its INSERT reads the value.
    row.__dict__["id"] = pool.pop()
    return row.id


def reserve_ids(session: Session, wanted: Mapping[str, int]) -> None:
    """Fill the id pools of several tables (table name -> how many ids) in one round trip.

    For a batch that knows roughly how many rows it will add: ``preassign_id`` and ``ensure_id``
    then take ids without a query per ``POOL_SIZE`` rows and table (a batch of 200 new consultas
    made 20 such round trips). Ids left unused are gaps, as at the end of any pool. A no-op but
    on PostgreSQL.
    """
    counts = {table: n for table, n in wanted.items() if n > 0}
    if not counts or session.get_bind().dialect.name != "postgresql":
        return
    with session.no_autoflush:
        fetched = session.execute(
            text(
                "SELECT w.name, nextval(pg_get_serial_sequence(w.name, 'id'))"
                " FROM unnest(CAST(:names AS text[]), CAST(:counts AS int[])) AS w(name, n),"
                " generate_series(1, w.n)"
            ),
            {"names": list(counts), "counts": list(counts.values())},
        ).all()
    pools = _pools(session)
    for table, value in fetched:
        pools.setdefault(table, []).append(value)
    for table in counts:
        pools[table].sort(reverse=True)  # pop() hands them out in ascending order


def _pools(session: Session) -> dict[str, list[int]]:
    """This session's unused ids, by table."""
    pools: dict[str, list[int]] = session.info.setdefault(_POOL_KEY, {})
    return pools


def is_new(row: object) -> bool:
    """True while ``row``, added in this transaction, is not written yet (no row can refer to it).

    Pending in the session, or held back by ``consultas.bulkwrite`` (a transient row): either way it
    has no identity yet.
    """
    return inspect(row).key is None

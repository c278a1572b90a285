"""Ids known before the INSERT (PostgreSQL sequence pool) and per-transaction look-up caches."""

from __future__ import annotations

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, sessionmaker

from consultas.ids import ensure_id, is_new, preassign_id, reserve_ids
from consultas.models import Consulta
from consultas.txcache import forget, transaction_cache
from tests.core_support import new_consulta


def test_new_rows_get_distinct_ids_that_the_insert_keeps(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        rows = [new_consulta() for _ in range(3)]
        session.add_all(rows)
        ids = [ensure_id(session, row) for row in rows]
        assert ensure_id(session, rows[0]) == ids[0]  # asked again: the same id
    with sessions.begin() as session:
        other = new_consulta()
        session.add(other)
        later = ensure_id(session, other)
    assert len(set(ids)) == 3 and ids == sorted(ids) and later > max(ids)
    with sessions() as session:
        assert sorted(session.scalars(select(Consulta.id))) == [*ids, later]


def test_on_postgresql_the_id_comes_without_writing_the_row(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        row = new_consulta()
        session.add(row)
        ensure_id(session, row)
        postgres = session.get_bind().dialect.name == "postgresql"
        # PostgreSQL: from the sequence, the row still waits for the batch's flush; SQLite: flushed.
        assert is_new(row) is postgres
        with session.no_autoflush:
            written = session.scalar(select(func.count(Consulta.id)))
        assert written == (0 if postgres else 1)


def test_a_transaction_cache_lasts_until_the_transaction_ends(sessions: sessionmaker[Session]) -> None:
    session = sessions()
    with session.begin():
        transaction_cache(session, "t")["k"] = 1
        assert transaction_cache(session, "t") == {"k": 1}
        forget(session, "t")
        assert transaction_cache(session, "t") == {}
        transaction_cache(session, "t")["k"] = 2
    with session.begin():
        assert transaction_cache(session, "t") == {}  # committed: read again
        transaction_cache(session, "t")["k"] = 3
        session.rollback()
    assert transaction_cache(session, "t") == {}
    session.close()


def test_reserved_ids_are_handed_out_without_another_query(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        engine = session.get_bind()
        statements: list[str] = []

        def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
            statements.append(statement)

        event.listen(engine, "before_cursor_execute", count)
        try:
            reserve_ids(session, {"consulta": 250, "event": 0})
            reserved = len(statements)
            rows = [new_consulta() for _ in range(250)]
            session.add_all(rows)
            ids = [preassign_id(session, row) for row in rows]
            handed_out = len(statements) - reserved
        finally:
            event.remove(engine, "before_cursor_execute", count)
        if engine.dialect.name == "postgresql":
            assert reserved == 1 and handed_out == 0  # 250 ids: three pool refills without the reservation
            numbers = [i for i in ids if i is not None]
            assert len(set(numbers)) == 250 and numbers == sorted(numbers)
        else:
            assert reserved == 0 and ids == [None] * 250  # SQLite: the flush assigns them
    with sessions() as session:
        assert session.scalar(select(func.count(Consulta.id))) == 250

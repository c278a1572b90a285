"""New rows of a batch written with PostgreSQL ``COPY`` instead of the ORM's unit of work.

A citizen's mail adds ten or more rows: its consulta, the mail itself (and its attachments), its
audit events, the outgoing mails and their outbox rows. The ORM's unit of work costs ~150 us of CPU
per such row (cascades, attribute history, one prepared INSERT each); ``COPY`` of the same values a
few tens (measured on this project's machine: the intake went from 15.94 to 14.13 M instructions per
mail with the events and outgoing mails; then from 13.72 to 13.21 M with the consulta and its mail).
Within ``copy_block(session)`` on PostgreSQL, ``add_row`` keeps such a row (its id already taken
from the sequence, ``consultas.ids``) out of the session and writes it with the others of its table
by one ``COPY``:

- before any statement of the session that reads one of the buffered tables (an idempotency look-up,
  a lazy load, ``session.get``) or that the buffer cannot see into (textual SQL), as the autoflush
  writes pending ORM rows: the session is flushed first, so the rows the buffered ones refer to
  exist. Under ``session.no_autoflush`` a statement sees neither pending nor buffered rows;
- when the block ends, after a flush of the session.

Until then a buffered row is a transient Python object: its columns and the relationships set on it
(a new consulta's ``messages``) are plain attributes. Once written, every column holds what was
written; a row added with ``joins_session=True`` (one that may still change, or be read through its
relationships: the consulta, its mail, the mail's attachments) then becomes a persistent row of the
session, as after a flush, so a later change is an UPDATE and ``session.get`` finds it. The others
(events, outgoing mails, outbox rows: never changed in the transaction) stay transient, their
relationships not loaded (read them back with a query). Outside a block, or on another database
(SQLite, the embedded default, where ids come from the INSERT), ``add_row`` is ``session.add``. If
the block raises, the buffer is dropped with the transaction the caller rolls back. A block is one
transaction: beginning a savepoint inside it raises (a savepoint's rollback would not undo rows
still in the buffer).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import psycopg
from sqlalchemy import ClauseElement, TextClause, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, make_transient_to_detached
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.schema import Table
from sqlalchemy.sql.util import find_tables

from consultas.models import Base

_BUFFER_KEY = "consultas.bulkwrite.buffer"
_MAPPERS = {mapper.local_table: mapper for mapper in Base.registry.mappers}
#: Position of each table in foreign-key order (``sorted_tables`` sorts anew on every access).
_TABLE_ORDER = {table: index for index, table in enumerate(Base.metadata.sorted_tables)}


@dataclass(frozen=True)
class _ColumnWriter:
    """How one column's value is taken from a new row and given to psycopg."""

    key: str
    default: Callable[[], Any] | None
    bind: Callable[[Any], Any] | None


@dataclass
class _Buffer:
    """The rows a block holds back, by table, and which of them join the session once written."""

    rows: dict[Table, list[Base]] = field(default_factory=dict)
    joining: list[Base] = field(default_factory=list)


@contextmanager
def copy_block(session: Session) -> Iterator[None]:
    """Buffer ``add_row`` rows of ``session`` and write them with COPY (PostgreSQL; else a no-op)."""
    if _BUFFER_KEY in session.info or session.get_bind().dialect.name != "postgresql":
        yield
        return
    buffer = session.info[_BUFFER_KEY] = _Buffer()

    def before_statement(state: ORMExecuteState) -> None:
        if buffer.rows and session.autoflush and _reads_any(state.statement, buffer.rows.keys()):
            _write(session, buffer)

    def refuse_savepoint(_session: Session, transaction: SessionTransaction) -> None:
        # Rows buffered inside a savepoint would survive its rollback: a block is one transaction.
        if transaction.nested:
            raise RuntimeError("a savepoint cannot begin inside consultas.bulkwrite.copy_block")

    event.listen(session, "do_orm_execute", before_statement)
    event.listen(session, "after_transaction_create", refuse_savepoint)
    try:
        yield
        _write(session, buffer)
    finally:
        event.remove(session, "do_orm_execute", before_statement)
        event.remove(session, "after_transaction_create", refuse_savepoint)
        del session.info[_BUFFER_KEY]


def add_row(session: Session, row: Base, *, joins_session: bool = False) -> None:
    """Add a new row (inside a block its id must be set); ``session.add`` outside a block.

    ``joins_session``: once written, the row becomes a persistent row of the session (it may still
    change, or be read through its relationships). Without it the row stays a transient object:
    for rows nothing changes in this transaction.
    """
    buffer: _Buffer | None = session.info.get(_BUFFER_KEY)
    if buffer is None:
        session.add(row)
        return
    if getattr(row, "id", None) is None:
        raise ValueError(f"a buffered {type(row).__name__} row needs its id (consultas.ids.preassign_id)")
    table = row.__table__
    assert isinstance(table, Table)
    buffer.rows.setdefault(table, []).append(row)
    if joins_session:
        buffer.joining.append(row)


def _reads_any(statement: Executable, tables: Iterable[Table]) -> bool:
    """Whether ``statement`` may read one of ``tables`` (textual SQL, or anything opaque: it may)."""
    if isinstance(statement, TextClause) or not isinstance(statement, ClauseElement):
        return True
    touched = set(find_tables(statement, include_aliases=True, include_joins=True, include_crud=True))
    return any(table in touched for table in tables)


def _write(session: Session, buffer: _Buffer) -> None:
    """Flush the session (what the rows refer to), COPY each buffered table in FK order, then let
    the rows that join the session in (all made detached first: adding one cascades to the others)."""
    if not buffer.rows:
        return
    session.flush()
    dialect = session.get_bind().dialect
    connection = cast(psycopg.Connection[Any], session.connection().connection.dbapi_connection)
    with connection.cursor() as cursor:
        for table in sorted(buffer.rows, key=_TABLE_ORDER.__getitem__):
            statement, writers = _copy_plan(table, dialect)
            try:
                with cursor.copy(statement) as copy:
                    for row in buffer.rows[table]:
                        copy.write_row(_values(row.__dict__, writers))
            except psycopg.Error as exc:
                # As SQLAlchemy raises it for its own statements (IntegrityError, OperationalError...),
                # so callers that tell a lost database from a bad mail see the same exceptions.
                raise DBAPIError.instance(statement, None, exc, psycopg.Error) from exc
    buffer.rows.clear()
    if buffer.joining:
        for row in buffer.joining:
            make_transient_to_detached(row)
        session.add_all(buffer.joining)
        buffer.joining.clear()


def _values(values: dict[str, Any], writers: tuple[_ColumnWriter, ...]) -> tuple[Any, ...]:
    out = []
    for writer in writers:
        if writer.key in values:
            value = values[writer.key]
        elif writer.default is not None:
            value = values[writer.key] = writer.default()  # as the ORM would: the row now holds it
        else:
            value = values[writer.key] = None  # written as NULL: the row holds it (not "unloaded")
        out.append(value if writer.bind is None else writer.bind(value))
    return tuple(out)


_PLANS: dict[tuple[Table, str], tuple[str, tuple[_ColumnWriter, ...]]] = {}


def _copy_plan(table: Table, dialect: Dialect) -> tuple[str, tuple[_ColumnWriter, ...]]:
    """The COPY statement for every column of ``table`` and how each value is read from a row."""
    plan = _PLANS.get((table, dialect.name))
    if plan is None:
        mapper = _MAPPERS[table]
        quote = dialect.identifier_preparer.quote
        writers = tuple(
            _ColumnWriter(
                mapper.get_property_by_column(column).key,
                _python_default(column),
                column.type.dialect_impl(dialect).bind_processor(dialect),
            )
            for column in table.columns
        )
        columns = ", ".join(quote(column.name) for column in table.columns)
        statement = f"COPY {dialect.identifier_preparer.format_table(table)} ({columns}) FROM STDIN"
        plan = _PLANS[(table, dialect.name)] = (statement, writers)
    return plan


def _python_default(column: Any) -> Callable[[], Any] | None:
    """The column's Python-side INSERT default as a no-argument function (None when it has none)."""
    default = column.default
    if default is None:
        return None
    if default.is_scalar:
        value = default.arg
        return lambda: value
    if default.is_callable:
        function = default.arg
        return lambda: function(None)  # SQLAlchemy wraps a plain callable to take the context
    raise TypeError(f"column {column} has a SQL default: COPY cannot apply it")

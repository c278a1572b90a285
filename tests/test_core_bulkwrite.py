"""Rows written with COPY inside a batch's ``copy_block``: the same rows as the ORM writes, never unseen."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from consultas import events, outbox
from consultas.bulkwrite import add_row, copy_block
from consultas.ids import ensure_id, preassign_id
from consultas.mailer import Envelope
from consultas.models import Base, Consulta, ConsultaStatus, Event, Message, Outbox, new_row
from tests.core_support import CONTEXT, IDENTITY, NOW, new_consulta

# Columns that differ between two writes of the same mail: ids, and what the idempotency key
# (different per write, it is unique) shapes: the Message-ID and so the raw bytes and their hash.
KEYED = {"id", "consulta_id", "message_pk", "idempotency_key", "message_id", "raw", "sha256", "actor"}


def _mail_and_events(session: Session, key: str) -> Outbox:
    """What admitting a mail adds besides the consulta: two events and an outgoing mail."""
    consulta = new_consulta()
    session.add(consulta)  # pending: a COPY of rows that refer to it must come after its INSERT
    events.record(session, "received", now=NOW, consulta=consulta, sender="jose@example.pe", n=1)
    events.record(session, "note", now=NOW, actor=key)  # no consulta, no detail: defaults
    row = outbox.enqueue_mail(
        session,
        template="consulta_recibida",
        context=CONTEXT,
        envelope=Envelope(
            to=["jose@example.pe"], cc=["ogdau@mef.gob.pe"], in_reply_to="<o@x.pe>", references=["<o@x.pe>"]
        ),
        identity=IDENTITY,
        idempotency_key=key,
        now=NOW,
        consulta=consulta,
        new_key=True,
    )
    assert row is not None
    return row


def _rows(session: Session, outbox_id: int) -> dict[str, list[dict[str, Any]]]:
    """Every column of the outbox row, its mail and the events of its consulta and of none, as read back."""
    row = session.execute(select(Outbox.__table__).where(Outbox.id == outbox_id)).mappings().one()
    message = (
        session.execute(select(Message.__table__).where(Message.id == row["message_pk"])).mappings().one()
    )
    assert message["consulta_id"] == row["consulta_id"]
    event_rows = session.execute(
        select(Event.__table__)
        .where((Event.consulta_id == row["consulta_id"]) | (Event.actor == row["idempotency_key"]))
        .order_by(Event.id)
    ).mappings()
    return {
        table: [{k: v for k, v in r.items() if k not in KEYED} for r in rows]
        for table, rows in {"outbox": [row], "message": [message], "event": list(event_rows)}.items()
    }


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_rows_written_by_copy_read_back_exactly_as_the_rows_the_orm_writes(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        by_orm = _mail_and_events(session, "recibida:orm").id
    with sessions.begin() as session, copy_block(session):
        by_copy = _mail_and_events(session, "recibida:copy").id
    with sessions() as session:
        orm_rows, copy_rows = _rows(session, by_orm), _rows(session, by_copy)
    assert orm_rows["event"][0]["detail"] == {"sender": "jose@example.pe", "n": 1}
    assert orm_rows["event"][1]["detail"] == {}  # the column's default, applied by both
    assert orm_rows["outbox"][0]["payload"] == {} and orm_rows["outbox"][0]["status"] == "pending"
    assert copy_rows == orm_rows


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_inside_a_block_rows_wait_for_the_end_of_the_block_and_no_query_misses_them(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session, copy_block(session):
        row = _mail_and_events(session, "recibida:1")
        assert row not in session  # buffered, not in the unit of work
        # A query on another table leaves the buffer alone ...
        assert session.scalar(select(func.count(Consulta.id))) == 1
        with sessions() as other:  # ... (nothing is written: another transaction cannot tell)
            assert other.scalar(select(func.count(Outbox.id))) == 0
        # ... one that reads a buffered table gets it written first: ORM, Core and textual SQL.
        assert session.get(Outbox, row.id) is not None
        assert session.scalar(select(func.count(Message.id)).where(Message.id == row.message_pk)) == 1
        again = _mail_and_events(session, "recibida:2")
        assert session.execute(text("SELECT count(*) FROM event")).scalar_one() == 4
        # The idempotency look-up inside the block finds the row queued earlier in it.
        same = outbox.enqueue_mail(
            session, template="consulta_recibida", context=CONTEXT, envelope=Envelope(to=["jose@example.pe"]),
            identity=IDENTITY, idempotency_key="recibida:2", now=NOW,
        )  # fmt: skip
        assert same is not None and same.id == again.id
    with sessions() as session:
        assert session.scalar(select(func.count(Outbox.id))) == 2
        assert session.scalar(select(func.count(Event.id))) == 4


def test_a_block_that_raises_writes_nothing(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(RuntimeError), sessions.begin() as session, copy_block(session):
        _mail_and_events(session, "recibida:1")
        raise RuntimeError("a mail the batch cannot process")
    with sessions() as session:
        for model in (Consulta, Message, Outbox, Event):
            assert session.scalar(select(func.count()).select_from(model)) == 0


def test_rows_added_anywhere_are_written_by_the_commit(sessions: sessionmaker[Session]) -> None:
    # Outside a block (and on SQLite, where a block changes nothing) add_row is session.add.
    with sessions.begin() as session:
        _mail_and_events(session, "recibida:1")
        with copy_block(session):
            _mail_and_events(session, "recibida:2")
            _mail_and_events(session, "recibida:3")
    with sessions() as session:
        assert session.scalar(select(func.count(Outbox.id))) == 3
        assert session.scalar(select(func.count(Event.id))) == 6
        assert {ensure_id(session, c) for c in session.scalars(select(Consulta))} == set(
            session.scalars(select(Message.consulta_id))
        )


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_buffered_row_needs_its_id(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session, copy_block(session):
        event = new_row(Event, kind="note", at=NOW)
        with pytest.raises(ValueError, match="needs its id"):
            add_row(session, event)
        preassign_id(session, event)
        add_row(session, event)
    with sessions() as session:
        assert session.scalars(select(Event.kind)).all() == ["note"]


def test_every_table_a_block_may_buffer_has_python_defaults_only() -> None:
    # COPY writes every column: a SQL or server default would be bypassed, so none may exist.
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            assert column.server_default is None, column
            assert column.default is None or not column.default.is_clause_element, column


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_savepoint_inside_a_block_is_refused(sessions: sessionmaker[Session]) -> None:
    # Its rollback could not take back rows still in the buffer.
    with sessions.begin() as session, copy_block(session):
        with pytest.raises(RuntimeError, match="savepoint"):
            session.begin_nested()
        _mail_and_events(session, "recibida:1")
    with sessions() as session:
        assert session.scalar(select(func.count(Outbox.id))) == 1


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_copy_the_database_refuses_raises_sqlalchemys_exception(sessions: sessionmaker[Session]) -> None:
    # Sources tell a lost database (OperationalError) from a bad mail by SQLAlchemy's exceptions.
    with (
        pytest.raises(IntegrityError, match="duplicate key"),
        sessions.begin() as session,
        copy_block(session),
    ):
        _mail_and_events(session, "recibida:1")
        _mail_and_events(session, "recibida:1")  # new_key=True: the same key twice
    with sessions() as session:
        assert session.scalar(select(func.count(Outbox.id))) == 0


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_row_that_joins_the_session_is_a_persistent_row_once_written_and_its_changes_reach_the_table(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        with copy_block(session):
            consulta = new_consulta()
            preassign_id(session, consulta)
            add_row(session, consulta, joins_session=True)
            assert consulta not in session  # held back
            # A read of its table writes it, and from then on it is the session's row for that id ...
            assert session.get(Consulta, consulta.id) is consulta
            consulta.subject = "cambiado después de escrito"  # ... so this is an UPDATE
            later = new_consulta()
            preassign_id(session, later)
            add_row(session, later, joins_session=True)
            later.subject = "cambiado antes de escrito"  # still a plain object: written as it is then
        assert later in session and session.get(Consulta, later.id) is later
        later.status = ConsultaStatus.ADMITIDA  # after the block too, as after a flush
    with sessions() as session:
        subjects = {pk: subject for pk, subject in session.execute(select(Consulta.id, Consulta.subject))}
        assert subjects == {consulta.id: "cambiado después de escrito", later.id: "cambiado antes de escrito"}
        assert (
            session.scalar(select(Consulta.status).where(Consulta.id == later.id)) is ConsultaStatus.ADMITIDA
        )

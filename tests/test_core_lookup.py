"""Many-key look-ups: right answers on both databases, and on PostgreSQL one index probe per key.

The second part is what the intake's throughput at 100k mails depends on: without statistics
(a new table, autovacuum off) PostgreSQL planned the former ``message_id IN (...)`` look-up as a
walk over every stored mail of the mailbox, once per batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, insert, text
from sqlalchemy.orm import Session, sessionmaker

from consultas.lookup import count_per_recipient, sent_message_pks, stored_message_pks
from consultas.models import Channel, Direction, Message, MessageKind, Outbox, OutboxStatus
from consultas.outbox import preload_recent_automatic

MAILBOX = "consultas@mef.gob.pe"
NOW = datetime.fromisoformat("2026-03-02T10:00:00-05:00")


def message_row(
    message_id: str, *, mailbox: str = MAILBOX, direction: Direction = Direction.INBOUND
) -> dict[str, Any]:
    return {
        "direction": direction,
        "channel": Channel.EMAIL,
        "kind": MessageKind.CITIZEN,
        "mailbox": mailbox,
        "message_id": message_id,
        "received_at": NOW,
    }


def outbox_row(
    message_pk: int, recipient: str, *, automatic: bool = True, age: timedelta = timedelta(0)
) -> dict[str, Any]:
    return {
        "idempotency_key": f"key-{message_pk}",
        "message_pk": message_pk,
        "channel": Channel.EMAIL,
        "template": "confirmacion",
        "primary_recipient": recipient,
        "automatic": automatic,
        "status": OutboxStatus.SENT,
        "next_attempt_at": NOW,
        "created_at": NOW - age,
    }


def add_messages(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    return list(session.scalars(insert(Message).returning(Message.id, sort_by_parameter_order=True), rows))


def test_stored_message_pks_answers_only_for_ids_stored_in_that_mailbox_and_direction(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        inbound_a, inbound_b, ours, elsewhere = add_messages(
            session,
            [
                message_row("<a@x>"),
                message_row("<b@x>"),
                message_row("<c@x>", direction=Direction.OUTBOUND),
                message_row("<d@x>", mailbox="otro@mef.gob.pe"),
            ],
        )
    with sessions() as session:
        wanted = ["<a@x>", "<b@x>", "<c@x>", "<d@x>", "<unknown@x>", None, "", "<a@x>"]
        assert stored_message_pks(session, wanted, mailbox=MAILBOX, direction=Direction.INBOUND) == {
            "<a@x>": inbound_a,
            "<b@x>": inbound_b,
        }
        assert sent_message_pks(session, wanted, sender=MAILBOX) == {"<c@x>": ours}
        assert stored_message_pks(session, [None, ""], mailbox=MAILBOX, direction=Direction.INBOUND) == {}
        assert (
            elsewhere
            not in stored_message_pks(session, wanted, mailbox=MAILBOX, direction=Direction.INBOUND).values()
        )


def test_count_per_recipient_counts_each_recipients_rows_meeting_the_conditions(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        pks = add_messages(session, [message_row(f"<{i}@x>", direction=Direction.OUTBOUND) for i in range(5)])
        session.execute(
            insert(Outbox),
            [
                outbox_row(pks[0], "ana@example.pe"),
                outbox_row(pks[1], "ana@example.pe"),
                outbox_row(pks[2], "ana@example.pe", automatic=False),
                outbox_row(pks[3], "ana@example.pe", age=timedelta(hours=25)),
                outbox_row(pks[4], "luis@example.pe"),
            ],
        )
    with sessions() as session:
        recent_automatic = (Outbox.automatic.is_(True), Outbox.created_at >= NOW - timedelta(hours=24))
        counts = count_per_recipient(
            session, ["ana@example.pe", "luis@example.pe", "nadie@example.pe"], *recent_automatic
        )
        assert counts == {"ana@example.pe": 2, "luis@example.pe": 1, "nadie@example.pe": 0}
        assert count_per_recipient(session, ["ana@example.pe"]) == {"ana@example.pe": 4}


# --- PostgreSQL without statistics: rows read per look-up ---------------------------------------


@contextmanager
def without_statistics(engine: Engine, *tables: str) -> Iterator[None]:
    """The tables as PostgreSQL sees them before any ANALYZE: no column statistics, no row count."""
    with engine.begin() as connection:
        for table in tables:
            connection.execute(text(f"ALTER TABLE {table} SET (autovacuum_enabled = false)"))
            connection.execute(text(f"DELETE FROM pg_statistic WHERE starelid = '{table}'::regclass"))
            connection.execute(
                text(f"UPDATE pg_class SET reltuples = -1, relpages = 0 WHERE oid = '{table}'::regclass")
            )
    try:
        yield
    finally:
        with engine.begin() as connection:
            for table in tables:
                connection.execute(text(f"ALTER TABLE {table} RESET (autovacuum_enabled)"))


def rows_read(engine: Engine, table: str, look_up: Callable[[Session], object]) -> int:
    """Rows of ``table`` that PostgreSQL read (kept or filtered out) for the statements of ``look_up``."""
    statements: list[tuple[str, Any]] = []

    def capture(conn: Connection, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with Session(engine) as session:
            look_up(session)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    total = 0
    with engine.connect() as connection:
        for statement, parameters in statements:
            if not statement.lstrip().upper().startswith(("SELECT", "WITH")):
                continue
            result = connection.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
            plan = result.scalar_one()
            total += _rows_read(json.loads(plan) if isinstance(plan, str) else plan, table)
    return total


def _rows_read(node: Any, table: str) -> int:
    if isinstance(node, list):
        return sum(_rows_read(item, table) for item in node)
    if not isinstance(node, dict):
        return 0
    read = 0
    if node.get("Relation Name") == table:
        per_loop = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
        read = int(per_loop * node.get("Actual Loops", 1))
    return read + sum(_rows_read(value, table) for value in node.values() if isinstance(value, dict | list))


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_without_statistics_a_batch_of_message_ids_reads_one_row_per_id_not_the_whole_mailbox(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    stored = [f"<{i}.bench@example.pe>" for i in range(4000)]
    with sessions.begin() as session:
        add_messages(session, [message_row(message_id) for message_id in stored])
    batch = stored[-200:]

    with without_statistics(engine, "message"):
        found: dict[str, int] = {}
        read = rows_read(
            engine,
            "message",
            lambda session: found.update(
                stored_message_pks(session, batch, mailbox=MAILBOX, direction=Direction.INBOUND)
            ),
        )

    assert sorted(found) == sorted(batch)
    assert read <= len(batch), read  # was 4000: every stored mail of the mailbox, once per batch


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_without_statistics_the_reply_cap_counts_read_the_senders_rows_not_the_outbox(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    senders = [f"ciudadano{i}@example.pe" for i in range(3000)]
    with sessions.begin() as session:
        pks = add_messages(session, [message_row(f"<{s}>", direction=Direction.OUTBOUND) for s in senders])
        session.execute(insert(Outbox), [outbox_row(pk, s) for pk, s in zip(pks, senders, strict=True)])
    batch = senders[-200:]

    with without_statistics(engine, "outbox"):
        read = rows_read(engine, "outbox", lambda session: preload_recent_automatic(session, batch, now=NOW))

    assert read <= len(batch), read  # was 3000: the whole outbox, once per batch

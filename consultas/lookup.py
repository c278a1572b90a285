"""Look-ups of many keys at once that stay one index probe per key, whatever the statistics say.

``column IN (...)`` beside equalities on columns with few values (a mailbox, a direction) is
planned by PostgreSQL from the table's statistics. Without them (a new table, a database whose
autovacuum is off, a bulk load before the next ANALYZE) it guesses that the equalities alone match
a row or two, walks the index on them and filters the list: every stored mail of the mailbox is
read, and the cost of each batch grows with the table (74 ms for 200 Message-IDs at 30k mails,
measured). Here the keys are a table (``keys_table``) and each is looked up by a correlated
subquery, which is planned as one probe of the index per key (3 ms for the same 200, at any size).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, String, bindparam, column, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import NamedFromClause

from consultas.models import Direction, Message, Outbox


def keys_table(session: Session, name: str, keys: Iterable[str]) -> NamedFromClause:
    """The distinct ``keys`` as a one-column table (``.c.value``), passed as one parameter.

    PostgreSQL: ``unnest(:keys::VARCHAR[])``; SQLite: ``json_each(:keys)``. One parameter keeps
    the statement the same whatever the keys, so it is compiled once (a ``VALUES`` list of literal
    rows was compiled anew for every batch).
    """
    distinct = sorted(set(keys))
    if session.get_bind().dialect.name == "postgresql":
        array = bindparam(name, distinct, type_=postgresql.ARRAY(String))
        return func.unnest(array).table_valued(column("value", String)).render_derived(name=name)
    return (
        func.json_each(bindparam(name, json.dumps(distinct)))
        .table_valued(column("value", String))
        .alias(name)
    )


def stored_message_pks(
    session: Session, message_ids: Iterable[str | None], *, mailbox: str, direction: Direction
) -> dict[str, int]:
    """Row id of each of ``message_ids`` stored in ``mailbox`` with ``direction`` (absent, empty: left out).

    One query; one probe of the unique (mailbox, direction, message_id) index per Message-ID.
    """
    wanted = [message_id for message_id in message_ids if message_id]
    if not wanted:
        return {}
    keys = keys_table(session, "wanted_message_ids", wanted)
    pk = (
        select(Message.id)
        .where(Message.mailbox == mailbox, Message.direction == direction, Message.message_id == keys.c.value)
        .scalar_subquery()
    )
    found = session.execute(select(keys.c.value, pk))
    return {message_id: row_id for message_id, row_id in found if row_id is not None}


def count_per_recipient(
    session: Session, recipients: Iterable[str], *conditions: ColumnElement[bool]
) -> dict[str, int]:
    """How many outbox rows to each of ``recipients`` (as stored: lowercased) meet ``conditions``.

    One query; one probe of the (primary_recipient, created_at) index per recipient.
    """
    wanted = [recipient for recipient in recipients if recipient]
    if not wanted:
        return {}
    keys = keys_table(session, "wanted_recipients", wanted)
    count: Any = (
        select(func.count(Outbox.id))
        .where(Outbox.primary_recipient == keys.c.value, *conditions)
        .scalar_subquery()
    )
    return {recipient: n for recipient, n in session.execute(select(keys.c.value, count))}


def sent_message_pks(session: Session, message_ids: Iterable[str | None], *, sender: str) -> dict[str, int]:
    """Row id of each of ``message_ids`` that is a mail we sent from ``sender`` (our identity)."""
    return stored_message_pks(session, message_ids, mailbox=sender, direction=Direction.OUTBOUND)

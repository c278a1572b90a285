"""Look-ups remembered for the rest of one transaction, forgotten when it ends.

A batch source processes many mails in one transaction; a value every mail needs (the Red
members of an órgano, a recipient's automatic mails in the last 24 hours) is then read once and
kept up to date by the code that changes it in the same transaction. The cache lives in
``session.info`` and is dropped when the transaction (or a savepoint) commits or rolls back, so
what comes next reads the database again.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

_PREFIX = "consultas.txcache."


def transaction_cache(session: Session, name: str) -> dict[Any, Any]:
    """The dict called ``name`` for the session's current transaction (created empty)."""
    cache: dict[Any, Any] = session.info.setdefault(_PREFIX + name, {})
    return cache


def forget(session: Session, name: str) -> None:
    """Drop the ``name`` cache now (its source changed within the transaction)."""
    session.info.pop(_PREFIX + name, None)


@event.listens_for(Session, "after_transaction_end")
def _forget_all(session: Session, transaction: SessionTransaction) -> None:
    # The outermost transaction ended, or a savepoint did (a rolled-back savepoint may have
    # undone rows a cache counted; the savepoint path is the slow, per-mail one anyway).
    if transaction.parent is None or transaction.nested:
        for key in [k for k in session.info if isinstance(k, str) and k.startswith(_PREFIX)]:
            del session.info[key]

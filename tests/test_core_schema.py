"""The Alembic migrations give the models' schema on SQLite and on PostgreSQL."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect
from sqlalchemy.orm import Session, sessionmaker

from consultas.db import open_database, server_warnings
from consultas.models import Base, Event, new_row, set_columns


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_migrated_schema_has_every_table_and_the_uniqueness_guards(engine: Engine) -> None:
    inspector = inspect(engine)
    assert set(inspector.get_table_names()) >= {
        "consulta", "consulta_counter", "message", "attachment", "organo", "red_member",
        "registry_import", "event", "outbox", "mailbox_state", "lease", "alembic_version",
    }  # fmt: skip
    message_uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("message")}
    assert ("mailbox", "direction", "message_id") in message_uniques
    outbox_uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("outbox")}
    assert ("idempotency_key",) in outbox_uniques


def test_db_upgrade_command_creates_the_embedded_database_and_is_repeatable(tmp_path: Path) -> None:
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-m", "consultas.cli", "db", "upgrade"],
            cwd=tmp_path, capture_output=True, text=True, check=False, env={"PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "var" / "consultas.sqlite3").exists()
    current = subprocess.run(
        [sys.executable, "-m", "consultas.cli", "db", "current"],
        cwd=tmp_path, capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert current.stdout.strip() == "0007_ops"


def test_opening_the_database_warns_when_postgresql_autovacuum_is_off(
    db_url: str, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    autovacuum_off = False
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            autovacuum_off = connection.exec_driver_sql("SHOW autovacuum").scalar() == "off"

    with caplog.at_level(logging.WARNING, logger="consultas.db"):
        opened, _ = open_database(db_url)
        opened.dispose()

    warned = [r.getMessage() for r in caplog.records if "autovacuum = off" in r.getMessage()]
    assert len(warned) == (1 if autovacuum_off else 0)
    assert server_warnings(engine) == warned


def test_stored_mail_and_attachments_are_compressed_with_lz4_on_postgresql(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("TOAST compression is PostgreSQL's")
    with engine.connect() as connection:
        has_lz4 = connection.exec_driver_sql(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        ).scalar()
        methods = dict(
            connection.exec_driver_sql(
                "SELECT attrelid::regclass::text || '.' || attname, attcompression FROM pg_attribute"
                " WHERE (attrelid::regclass::text, attname) IN"
                " (('message', 'raw'), ('message', 'body_text'), ('attachment', 'content'))"
            ).all()
        )
    expected = "l" if has_lz4 else ""  # "" is the server's default (pglz)
    assert methods == {"message.raw": expected, "message.body_text": expected, "attachment.content": expected}


def test_a_row_made_by_new_row_is_written_with_its_values_and_relationships_are_refused(
    sessions: sessionmaker[Session],
) -> None:
    at = datetime(2026, 3, 2, 15, 4, 5, tzinfo=UTC)
    with sessions.begin() as session:
        event = new_row(Event, kind="received", actor="test", detail={"canal": "email"}, at=at)
        session.add(event)
        session.flush()
        event_id = event.id
    with sessions() as session:
        stored = session.get(Event, event_id)
        assert stored is not None
        assert (stored.kind, stored.actor, stored.detail, stored.at) == (
            "received",
            "test",
            {"canal": "email"},
            at,
        )
    with pytest.raises(TypeError, match="consulta"):
        new_row(Event, kind="received", at=at, consulta=None)  # a relationship, not a column
    with pytest.raises(TypeError, match="colour"):
        new_row(Event, kind="received", at=at, colour="red")


def test_set_columns_reaches_the_database_before_and_after_the_row_is_written(
    sessions: sessionmaker[Session],
) -> None:
    at = datetime(2026, 3, 2, 15, 4, 5, tzinfo=UTC)
    with sessions.begin() as session:
        event = new_row(Event, kind="received", at=at)
        set_columns(event, actor="antes", detail={"paso": 1})  # new: straight into the row
        session.add(event)
        set_columns(event, kind="admitted")  # pending: still before its INSERT
        session.flush()
        set_columns(event, actor="después")  # written: must become an UPDATE
        event_id = event.id
    with sessions() as session:
        stored = session.get(Event, event_id)
        assert stored is not None
        assert (stored.kind, stored.actor, stored.detail) == ("admitted", "después", {"paso": 1})
        with pytest.raises(TypeError, match="consulta"):
            set_columns(stored, consulta=None)  # a relationship, not a column

"""Engines, sessions and schema migrations (Alembic) for SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

logger = logging.getLogger(__name__)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; for SQLite, create the file's folder and set WAL, foreign keys, busy timeout."""
    parsed = make_url(url)
    # Statement parameters (names, documents, mail text) never go into error messages and logs.
    kwargs.setdefault("hide_parameters", True)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # SQLite's own transaction handling is off so that BEGIN IMMEDIATE takes the write lock up
        # front: two writers then queue on busy_timeout instead of failing at COMMIT.
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see make_engine)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (values are handed to other layers)."""
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Any:
    """An Alembic config pointing at our migrations and ``url``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Create or migrate the schema at ``url`` to ``revision``."""
    from alembic import command

    make_engine(url).dispose()  # creates the SQLite folder if needed
    command.upgrade(alembic_config(url), revision)


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at (None when never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def open_database(url: str, **kwargs: Any) -> tuple[Engine, sessionmaker[Session]]:
    """Engine and sessions for a command; a database never migrated is one clear error, not a traceback."""
    from consultas.errors import ConfigurationError

    engine = make_engine(url, **kwargs)
    try:
        revision = current_revision(engine)
    except Exception as exc:  # any driver error here means the database cannot be reached
        engine.dispose()
        raise ConfigurationError(f"CONSULTAS_DATABASE_URL: cannot open the database: {exc}") from exc
    if revision is None:
        engine.dispose()
        raise ConfigurationError(
            "the database has no schema yet: run `consultas db upgrade` first (CONSULTAS_DATABASE_URL)"
        )
    for warning in server_warnings(engine):
        logger.warning("%s", warning)
    return engine, make_sessionmaker(engine)


def server_warnings(engine: Engine) -> list[str]:
    """Database server settings that will hurt the service as it runs (logged when a command opens it)."""
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as connection:
        autovacuum = connection.exec_driver_sql("SHOW autovacuum").scalar()
    if autovacuum == "off":
        return [
            "PostgreSQL runs with autovacuum = off: sent outbox rows are never reclaimed and the tables "
            "get no planner statistics; turn it on (the default) or schedule VACUUM ANALYZE"
        ]
    return []

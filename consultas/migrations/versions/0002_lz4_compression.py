"""lz4 compression of stored mail and attachments (PostgreSQL)

Revision ID: 0002
Revises: 0001

PostgreSQL compresses large values (TOAST) with pglz by default; lz4 (PostgreSQL 14 and later,
when the server was built with it, as Debian's is) compresses several times faster for about the
same size. The raw mails, their text and their attachments are most of what the intake writes, so
this is measurable in the server's CPU per mail (README "Benchmarks"). Only values written from
now on use it; older ones stay readable as they are. A server without lz4, and SQLite, keep their
defaults.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (table, column) holding mail-sized values.
COLUMNS = (("message", "raw"), ("message", "body_text"), ("attachment", "content"))


def _server_has_lz4() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    return bool(
        bind.exec_driver_sql(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        ).scalar()
    )


def _set_compression(method: str) -> None:
    if not _server_has_lz4():
        return
    for table, column in COLUMNS:
        op.execute(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" SET COMPRESSION {method}')


def upgrade() -> None:
    _set_compression("lz4")


def downgrade() -> None:
    _set_compression("pglz")

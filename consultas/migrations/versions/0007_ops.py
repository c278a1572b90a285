"""Operations and data protection: decreed days, watchdog probes and incidents, privacy runs, Red absences

Revision ID: 0007_ops
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0007_ops"
down_revision: str | None = "0006_classify"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("red_member") as batch:
        batch.add_column(sa.Column("away_since", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("away_until", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "decreed_day",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("decree", sa.String(300), nullable=False),
        sa.Column("added_by", sa.String(200), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_decreed_day")),
    )
    op.create_table(
        "ops_probe",
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failures", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_ops_probe")),
    )
    op.create_table(
        "ops_incident",
        sa.Column("id", BigId, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ops_incident")),
    )
    op.create_index("ix_ops_incident_kind_closed_at", "ops_incident", ["kind", "closed_at"])
    op.create_table(
        "privacy_run",
        sa.Column("id", BigId, nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("consultas", sa.Integer(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_privacy_run")),
    )


def downgrade() -> None:
    op.drop_table("privacy_run")
    op.drop_index("ix_ops_incident_kind_closed_at", table_name="ops_incident")
    op.drop_table("ops_incident")
    op.drop_table("ops_probe")
    op.drop_table("decreed_day")
    with op.batch_alter_table("red_member") as batch:
        batch.drop_column("away_until")
        batch.drop_column("away_since")

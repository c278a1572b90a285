"""classifier: labelled corrections and trained models

Revision ID: 0006_classify
Revises: 0002

``classifier_example`` keeps each person's correction of a routing (console triage and re-route,
``#derivar``, ``#administrativa``) with the consulta's text; ``classifier_model`` keeps the models
``consultas classify --retrain`` (and the nightly job) trained, the newest in force.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_classify"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "classifier_example",
        sa.Column("id", _ID, nullable=False),
        sa.Column("consulta_id", _ID, nullable=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("organo_code", sa.String(length=32), nullable=True),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=320), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["consulta_id"], ["consulta.id"], name=op.f("fk_classifier_example_consulta_id_consulta")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_classifier_example")),
        sa.UniqueConstraint("consulta_id", name=op.f("uq_classifier_example_consulta_id")),
    )
    op.create_table(
        "classifier_model",
        sa.Column("id", _ID, nullable=False),
        sa.Column("trained_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("examples", sa.Integer(), nullable=False),
        sa.Column("corrections", sa.Integer(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_classifier_model")),
    )


def downgrade() -> None:
    op.drop_table("classifier_model")
    op.drop_table("classifier_example")

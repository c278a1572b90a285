"""initial schema

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "consulta",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=True),
        sa.Column(
            "channel",
            sa.Enum(
                "email",
                "telegram",
                "presencial",
                "telefonico",
                "videoconferencia",
                name="channel",
                native_enum=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "subsanacion",
                "admitida",
                "asignada",
                "respondida",
                "archivada",
                name="consultastatus",
                native_enum=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column(
            "tipo",
            sa.Enum("administrativa", "tecnica", name="consultatipo", native_enum=False, length=24),
            nullable=True,
        ),
        sa.Column("organo_code", sa.String(length=32), nullable=True),
        sa.Column("classification_reason", sa.Text(), nullable=True),
        sa.Column("full_name", sa.String(length=200), nullable=True),
        sa.Column("document_type", sa.String(length=12), nullable=True),
        sa.Column("document_number", sa.String(length=20), nullable=True),
        sa.Column("represents_entity", sa.Boolean(), nullable=False),
        sa.Column("entity_name", sa.String(length=300), nullable=True),
        sa.Column("entity_ruc", sa.String(length=11), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("question", sa.Text(), nullable=True),
        sa.Column("missing", sa.JSON(), nullable=False),
        sa.Column("invalid", sa.JSON(), nullable=False),
        sa.Column("subject", sa.String(length=998), nullable=True),
        sa.Column("reply_address", sa.String(length=320), nullable=True),
        sa.Column("telegram_chat_id", sa.BigInteger(), nullable=True),
        sa.Column("origin_message_id", sa.String(length=998), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("admitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("presented_on", sa.Date(), nullable=True),
        sa.Column("due_on", sa.Date(), nullable=True),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_on", sa.Date(), nullable=True),
        sa.Column("answered_by", sa.String(length=32), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consulta")),
        sa.UniqueConstraint("number", name=op.f("uq_consulta_number")),
    )
    with op.batch_alter_table("consulta", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consulta_organo_code"), ["organo_code"], unique=False)
        batch_op.create_index("ix_consulta_presented_on", ["presented_on"], unique=False)
        batch_op.create_index("ix_consulta_reply_address_status", ["reply_address", "status"], unique=False)
        batch_op.create_index("ix_consulta_status_due_on", ["status", "due_on"], unique=False)
        batch_op.create_index(batch_op.f("ix_consulta_telegram_chat_id"), ["telegram_chat_id"], unique=False)

    op.create_table(
        "consulta_counter",
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("prefix", "year", name=op.f("pk_consulta_counter")),
    )
    op.create_table(
        "lease",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_lease")),
    )
    op.create_table(
        "mailbox_state",
        sa.Column("mailbox", sa.String(length=400), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("mailbox", name=op.f("pk_mailbox_state")),
    )
    op.create_table(
        "organo",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("topics", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_organo")),
    )
    op.create_table(
        "registry_import",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content", sa.Text(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_import")),
    )
    op.create_table(
        "message",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("consulta_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "direction",
            sa.Enum("inbound", "outbound", name="direction", native_enum=False, length=24),
            nullable=False,
        ),
        sa.Column(
            "channel",
            sa.Enum(
                "email",
                "telegram",
                "presencial",
                "telefonico",
                "videoconferencia",
                name="channel",
                native_enum=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column(
            "kind",
            sa.Enum(
                "citizen",
                "red_reply",
                "rejected_reply",
                "auto_reply",
                "bounce",
                "bulk",
                "own",
                "quarantined",
                "outgoing",
                name="messagekind",
                native_enum=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("mailbox", sa.String(length=320), nullable=False),
        sa.Column("message_id", sa.String(length=998), nullable=False),
        sa.Column("in_reply_to", sa.String(length=998), nullable=True),
        sa.Column("references", sa.JSON(), nullable=False),
        sa.Column("sender", sa.String(length=320), nullable=True),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("subject", sa.String(length=998), nullable=True),
        sa.Column("body_text", sa.Text(), nullable=True),
        sa.Column("raw", sa.LargeBinary(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("imap_uidvalidity", sa.BigInteger(), nullable=True),
        sa.Column("imap_uid", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["consulta_id"], ["consulta.id"], name=op.f("fk_message_consulta_id_consulta")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message")),
        sa.UniqueConstraint("mailbox", "direction", "message_id", name="uq_message_mailbox_direction_msgid"),
    )
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_message_consulta_id"), ["consulta_id"], unique=False)
        batch_op.create_index("ix_message_message_id", ["message_id"], unique=False)

    op.create_table(
        "red_member",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("organo_code", sa.String(length=32), nullable=False),
        sa.Column(
            "role",
            sa.Enum("titular", "alterno", name="redrole", native_enum=False, length=24),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("cargo", sa.String(length=200), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("phone", sa.String(length=40), nullable=True),
        sa.Column("absent", sa.Boolean(), nullable=False),
        sa.Column("bounced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["organo_code"], ["organo.code"], name=op.f("fk_red_member_organo_code_organo")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_red_member")),
    )
    with op.batch_alter_table("red_member", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_red_member_email"), ["email"], unique=False)
        batch_op.create_index(batch_op.f("ix_red_member_organo_code"), ["organo_code"], unique=False)

    op.create_table(
        "attachment",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("message_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["message_pk"], ["message.id"], name=op.f("fk_attachment_message_pk_message")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attachment")),
    )
    with op.batch_alter_table("attachment", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_attachment_message_pk"), ["message_pk"], unique=False)

    op.create_table(
        "event",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("consulta_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("message_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=320), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["consulta_id"], ["consulta.id"], name=op.f("fk_event_consulta_id_consulta")),
        sa.ForeignKeyConstraint(["message_pk"], ["message.id"], name=op.f("fk_event_message_pk_message")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event")),
    )
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.create_index("ix_event_consulta_id_at", ["consulta_id", "at"], unique=False)
        batch_op.create_index("ix_event_kind_at", ["kind", "at"], unique=False)

    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("consulta_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("message_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "channel",
            sa.Enum(
                "email",
                "telegram",
                "presencial",
                "telefonico",
                "videoconferencia",
                name="channel",
                native_enum=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("envelope_to", sa.JSON(), nullable=False),
        sa.Column("primary_recipient", sa.String(length=320), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("automatic", sa.Boolean(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending", "sending", "sent", "failed", name="outboxstatus", native_enum=False, length=24
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(length=120), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["consulta_id"], ["consulta.id"], name=op.f("fk_outbox_consulta_id_consulta")
        ),
        sa.ForeignKeyConstraint(["message_pk"], ["message.id"], name=op.f("fk_outbox_message_pk_message")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_outbox_idempotency_key")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_consulta_id"), ["consulta_id"], unique=False)
        batch_op.create_index(
            "ix_outbox_primary_recipient_created_at", ["primary_recipient", "created_at"], unique=False
        )
        batch_op.create_index("ix_outbox_status_next_attempt_at", ["status", "next_attempt_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_status_next_attempt_at")
        batch_op.drop_index("ix_outbox_primary_recipient_created_at")
        batch_op.drop_index(batch_op.f("ix_outbox_consulta_id"))

    op.drop_table("outbox")
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_index("ix_event_kind_at")
        batch_op.drop_index("ix_event_consulta_id_at")

    op.drop_table("event")
    with op.batch_alter_table("attachment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_attachment_message_pk"))

    op.drop_table("attachment")
    with op.batch_alter_table("red_member", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_red_member_organo_code"))
        batch_op.drop_index(batch_op.f("ix_red_member_email"))

    op.drop_table("red_member")
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_index("ix_message_message_id")
        batch_op.drop_index(batch_op.f("ix_message_consulta_id"))

    op.drop_table("message")
    op.drop_table("registry_import")
    op.drop_table("organo")
    op.drop_table("mailbox_state")
    op.drop_table("lease")
    op.drop_table("consulta_counter")
    with op.batch_alter_table("consulta", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consulta_telegram_chat_id"))
        batch_op.drop_index("ix_consulta_status_due_on")
        batch_op.drop_index("ix_consulta_reply_address_status")
        batch_op.drop_index("ix_consulta_presented_on")
        batch_op.drop_index(batch_op.f("ix_consulta_organo_code"))

    op.drop_table("consulta")

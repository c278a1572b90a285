"""The data model: consultas, mails, attachments, the Red, the audit trail and the outbox.

Datetimes are aware UTC (``UTCDateTime``); Lima calendar dates are plain ``date`` columns
(``presented_on``, ``due_on``). Naming: ``Message.message_id`` is the RFC 5322 Message-ID header;
foreign keys to the message table are ``message_pk``.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column, relationship
from sqlalchemy.orm.attributes import instance_state

#: Constraint names that are the same on SQLite and PostgreSQL (Alembic needs them stable).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Integer primary keys: BIGINT on PostgreSQL, INTEGER (rowid alias) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend (SQLite stores no zone, so we re-attach UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _enum(enum_cls: type[StrEnum]) -> SAEnum:
    """Store a StrEnum as its value in a VARCHAR (no native enum type, no CHECK to migrate)."""
    return SAEnum(
        enum_cls,
        native_enum=False,
        create_constraint=False,
        length=24,
        values_callable=lambda members: [member.value for member in members],
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
    }


RowT = TypeVar("RowT", bound=Base)


def new_row(model: type[RowT], /, **columns: Any) -> RowT:
    """``model(**columns)`` for a new row, its column values put in place without attribute events.

    The ORM's events on each attribute set (~2 us each) record changes to rows already loaded; a
    new row is written whole by its INSERT, which reads the same values either way. The intake
    sets ~140 attributes per mail on new rows. Only columns: relationships (and anything set on
    the row later) go through the ORM as usual.
    """
    _check_columns(model, columns)
    row = model()
    row.__dict__.update(columns)
    return row


def set_columns(row: Base, /, **columns: Any) -> None:
    """Set column values of ``row``; of a row not written yet, without attribute events (as ``new_row``).

    A row that is written already (it has an identity) changes through the ORM as usual, so that
    its UPDATE sees the change. Only columns: relationships are refused with ``TypeError``.
    """
    _check_columns(type(row), columns)
    if instance_state(row).key is None:  # new or pending: its INSERT reads the values as they are
        row.__dict__.update(columns)
        return
    for key, value in columns.items():
        setattr(row, key, value)


def _check_columns(model: type[Base], columns: dict[str, Any]) -> None:
    """Refuse keys that are not columns of ``model`` (relationships included) with ``TypeError``."""
    unknown = columns.keys() - _column_keys(model)
    if unknown:
        raise TypeError(f"{model.__name__} has no column {sorted(unknown)}")


@functools.cache
def _column_keys(model: type[Base]) -> frozenset[str]:
    return frozenset(model.__mapper__.column_attrs.keys())


class Channel(StrEnum):
    """Where a consulta came in (directive 5.1)."""

    EMAIL = "email"
    TELEGRAM = "telegram"
    FORMULARIO = "formulario"  # the web form (Anexo N° 1) and its public API
    PRESENCIAL = "presencial"
    TELEFONICO = "telefonico"
    VIDEOCONFERENCIA = "videoconferencia"


class ConsultaTipo(StrEnum):
    """Directive 5.2: who answers it."""

    ADMINISTRATIVA = "administrativa"
    TECNICA = "tecnica"


class ConsultaStatus(StrEnum):
    """The lifecycle; transitions are documented in README ("Statuses")."""

    SUBSANACION = "subsanacion"  # requisitos missing or invalid; no number yet
    ADMITIDA = "admitida"  # numbered; not yet routed
    ASIGNADA = "asignada"  # routed to an organo's Red (or OGDAU); waiting for the answer
    RESPONDIDA = "respondida"  # the answer was sent to the citizen; closed
    ARCHIVADA = "archivada"  # never completed by the citizen; closed without number


OPEN_STATUSES = (ConsultaStatus.ADMITIDA, ConsultaStatus.ASIGNADA)


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class MessageKind(StrEnum):
    """What an inbound or outbound message is, once looked at."""

    CITIZEN = "citizen"  # a citizen's mail (new consulta, subsanación, follow-up)
    RED_REPLY = "red_reply"  # an accepted answer or command from the Red / OGDAU
    REJECTED_REPLY = "rejected_reply"  # claims to answer a consulta but failed authentication
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"
    BULK = "bulk"
    OWN = "own"  # our own mail looping back
    QUARANTINED = "quarantined"
    OUTGOING = "outgoing"  # a mail (or Telegram message) we send


class RedRole(StrEnum):
    TITULAR = "titular"
    ALTERNO = "alterno"


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class Consulta(Base):
    """A citizen's consulta from reception to answer (directive 4.1.5, 5.1-5.6)."""

    __tablename__ = "consulta"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    number: Mapped[str | None] = mapped_column(String(32), unique=True)
    channel: Mapped[Channel] = mapped_column(_enum(Channel))
    status: Mapped[ConsultaStatus] = mapped_column(_enum(ConsultaStatus))
    tipo: Mapped[ConsultaTipo | None] = mapped_column(_enum(ConsultaTipo))
    organo_code: Mapped[str | None] = mapped_column(String(32), index=True)
    classification_reason: Mapped[str | None] = mapped_column(Text)

    # Requisitos (5.3)
    full_name: Mapped[str | None] = mapped_column(String(200))
    document_type: Mapped[str | None] = mapped_column(String(12))
    document_number: Mapped[str | None] = mapped_column(String(20))
    represents_entity: Mapped[bool] = mapped_column(Boolean, default=False)
    entity_name: Mapped[str | None] = mapped_column(String(300))
    entity_ruc: Mapped[str | None] = mapped_column(String(11))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(20))
    question: Mapped[str | None] = mapped_column(Text)
    missing: Mapped[list[str]] = mapped_column(JSON, default=list)
    invalid: Mapped[list[str]] = mapped_column(JSON, default=list)

    subject: Mapped[str | None] = mapped_column(String(998))
    reply_address: Mapped[str | None] = mapped_column(String(320))  # where the citizen is answered
    telegram_chat_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    origin_message_id: Mapped[str | None] = mapped_column(String(998))  # first inbound Message-ID

    received_at: Mapped[datetime]
    admitted_at: Mapped[datetime | None]
    presented_on: Mapped[date | None] = mapped_column(Date)
    due_on: Mapped[date | None] = mapped_column(Date)
    assigned_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    answered_on: Mapped[date | None] = mapped_column(Date)
    answered_by: Mapped[str | None] = mapped_column(String(32))  # organo code or "OGDAU"
    closed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    messages: Mapped[list[Message]] = relationship(back_populates="consulta", order_by="Message.id")
    events: Mapped[list[Event]] = relationship(back_populates="consulta", order_by="Event.id")

    __table_args__ = (
        Index("ix_consulta_status_due_on", "status", "due_on"),
        Index("ix_consulta_presented_on", "presented_on"),
        Index("ix_consulta_reply_address_status", "reply_address", "status"),
    )


class ConsultaCounter(Base):
    """The last consulta number handed out per prefix and year (row-locked on increment)."""

    __tablename__ = "consulta_counter"

    prefix: Mapped[str] = mapped_column(String(16), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_seq: Mapped[int] = mapped_column(Integer)


class Message(Base):
    """One mail or chat message, inbound or outbound, with its raw source."""

    __tablename__ = "message"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    consulta_id: Mapped[int | None] = mapped_column(ForeignKey("consulta.id"), index=True)
    direction: Mapped[Direction] = mapped_column(_enum(Direction))
    channel: Mapped[Channel] = mapped_column(_enum(Channel))
    kind: Mapped[MessageKind] = mapped_column(_enum(MessageKind))
    mailbox: Mapped[str] = mapped_column(String(320))
    message_id: Mapped[str] = mapped_column(String(998))
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    references: Mapped[list[str]] = mapped_column(JSON, default=list)
    sender: Mapped[str | None] = mapped_column(String(320))
    recipients: Mapped[list[str]] = mapped_column(JSON, default=list)
    subject: Mapped[str | None] = mapped_column(String(998))
    body_text: Mapped[str | None] = deferred(mapped_column(Text))
    raw: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))
    sha256: Mapped[str | None] = mapped_column(String(64))
    imap_uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    imap_uid: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime]

    consulta: Mapped[Consulta | None] = relationship(back_populates="messages")
    attachments: Mapped[list[Attachment]] = relationship(back_populates="message", order_by="Attachment.id")

    __table_args__ = (
        UniqueConstraint("mailbox", "direction", "message_id", name="uq_message_mailbox_direction_msgid"),
        Index("ix_message_message_id", "message_id"),
    )


class Attachment(Base):
    """A file that came with (or goes with) a message; content is None when over the size cap."""

    __tablename__ = "attachment"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_pk: Mapped[int] = mapped_column(ForeignKey("message.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    content: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))

    message: Mapped[Message] = relationship(back_populates="attachments")


class Organo(Base):
    """An organo of the MEF with the topics it answers (from the Red registry file)."""

    __tablename__ = "organo"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    topics: Mapped[list[str]] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime]


class RedMember(Base):
    """A titular or alterno of an organo's Red (4.2); rows with ``valid_to`` set are history (4.2.2)."""

    __tablename__ = "red_member"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    organo_code: Mapped[str] = mapped_column(ForeignKey("organo.code"), index=True)
    role: Mapped[RedRole] = mapped_column(_enum(RedRole))
    name: Mapped[str] = mapped_column(String(200))
    cargo: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), index=True)
    phone: Mapped[str | None] = mapped_column(String(40))
    absent: Mapped[bool] = mapped_column(Boolean, default=False)
    bounced_at: Mapped[datetime | None]
    # Set by an out-of-office reply (routing.absence): away until they answer again or this passes.
    away_since: Mapped[datetime | None]
    away_until: Mapped[datetime | None]
    valid_from: Mapped[datetime]
    valid_to: Mapped[datetime | None]


class RegistryImport(Base):
    """One load of the Red registry file: when, from what, and the text itself."""

    __tablename__ = "registry_import"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    imported_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[str] = deferred(mapped_column(Text))
    summary: Mapped[str | None] = mapped_column(Text)


class Event(Base):
    """The audit trail of each consulta and of the mailbox (4.1.5)."""

    __tablename__ = "event"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    consulta_id: Mapped[int | None] = mapped_column(ForeignKey("consulta.id"))
    message_pk: Mapped[int | None] = mapped_column(ForeignKey("message.id"))
    kind: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str | None] = mapped_column(String(320))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    at: Mapped[datetime]

    consulta: Mapped[Consulta | None] = relationship(back_populates="events")
    message: Mapped[Message | None] = relationship()

    __table_args__ = (
        Index("ix_event_consulta_id_at", "consulta_id", "at"),
        Index("ix_event_kind_at", "kind", "at"),
    )


class Outbox(Base):
    """Delivery of one outgoing message (mail or Telegram); the content is its ``Message`` row."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    consulta_id: Mapped[int | None] = mapped_column(ForeignKey("consulta.id"), index=True)
    message_pk: Mapped[int] = mapped_column(ForeignKey("message.id"))
    channel: Mapped[Channel] = mapped_column(_enum(Channel))
    template: Mapped[str] = mapped_column(String(64))
    envelope_to: Mapped[list[str]] = mapped_column(JSON, default=list)
    primary_recipient: Mapped[str | None] = mapped_column(String(320))  # lowercased, for the reply cap
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # Telegram: chat_id, text
    automatic: Mapped[bool] = mapped_column(Boolean, default=True)  # counts towards the per-sender cap
    status: Mapped[OutboxStatus] = mapped_column(_enum(OutboxStatus))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    claimed_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(120))
    sent_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]

    message: Mapped[Message] = relationship()
    consulta: Mapped[Consulta | None] = relationship()

    __table_args__ = (
        Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_outbox_primary_recipient_created_at", "primary_recipient", "created_at"),
    )


class MailboxState(Base):
    """What the poller knows of one IMAP folder: its UIDVALIDITY and the highest UID handled."""

    __tablename__ = "mailbox_state"

    mailbox: Mapped[str] = mapped_column(String(400), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime]


class Lease(Base):
    """A named lease (e.g. one poller per mailbox): held by ``holder`` until ``expires_at``."""

    __tablename__ = "lease"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime]


class ClassifierExample(Base):
    """A labelled consulta the classifier learns from: a person's correction of a routing.

    ``organo_code`` None means administrativa (OGDAU). One row per consulta: a later correction of
    the same consulta replaces the label (the last person to route it knew most).
    """

    __tablename__ = "classifier_example"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    consulta_id: Mapped[int | None] = mapped_column(ForeignKey("consulta.id"), unique=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    organo_code: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ClassifierModel(Base):
    """A trained classifier (``routing.learning.Model.to_bytes``); the newest row is in force."""

    __tablename__ = "classifier_model"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    trained_at: Mapped[datetime]
    examples: Mapped[int] = mapped_column(Integer)
    corrections: Mapped[int] = mapped_column(Integer)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    content: Mapped[bytes] = deferred(mapped_column(LargeBinary, nullable=False))


class DecreedDay(Base):
    """A non-working day the government decreed for the public sector, with its decree (5.1)."""

    __tablename__ = "decreed_day"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    decree: Mapped[str] = mapped_column(String(300))
    added_by: Mapped[str] = mapped_column(String(200))
    added_at: Mapped[datetime]


class OpsProbe(Base):
    """The last outcome of one watched component (``imap_poll``, ``imap_login``, ``smtp``)."""

    __tablename__ = "ops_probe"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_success_at: Mapped[datetime | None]
    last_failure_at: Mapped[datetime | None]
    failing_since: Mapped[datetime | None]  # first failure after the last success
    failures: Mapped[int] = mapped_column(BigInteger, default=0)  # ever (a Prometheus counter)
    last_error: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class OpsIncident(Base):
    """One watchdog incident: opened (one alert), closed on recovery (one more)."""

    __tablename__ = "ops_incident"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    opened_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (Index("ix_ops_incident_kind_closed_at", "kind", "closed_at"),)


class PrivacyRun(Base):
    """One run of retention, a citizen's export or erasure (Ley N° 29733): who, when, how many."""

    __tablename__ = "privacy_run"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    action: Mapped[str] = mapped_column(String(20))  # retention, export, erase
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime]
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    consultas: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

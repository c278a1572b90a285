"""Helpers for the core tests: a fixed instant, the mail identity and context, a bare consulta row."""

from __future__ import annotations

from datetime import UTC, datetime

from consultas import outbox
from consultas.models import Channel, Consulta, ConsultaStatus

NOW = datetime(2024, 11, 28, 15, 0, tzinfo=UTC)
IDENTITY = outbox.MailIdentity(address="consultas@mef.gob.pe", name="Consultas MEF")
CONTEXT = {
    "consulta": {
        "number": "CONS-2024-000001", "full_name": "José Pérez Quispe", "document_type": "DNI",
        "document_number": "12345678", "entity_name": "Municipalidad Distrital de Comas",
        "entity_ruc": "20131380951", "email": "jose@example.pe", "phone": "+51987654321",
        "question": "¿Cómo registro una inversión?", "presented_on": "2024-11-28",
        "due_on": "2024-12-13", "due_working_days": 10,
    }
}  # fmt: skip


def new_consulta() -> Consulta:
    return Consulta(
        channel=Channel.EMAIL,
        status=ConsultaStatus.SUBSANACION,
        received_at=NOW,
        created_at=NOW,
        updated_at=NOW,
        missing=[],
        invalid=[],
    )

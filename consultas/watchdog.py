"""The watchdog's state and rules: probes, incidents, and the one alert per incident (and recovery).

A silently stopped mailbox is the most reported failure of a mail intake (an expired password, a
full quota, a hung poller). The poller records each poll (``imap_poll``); the watchdog's own probes
record a fresh IMAP login (``imap_login``, with the oldest mail waiting in the intake folder) and an
SMTP session (``smtp``). ``evaluate`` (pure) turns those into the incidents that should be open;
``apply_incidents`` opens and closes ``OpsIncident`` rows and queues one ``aviso_ogdau`` to OGDAU
and ``CONSULTAS_OPS_EMAIL`` when an incident opens and one when it closes, never one per poll.
The network side (probing, the loop) is ``intake.watchdog``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from consultas.mailer import Envelope
from consultas.models import OpsIncident, OpsProbe
from consultas.outbox import MailIdentity, enqueue_mail

logger = logging.getLogger(__name__)

#: Probe names.
IMAP_POLL = "imap_poll"
IMAP_LOGIN = "imap_login"
SMTP = "smtp"
#: How long a condition lasts before it is an incident (issue 22).
MAILBOX_UNREADABLE_AFTER = timedelta(minutes=10)
NO_POLL_AFTER = timedelta(minutes=10)
MAIL_WAITING_AFTER = timedelta(minutes=15)
SMTP_REFUSING_AFTER = timedelta(minutes=15)
ALERT_TEMPLATE = "aviso_ogdau"
ERROR_CHARS = 500


class IncidentKind(StrEnum):
    MAILBOX_UNREADABLE = "mailbox_unreadable"
    NO_POLL = "no_poll"
    MAIL_WAITING = "mail_waiting"
    SMTP_REFUSING = "smtp_refusing"


#: What OGDAU reads (Spanish), per incident: opened, recovered.
TITLES = {
    IncidentKind.MAILBOX_UNREADABLE: (
        "La casilla de consultas no se puede leer",
        "La casilla de consultas se puede leer otra vez",
    ),
    IncidentKind.NO_POLL: (
        "La lectura de la casilla de consultas está detenida",
        "La lectura de la casilla de consultas se reanudó",
    ),
    IncidentKind.MAIL_WAITING: (
        "Hay correos sin procesar en la casilla de consultas",
        "Los correos de la casilla de consultas se procesan otra vez",
    ),
    IncidentKind.SMTP_REFUSING: (
        "El servidor de correo saliente rechaza los envíos",
        "El servidor de correo saliente acepta los envíos otra vez",
    ),
}


@dataclass(frozen=True)
class ProbeView:
    """A probe's row as values (what ``evaluate`` reads)."""

    last_success_at: datetime | None
    last_failure_at: datetime | None
    failing_since: datetime | None
    last_error: str | None
    detail: Mapping[str, Any]

    @property
    def failing(self) -> bool:
        return self.failing_since is not None


def _view(row: OpsProbe) -> ProbeView:
    return ProbeView(
        row.last_success_at, row.last_failure_at, row.failing_since, row.last_error, row.detail or {}
    )


def evaluate(
    probes: Mapping[str, ProbeView], *, now: datetime, watching_since: datetime, imap: bool, smtp: bool
) -> dict[IncidentKind, str]:
    """The incidents that should be open now, each with its Spanish detail line (pure).

    ``watching_since`` stands for "the last success" of a probe that never succeeded, so a
    mailbox that never worked is an incident ten minutes after the service started.
    """
    found: dict[IncidentKind, str] = {}
    if imap:
        login = probes.get(IMAP_LOGIN)
        failing_since = login.failing_since if login is not None else None
        if failing_since is not None and now - failing_since >= MAILBOX_UNREADABLE_AFTER:
            found[IncidentKind.MAILBOX_UNREADABLE] = (
                f"No se puede iniciar sesión en la casilla desde {failing_since.isoformat()}: "
                f"{(login.last_error if login else '') or ''}"[: ERROR_CHARS + 80]
            )
        poll = probes.get(IMAP_POLL)
        last_poll = poll.last_success_at if poll is not None and poll.last_success_at else None
        if (
            IncidentKind.MAILBOX_UNREADABLE not in found
            and now - (last_poll or watching_since) >= NO_POLL_AFTER
        ):
            since = last_poll.isoformat() if last_poll else "el inicio del servicio"
            error = (
                f" Último error: {poll.last_error[:ERROR_CHARS]}"
                if poll and poll.failing and poll.last_error
                else ""
            )
            found[IncidentKind.NO_POLL] = f"Ninguna lectura de la casilla tuvo éxito desde {since}.{error}"
        waiting_since = _parse(login.detail.get("oldest_seen_at")) if login is not None else None
        if waiting_since is not None and now - waiting_since >= MAIL_WAITING_AFTER:
            count = login.detail.get("waiting", 0) if login is not None else 0
            found[IncidentKind.MAIL_WAITING] = (
                f"{count} correo(s) esperan en la carpeta de entrada; el más antiguo está allí desde "
                f"{waiting_since.isoformat()} sin ser procesado."
            )
    if smtp:
        out = probes.get(SMTP)
        if (
            out is not None
            and out.failing_since is not None
            and now - out.failing_since >= SMTP_REFUSING_AFTER
        ):
            found[IncidentKind.SMTP_REFUSING] = (
                f"El servidor SMTP rechaza la conexión desde {out.failing_since.isoformat()}: "
                f"{(out.last_error or '')[:ERROR_CHARS]}. Los avisos se enviarán cuando se recupere."
            )
    return found


def _parse(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


# Database side ------------------------------------------------------------------------------------


def record_probe(
    session: Session,
    name: str,
    *,
    now: datetime,
    ok: bool,
    error: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> OpsProbe:
    """Record one outcome of probe ``name``; caller owns the transaction."""
    row = session.get(OpsProbe, name)
    if row is None:
        row = OpsProbe(name=name, failures=0, detail={})
        session.add(row)
    if ok:
        row.last_success_at = now
        row.failing_since = None
    else:
        row.last_failure_at = now
        row.failing_since = row.failing_since or now
        row.failures = (row.failures or 0) + 1
        row.last_error = (error or "")[:ERROR_CHARS]
    if detail is not None:
        row.detail = dict(detail)
    session.flush()
    return row


def record_probe_safely(
    sessions: sessionmaker[Session], name: str, *, now: datetime, ok: bool, error: str | None = None
) -> None:
    """``record_probe`` in its own transaction; a database outage is logged, never raised (edges call it)."""
    try:
        with sessions.begin() as session:
            record_probe(session, name, now=now, ok=ok, error=error)
    except sa_exc.SQLAlchemyError as exc:
        logger.warning("could not record the %s probe: %s", name, type(exc).__name__)


def probe_views(session: Session) -> dict[str, ProbeView]:
    return {row.name: _view(row) for row in session.scalars(select(OpsProbe))}


def open_incidents(session: Session) -> list[OpsIncident]:
    return list(
        session.scalars(select(OpsIncident).where(OpsIncident.closed_at.is_(None)).order_by(OpsIncident.id))
    )


@dataclass(frozen=True)
class IncidentChange:
    kind: IncidentKind
    opened: bool  # False: recovered


def apply_incidents(
    session: Session,
    wanted: Mapping[IncidentKind, str],
    *,
    now: datetime,
    identity: MailIdentity,
    recipients: Sequence[str],
) -> list[IncidentChange]:
    """Open the wanted incidents not open yet and close the open ones no longer wanted, alerting once each."""
    changes = []
    current = {IncidentKind(row.kind): row for row in open_incidents(session)}
    for kind, detail in wanted.items():
        if kind in current:
            continue
        incident = OpsIncident(kind=kind.value, opened_at=now, detail={"detalle": detail})
        session.add(incident)
        session.flush()
        _alert(session, incident, TITLES[kind][0], detail, now=now, identity=identity, recipients=recipients)
        logger.warning("watchdog: incident %s opened (%s)", kind.value, incident.id)
        changes.append(IncidentChange(kind, True))
    for kind, incident in current.items():
        if kind in wanted:
            continue
        incident.closed_at = now
        minutes = int((now - incident.opened_at).total_seconds() // 60)
        detail = (
            f"Se recuperó tras {minutes} minuto(s). Incidente abierto el {incident.opened_at.isoformat()}."
        )
        _alert(session, incident, TITLES[kind][1], detail, now=now, identity=identity, recipients=recipients)
        logger.warning("watchdog: incident %s closed (%s)", kind.value, incident.id)
        changes.append(IncidentChange(kind, False))
    session.flush()
    return changes


def _alert(
    session: Session,
    incident: OpsIncident,
    titulo: str,
    detalle: str,
    *,
    now: datetime,
    identity: MailIdentity,
    recipients: Sequence[str],
) -> None:
    state = "cerrado" if incident.closed_at is not None else "abierto"
    enqueue_mail(
        session,
        template=ALERT_TEMPLATE,
        context={
            "titulo": titulo,
            "numero": None,
            "detalle": detalle,
            "remitente": None,
            "asunto": None,
            "mensaje": None,
        },
        envelope=Envelope(to=list(recipients)),
        identity=identity,
        idempotency_key=f"watchdog:{incident.id}:{state}",
        now=now,
        automatic=False,
    )


def incident_json(incident: OpsIncident) -> dict[str, Any]:
    return {
        "kind": incident.kind,
        "opened_at": incident.opened_at.isoformat(),
        "closed_at": incident.closed_at.isoformat() if incident.closed_at else None,
        "detail": (incident.detail or {}).get("detalle", ""),
    }


def watchdog_state(session: Session, *, now: datetime) -> dict[str, Any]:
    """The probes and the open incidents as JSON (``/readyz``, ``consultas watchdog``, the digest)."""
    probes = {}
    for name, view in sorted(probe_views(session).items()):
        probes[name] = {
            "ok": not view.failing,
            "last_success_at": view.last_success_at.isoformat() if view.last_success_at else None,
            "last_failure_at": view.last_failure_at.isoformat() if view.last_failure_at else None,
            "failing_since": view.failing_since.isoformat() if view.failing_since else None,
            "last_error": view.last_error if view.failing else None,
        }
    return {
        "checked_at": now.isoformat(),
        "probes": probes,
        "incidents": [incident_json(i) for i in open_incidents(session)],
    }


def digest_incidents(session: Session, *, since: datetime) -> list[dict[str, Any]]:
    """Incidents open now or closed since ``since``, for OGDAU's daily digest (Spanish titles)."""
    rows = session.scalars(
        select(OpsIncident)
        .where(OpsIncident.closed_at.is_(None) | (OpsIncident.closed_at >= since))
        .order_by(OpsIncident.id)
    )
    return [
        {
            "titulo": TITLES[IncidentKind(row.kind)][0],
            "abierto": row.opened_at.isoformat(),
            "cerrado": row.closed_at.isoformat() if row.closed_at else None,
            "detalle": (row.detail or {}).get("detalle", ""),
        }
        for row in rows
    ]

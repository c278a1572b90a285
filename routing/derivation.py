"""Send a consulta on to another organo (``#derivar CODE``) or back to OGDAU (``#administrativa``).

Owns re-assignment and the routed mail to the new recipient; deciding who may ask for it is
``routing.replies``' job.

Deadline rule after a derivation: the due date does NOT move. 5.6.2 counts ten working days
"desde el siguiente día hábil que el órgano recibe la consulta"; we read "el órgano" as the MEF
receiving it through OGDAU's system (5.4.1), not as whichever directorate holds it now, because
(1) the citizen was given that due date in the confirmation mail and nothing tells them it
moved, (2) restarting the count on each derivation would let a consulta bounce between organos
for weeks while still "on time", and (3) OGDAU's follow-up (6.2) and the quarterly report (6.3)
measure the ministry's promise. The new organo sees the remaining time in the routed mail;
``assigned_at`` is reset to the derivation instant so reports can tell how long each organo held
it, and the event records the days left.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from consultas import events
from consultas.context import ServiceConfig
from consultas.models import Consulta, ConsultaTipo, Organo
from routing.assignment import OGDAU, enqueue_routed_mail


def derivar(
    session: Session,
    consulta: Consulta,
    organo_code: str,
    *,
    config: ServiceConfig,
    now: datetime,
    actor: str,
    nota: str | None = None,
) -> bool:
    """Re-assign ``consulta`` to the active organo ``organo_code``; False when there is no such organo.

    ``OGDAU`` as the code is the same as ``return_to_ogdau``. Nothing changes when False.
    """
    code = organo_code.strip().upper()
    if code == OGDAU:
        return_to_ogdau(session, consulta, config=config, now=now, actor=actor, nota=nota)
        return True
    organo = session.get(Organo, code)
    if organo is None or not organo.active:
        return False
    previous = consulta.organo_code or OGDAU
    consulta.tipo = ConsultaTipo.TECNICA
    consulta.organo_code = code
    _reassigned(session, consulta, config=config, now=now, actor=actor, previous=previous, nota=nota)
    return True


def return_to_ogdau(
    session: Session,
    consulta: Consulta,
    *,
    config: ServiceConfig,
    now: datetime,
    actor: str,
    nota: str | None = None,
) -> None:
    """Hand ``consulta`` back to OGDAU as administrativa (or to triage) and mail OGDAU."""
    previous = consulta.organo_code or OGDAU
    consulta.tipo = ConsultaTipo.ADMINISTRATIVA
    consulta.organo_code = None
    _reassigned(session, consulta, config=config, now=now, actor=actor, previous=previous, nota=nota)


def _reassigned(
    session: Session,
    consulta: Consulta,
    *,
    config: ServiceConfig,
    now: datetime,
    actor: str,
    previous: str,
    nota: str | None,
) -> None:
    consulta.assigned_at = now
    consulta.updated_at = now
    session.flush()
    target = consulta.organo_code or OGDAU
    today = config.calendar.local(now).date()
    days_left = (
        config.calendar.working_days_between(today, consulta.due_on) if consulta.due_on is not None else None
    )
    events.record(
        session,
        "derived",
        now=now,
        consulta=consulta,
        actor=actor,
        from_organo=previous,
        to_organo=target,
        due_on=consulta.due_on.isoformat() if consulta.due_on else None,
        working_days_left=days_left,
        nota=nota,
    )
    enqueue_routed_mail(session, consulta, config=config, now=now, derivada_por=previous, nota=nota)

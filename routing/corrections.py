"""What the classifier learns from people: corrections stored as examples, retraining, the model in force.

Owns ``record_correction`` (called for ``#derivar`` and ``#administrativa`` replies of the Red, and
by the staff console when OGDAU triages or re-routes a consulta), ``retrain`` (``consultas classify
--retrain`` and the nightly job) and ``current_model`` (what ``routing.assignment`` classifies
with). The model's maths is ``routing.learning``; the decision is ``routing.classify``.

The model lives in the database (``classifier_model``, newest row in force), so every intake
process and machine uses the same one. Each process loads it once and checks for a newer row at
most every ``MODEL_REFRESH_S`` seconds (one indexed query), never per mail. Without any stored
model (a registry loaded some other way than ``consultas red import``, before the first nightly
retrain), the rules alone classify and the log says so: an intake process never trains (importing
scikit-learn would cost it ~80 MB).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from consultas import events
from consultas.models import ClassifierExample, ClassifierModel, Consulta
from routing.classify import ADMINISTRATIVA, OrganoTopics
from routing.red_registry import organo_topics

if TYPE_CHECKING:
    # NumPy (and scikit-learn for training) load on first use: an intake with no Red registry
    # never classifies, and stays ~12 MB smaller without them.
    from routing.learning import Example, Model

logger = logging.getLogger(__name__)

#: How often a process looks for a model newer than the one it holds.
MODEL_REFRESH_S = 300.0
#: ``source`` of the corrections the service records itself.
SOURCE_DERIVAR = "derivar"
SOURCE_ADMINISTRATIVA = "administrativa"
#: ``source`` the staff console should pass (triage of OGDAU's tray, re-route of a routed consulta).
SOURCE_TRIAGE = "console_triage"
SOURCE_REROUTE = "console_reroute"


def record_correction(
    session: Session,
    consulta: Consulta,
    organo_code: str | None,
    *,
    by: str,
    now: datetime,
    source: str = SOURCE_REROUTE,
) -> ClassifierExample:
    """Store that ``consulta`` belongs to ``organo_code`` (None or "OGDAU": administrativa).

    For the staff console: call it when OGDAU triages a consulta of its tray to an órgano, or
    re-routes one (after ``routing.derivation.derivar``/``return_to_ogdau``, in the same
    transaction); ``by`` is the staff member, ``source`` ``SOURCE_TRIAGE`` or ``SOURCE_REROUTE``.
    The example keeps the consulta's subject and question; one row per consulta (a later call
    replaces the label). The next retrain learns it. Flushes, never commits.
    """
    code = (organo_code or "").strip().upper() or None
    if code == "OGDAU":
        code = None
    example = session.scalar(select(ClassifierExample).where(ClassifierExample.consulta_id == consulta.id))
    if example is None:
        example = ClassifierExample(consulta_id=consulta.id, created_at=now)
        session.add(example)
    example.subject = consulta.subject or ""
    example.text = consulta.question or ""
    example.organo_code = code
    example.source = source
    example.actor = by
    example.updated_at = now
    session.flush()
    events.record(
        session,
        "classifier_correction",
        now=now,
        consulta=consulta,
        actor=by,
        organo=code or "OGDAU",
        source=source,
    )
    return example


def correction_examples(session: Session, organos: tuple[OrganoTopics, ...]) -> list[Example]:
    """The stored corrections as training examples (those naming a no longer active órgano left out)."""
    from routing.learning import CORRECTION_WEIGHT, Example

    valid = {organo.code for organo in organos}
    rows = session.execute(
        select(ClassifierExample.subject, ClassifierExample.text, ClassifierExample.organo_code).order_by(
            ClassifierExample.id
        )
    ).all()
    return [
        Example(subject, text, code or ADMINISTRATIVA, CORRECTION_WEIGHT)
        for subject, text, code in rows
        if (code is None or code in valid) and (subject or text)
    ]


def retrain(session: Session, *, now: datetime) -> ClassifierModel:
    """Train a model on the registry's topics, the labelled sets and every correction; store it.

    Raises ``ValueError`` when the Red registry is empty (nothing to route to). Flushes only.
    """
    from routing.learning import builtin_examples, train_model

    organos = organo_topics(session)
    if not organos:
        raise ValueError("el registro de la Red está vacío: cárguelo con `consultas red import`")
    corrections = correction_examples(session, organos)
    examples = [*builtin_examples(organos), *corrections]
    counts = Counter(example.label for example in examples)
    summary = {"labels": dict(sorted(counts.items())), "organos": [o.code for o in organos]}
    model = train_model(examples, info=summary)
    row = ClassifierModel(
        trained_at=now,
        examples=len(examples),
        corrections=len(corrections),
        summary=summary,
        content=model.to_bytes(),
    )
    session.add(row)
    session.flush()
    _remember(session, row.id, model)
    logger.info("classifier retrained: %d examples, %d corrections", len(examples), len(corrections))
    return row


# --- the model in force, per process ---------------------------------------------------------------

_lock = threading.Lock()
#: Per engine (one per process and database): (monotonic time of the last check, stored model id
#: or None, the model or None). Weak: a disposed engine's entry goes with it.
_models: weakref.WeakKeyDictionary[Engine, tuple[float, int | None, Model | None]] = (
    weakref.WeakKeyDictionary()
)


def _database_key(session: Session) -> Engine:
    return session.get_bind().engine


def _remember(session: Session, model_id: int | None, model: Model | None) -> None:
    with _lock:
        _models[_database_key(session)] = (time.monotonic(), model_id, model)


def current_model(session: Session) -> Model | None:
    """The newest stored model, or None (the rules alone) when none was ever trained.

    Never trains: scikit-learn costs a process ~80 MB, so only ``consultas classify --retrain``
    (also run by ``red import`` and the nightly job, each its own process) imports it.
    """
    key = _database_key(session)
    with _lock:
        cached = _models.get(key)
    if cached is not None and time.monotonic() - cached[0] < MODEL_REFRESH_S:
        return cached[2]
    # No autoflush: the intake's batch writes its rows at the batch's end, not for this look-up.
    with session.no_autoflush:
        newest = session.scalar(select(func.max(ClassifierModel.id)))
        if cached is not None and cached[1] == newest:
            _remember(session, newest, cached[2])
            return cached[2]
        model: Model | None = None
        if newest is None:
            logger.warning(
                "no classifier model stored: the rules alone classify (run `consultas classify --retrain`)"
            )
        else:
            from routing.learning import Model

            content = session.scalar(select(ClassifierModel.content).where(ClassifierModel.id == newest))
            model = Model.from_bytes(content or b"")
    _remember(session, newest, model)
    return model

"""The Red registry in the database: history of titulares/alternos, refused files, topics cache."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from consultas.errors import RegistryError
from consultas.models import Organo, RedMember, RedRole, RegistryImport
from routing.red_registry import (
    current_members,
    ensure_registry_loaded,
    is_red_member,
    organo_topics,
)
from tests.routing_support import DGPMI_ALTERNO, DGPMI_TITULAR, EXAMPLE_RED, NOW, load_example_red

LATER = NOW + timedelta(days=30)


def _rewrite(tmp_path: Path, old: str, new: str) -> Path:
    path = tmp_path / "red.yaml"
    path.write_text(EXAMPLE_RED.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")
    return path


def test_a_new_titular_closes_the_old_row_and_opens_a_new_one(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with sessions.begin() as session:
        load_example_red(session)
    changed = _rewrite(tmp_path, DGPMI_TITULAR, "nueva.titular@mef.gob.pe")
    with sessions.begin() as session:
        summary = ensure_registry_loaded(session, changed, LATER)
        assert summary is not None
        assert f"organo DGPMI: titular {DGPMI_TITULAR} -> nueva.titular@mef.gob.pe" in summary.lines()
    with sessions() as session:
        rows = session.scalars(
            select(RedMember)
            .where(RedMember.organo_code == "DGPMI", RedMember.role == RedRole.TITULAR)
            .order_by(RedMember.id)
        ).all()
        assert [(r.email, r.valid_from, r.valid_to) for r in rows] == [
            (DGPMI_TITULAR, NOW, LATER),
            ("nueva.titular@mef.gob.pe", LATER, None),
        ]
        titular, alterno = current_members(session, "DGPMI")
        assert titular is not None and titular.email == "nueva.titular@mef.gob.pe"
        assert alterno is not None and alterno.email == DGPMI_ALTERNO and alterno.valid_from == NOW
        assert not is_red_member(session, DGPMI_TITULAR, "DGPMI")
        assert is_red_member(session, "Nueva.Titular@mef.gob.pe", "DGPMI")


def test_reloading_the_same_file_changes_nothing_and_records_no_import(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        assert ensure_registry_loaded(session, EXAMPLE_RED, NOW) is not None
    with sessions.begin() as session:
        assert ensure_registry_loaded(session, EXAMPLE_RED, LATER) is None
    with sessions() as session:
        assert session.scalar(select(func.count(RegistryImport.id))) == 1
        assert session.scalar(select(func.count(RedMember.id)).where(RedMember.valid_to.is_not(None))) == 0


def test_an_organo_missing_from_the_file_becomes_inactive_with_its_members_closed(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with sessions.begin() as session:
        load_example_red(session)
    text = EXAMPLE_RED.read_text(encoding="utf-8")
    start = text.index("  - code: OGTI")
    path = tmp_path / "red.yaml"
    path.write_text(text[:start], encoding="utf-8")
    with sessions.begin() as session:
        summary = ensure_registry_loaded(session, path, LATER)
        assert summary is not None and summary.deactivated == ["OGTI"]
    with sessions() as session:
        organo = session.get(Organo, "OGTI")
        assert organo is not None and not organo.active
        assert current_members(session, "OGTI") == (None, None)
        assert "OGTI" not in {o.code for o in organo_topics(session)}


def test_an_invalid_file_is_refused_naming_organo_and_field_and_the_registry_stays(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with sessions.begin() as session:
        load_example_red(session)
    broken = _rewrite(tmp_path, f'email: "{DGPMI_TITULAR}"', 'email: "no-es-un-correo"')
    with pytest.raises(RegistryError) as raised, sessions.begin() as session:
        ensure_registry_loaded(session, broken, LATER)
    assert any("organo DGPMI" in p and "titular.email" in p for p in raised.value.problems)
    with sessions() as session:
        assert session.scalar(select(func.count(RegistryImport.id))) == 1
        titular, _ = current_members(session, "DGPMI")
        assert titular is not None and titular.email == DGPMI_TITULAR


def test_an_absent_flag_is_updated_in_place_without_new_history(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with sessions.begin() as session:
        load_example_red(session)
    # The DGPMI titular goes on leave.
    changed = _rewrite(
        tmp_path,
        f'email: "{DGPMI_TITULAR}", phone: "(01) 311-5930 anexo 3320"',
        f'email: "{DGPMI_TITULAR}", phone: "(01) 311-5930 anexo 3320", absent: true',
    )
    with sessions.begin() as session:
        ensure_registry_loaded(session, changed, LATER)
    with sessions() as session:
        titular, _ = current_members(session, "DGPMI")
        assert titular is not None and titular.absent and titular.valid_from == NOW
        assert session.scalar(select(func.count(RedMember.id)).where(RedMember.organo_code == "DGPMI")) == 2


def test_topics_follow_a_new_registry_version(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    with sessions.begin() as session:
        load_example_red(session)
        before = {o.code: o.topics for o in organo_topics(session)}
    assert "viabilidad" in before["DGPMI"]
    changed = _rewrite(tmp_path, '"viabilidad"]', '"viabilidad", "fase de funcionamiento"]')
    with sessions.begin() as session:
        ensure_registry_loaded(session, changed, LATER)
        after = {o.code: o.topics for o in organo_topics(session)}
    assert "fase de funcionamiento" in after["DGPMI"]

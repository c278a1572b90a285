"""The Red registry in the database: sync from the validated file, keep history, answer queries.

Owns ``apply_registry`` (organos and their titular/alterno rows, with dated history as directive
4.2.2 asks), the start-up load of ``CONSULTAS_RED_FILE`` and the queries routing needs (current
members, topics for the classifier). Validating the file is ``routing.red_registry_file``'s job.

History rule: a member row is the pair (organo, role) held by one address. When the file names a
different address for a role, the open row is closed (``valid_to=now``) and a new one opened
(``valid_from=now``); a changed name, cargo, phone or ``absent`` flag of the same address is
updated in place. Organos missing from the file become inactive and their members' rows close.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from consultas.errors import RegistryError
from consultas.models import Organo, RedMember, RedRole, RegistryImport
from consultas.txcache import forget, transaction_cache
from routing.classify import OrganoTopics
from routing.red_registry_file import RedContact, RedRegistry, parse_registry

#: How many registry versions' topic lists are kept (one per database the process talks to).
_TOPICS_CACHE_SIZE = 8


@dataclass
class ApplySummary:
    """What one import changed; ``lines()`` is what ``consultas red import`` prints."""

    import_id: int = 0
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)
    member_changes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.deactivated or self.member_changes)

    def lines(self) -> list[str]:
        if not self.changed:
            return ["no changes"]
        return [
            *(f"organo {code}: added" for code in self.added),
            *(f"organo {code}: updated" for code in self.updated),
            *(f"organo {code}: inactive (missing from the file)" for code in self.deactivated),
            *self.member_changes,
        ]


def sha256_text(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def apply_registry(
    session: Session, registry: RedRegistry, *, source: str, content: str, now: datetime
) -> ApplySummary:
    """Make the database's Red match ``registry``; record the import with its text. Flushes only."""
    summary = ApplySummary()
    existing = {row.code: row for row in session.scalars(select(Organo))}
    for organo in registry.organos:
        row = existing.get(organo.code)
        topics = list(organo.topics)
        if row is None:
            session.add(
                Organo(code=organo.code, name=organo.name, topics=topics, active=True, updated_at=now)
            )
            summary.added.append(organo.code)
        elif row.name != organo.name or list(row.topics) != topics or not row.active:
            row.name, row.topics, row.active, row.updated_at = organo.name, topics, True, now
            summary.updated.append(organo.code)
        session.flush()
        _sync_member(session, organo.code, RedRole.TITULAR, organo.titular, now=now, summary=summary)
        _sync_member(session, organo.code, RedRole.ALTERNO, organo.alterno, now=now, summary=summary)
    wanted = {organo.code for organo in registry.organos}
    for code, row in sorted(existing.items()):
        if code not in wanted and row.active:
            row.active, row.updated_at = False, now
            summary.deactivated.append(code)
            for member in _open_members(session, code):
                member.valid_to = now
    record = RegistryImport(
        imported_at=now,
        source=source,
        sha256=sha256_text(content),
        content=content,
        summary="\n".join(summary.lines()),
    )
    session.add(record)
    session.flush()
    _forget_registry_lookups(session)  # this transaction now sees the new version
    summary.import_id = record.id
    return summary


def _open_members(session: Session, organo_code: str) -> list[RedMember]:
    return list(
        session.scalars(
            select(RedMember)
            .where(RedMember.organo_code == organo_code, RedMember.valid_to.is_(None))
            .order_by(RedMember.id)
        )
    )


def _sync_member(
    session: Session, code: str, role: RedRole, contact: RedContact, *, now: datetime, summary: ApplySummary
) -> None:
    current = next((m for m in _open_members(session, code) if m.role == role), None)
    email = contact.email.lower()
    if current is not None and current.email.lower() == email:
        fields = (contact.name, contact.cargo, contact.phone or None, contact.absent)
        if (current.name, current.cargo, current.phone, current.absent) != fields:
            current.name, current.cargo, current.phone, current.absent = fields
            summary.member_changes.append(f"organo {code}: {role.value} {email}: details updated")
        return
    if current is not None:
        current.valid_to = now
        summary.member_changes.append(f"organo {code}: {role.value} {current.email} -> {email}")
    else:
        summary.member_changes.append(f"organo {code}: {role.value} {email}: added")
    session.add(
        RedMember(
            organo_code=code,
            role=role,
            name=contact.name,
            cargo=contact.cargo,
            email=email,
            phone=contact.phone or None,
            absent=contact.absent,
            valid_from=now,
        )
    )
    session.flush()


def last_import(session: Session) -> RegistryImport | None:
    """The most recent registry import, or None when the Red was never loaded."""
    return session.scalar(select(RegistryImport).order_by(RegistryImport.id.desc()).limit(1))


def ensure_registry_loaded(session: Session, path: str | Path, now: datetime) -> ApplySummary | None:
    """Import the file at ``path`` when its sha256 differs from the last import; None when unchanged.

    Raises RegistryError (each message naming organo and field) for an invalid file; nothing is
    written then, so the registry already in the database stays in force.
    """
    try:
        content = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError([f"cannot read registry file {path}: {exc.strerror or exc}"]) from exc
    previous = last_import(session)
    if previous is not None and previous.sha256 == sha256_text(content):
        return None
    registry = parse_registry(content)
    return apply_registry(session, registry, source=str(path), content=content, now=now)


def current_members(session: Session, organo_code: str) -> tuple[RedMember | None, RedMember | None]:
    """The open (titular, alterno) rows of an active organo; None where there is none.

    Read once per organo and transaction: only ``apply_registry`` opens or closes rows, and it
    forgets the cache; a flag changed on a row (absent, bounced) is seen on the row itself.
    """
    cache = transaction_cache(session, _MEMBERS_CACHE)
    pair: tuple[RedMember | None, RedMember | None] | None = cache.get(organo_code)
    if pair is None:
        organo = session.get(Organo, organo_code)
        if organo is None or not organo.active:
            pair = (None, None)
        else:
            members = _open_members(session, organo_code)
            pair = (
                next((m for m in members if m.role == RedRole.TITULAR), None),
                next((m for m in members if m.role == RedRole.ALTERNO), None),
            )
        cache[organo_code] = pair
    return pair


def is_red_member(session: Session, email: str, organo_code: str) -> bool:
    """True when ``email`` is the current titular or alterno of the (active) organo."""
    wanted = email.strip().lower()
    return any(m is not None and m.email.lower() == wanted for m in current_members(session, organo_code))


def is_any_red_member(session: Session, email: str) -> bool:
    """True when ``email`` is a current titular or alterno of any organo."""
    wanted = email.strip().lower()
    found = session.scalar(
        select(RedMember.id).where(RedMember.email == wanted, RedMember.valid_to.is_(None)).limit(1)
    )
    return found is not None


def active_organos(session: Session) -> list[Organo]:
    """Active organos by code (for listings and the routed mail's list of codes)."""
    return list(session.scalars(select(Organo).where(Organo.active.is_(True)).order_by(Organo.code)))


_topics_cache: dict[tuple[str, int, str], tuple[OrganoTopics, ...]] = {}
_topics_lock = threading.Lock()


#: Names of the per-transaction caches (``consultas.txcache``) of registry look-ups.
_TOPICS_CACHE = "red_registry.organo_topics"
_ACTIVE_CACHE = "red_registry.active_organo_names"
_MEMBERS_CACHE = "red_registry.current_members"


def _forget_registry_lookups(session: Session) -> None:
    for name in (_TOPICS_CACHE, _ACTIVE_CACHE, _MEMBERS_CACHE):
        forget(session, name)


def active_organo_names(session: Session) -> list[dict[str, str]]:
    """``{"code", "name"}`` of the active organos by code, read once per transaction (mail contexts)."""
    cache = transaction_cache(session, _ACTIVE_CACHE)
    names = cache.get("names")
    if names is None:
        names = cache["names"] = [{"code": o.code, "name": o.name} for o in active_organos(session)]
    return [dict(item) for item in names]


def organo_topics(session: Session) -> tuple[OrganoTopics, ...]:
    """What the classifier needs from every active organo (by code), cached per registry version.

    The registry only changes through ``apply_registry``, which always writes a RegistryImport
    row, so (database, last import id, its sha256) identifies the topic list: one small query per
    transaction instead of loading every organo per mail (a batch of mails in one transaction
    sees the registry as it was at its first mail; the classifier caches its index per list).
    """
    cache = transaction_cache(session, _TOPICS_CACHE)
    topics: tuple[OrganoTopics, ...] | None = cache.get("topics")
    if topics is None:
        topics = cache["topics"] = _organo_topics(session)
    return topics


def _organo_topics(session: Session) -> tuple[OrganoTopics, ...]:
    latest = session.execute(
        select(RegistryImport.id, RegistryImport.sha256).order_by(RegistryImport.id.desc()).limit(1)
    ).first()
    if latest is None:
        return ()
    key = (session.get_bind().engine.url.render_as_string(hide_password=True), latest[0], latest[1])
    with _topics_lock:
        cached = _topics_cache.get(key)
    if cached is not None:
        return cached
    topics = tuple(OrganoTopics(o.code, o.name, tuple(o.topics)) for o in active_organos(session))
    with _topics_lock:
        if len(_topics_cache) >= _TOPICS_CACHE_SIZE:
            _topics_cache.clear()
        _topics_cache[key] = topics
    return topics

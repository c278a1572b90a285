"""The Red registry file: YAML schema and validation (directive 4.1.2, 4.2).

Owns parsing and validating the file that lists each organo's titular and alterno. Syncing it
into the database is left to ``routing.red_registry``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from consultas.errors import RegistryError
from routing.classify import OrganoTopics

#: Organo codes as the MEF writes them (DGPMI, DGGFRH, OGDAU...).
CODE_PATTERN = re.compile(r"^[A-Z][A-Z0-9]*$")


class RedContact(BaseModel):
    """One Red representative (titular or alterno) of an organo."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    name: str = Field(min_length=1)
    cargo: str = Field(min_length=1)
    email: str
    phone: str = ""
    absent: bool = False

    @field_validator("email")
    @classmethod
    def _valid_email(cls, value: str) -> str:
        try:
            # No DNS at load time: the registry is validated offline (CI, start-up).
            return validate_email(value, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            raise ValueError(f"{value!r} is not a valid email address ({exc})") from exc


class Organo(BaseModel):
    """One organo of the MEF with its topics and its two Red representatives."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    code: str
    name: str = Field(min_length=1)
    topics: tuple[str, ...] = Field(min_length=1)
    titular: RedContact
    alterno: RedContact
    valid_from: date | None = None

    @field_validator("code")
    @classmethod
    def _valid_code(cls, value: str) -> str:
        if not CODE_PATTERN.fullmatch(value):
            raise ValueError(f"{value!r} must be uppercase letters and digits (e.g. DGPMI)")
        return value

    @field_validator("topics")
    @classmethod
    def _non_blank_topics(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        stripped = tuple(topic.strip() for topic in value)
        if any(not topic for topic in stripped):
            raise ValueError("topics must not contain blank entries")
        return stripped


class RedRegistry(BaseModel):
    """The whole Red: every organo that receives técnica consultas."""

    model_config = ConfigDict(frozen=True)

    organos: tuple[Organo, ...]

    def by_code(self, code: str) -> Organo | None:
        """Return the organo with this code (case-insensitive), or None."""
        wanted = code.strip().upper()
        return next((organo for organo in self.organos if organo.code == wanted), None)

    def organo_topics(self) -> tuple[OrganoTopics, ...]:
        """Return what ``routing.classify.classify`` needs from every organo."""
        return tuple(OrganoTopics(o.code, o.name, o.topics) for o in self.organos)


def load_registry_file(path: str | Path) -> RedRegistry:
    """Read and validate the registry file; raise RegistryError listing every problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError([f"cannot read registry file {path}: {exc.strerror or exc}"]) from exc
    return parse_registry(text)


def parse_registry(text: str) -> RedRegistry:
    """Validate the registry YAML text; raise RegistryError listing every problem."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RegistryError([_yaml_problem(exc)]) from exc
    if not isinstance(document, dict) or "organos" not in document:
        raise RegistryError(["registry: the file must be a mapping with an 'organos' list"])
    raw_organos = document["organos"]
    if not isinstance(raw_organos, list) or not raw_organos:
        raise RegistryError(["registry: 'organos' must be a non-empty list"])

    problems: list[str] = []
    organos: list[Organo] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_organos, start=1):
        label = _organo_label(raw, index)
        if not isinstance(raw, dict):
            problems.append(f"{label}: must be a mapping with code, name, topics, titular, alterno")
            continue
        try:
            organo = Organo.model_validate(raw)
        except ValidationError as exc:
            problems.extend(f"{label}: {problem}" for problem in _pydantic_problems(exc))
            continue
        if organo.code in seen:
            problems.append(
                f"{label}: code: duplicate code (already used by organo number {seen[organo.code]})"
            )
            continue
        seen[organo.code] = index
        organos.append(organo)
    if problems:
        raise RegistryError(problems)
    return RedRegistry(organos=tuple(organos))


def _organo_label(raw: Any, index: int) -> str:
    code = raw.get("code") if isinstance(raw, dict) else None
    if isinstance(code, str) and code.strip():
        return f"organo {code.strip()}"
    return f"organo #{index}"


def _pydantic_problems(exc: ValidationError) -> Sequence[str]:
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "(organo)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "is required"
        elif error["type"] == "extra_forbidden":
            message = "unknown field"
        problems.append(f"{field}: {message}")
    return problems


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"registry: YAML syntax error at line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return f"registry: YAML syntax error: {problem}"

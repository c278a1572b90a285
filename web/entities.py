"""The entity directory for "Buscar entidad por: RUC / Razón social" (``CONSULTAS_ENTITIES_FILE``).

A CSV ``ruc,razon_social`` (header optional) loaded once; look-ups by RUC and an accent- and
case-insensitive search by razón social. Rows whose RUC fails its check digit are skipped.
"""

from __future__ import annotations

import csv
import logging
import unicodedata
from pathlib import Path

from consultas.validators import validate_ruc

logger = logging.getLogger(__name__)

#: At most this many matches are offered for a razón social.
MAX_MATCHES = 10


def _folded(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return " ".join("".join(ch for ch in decomposed if not unicodedata.combining(ch)).split())


class EntityDirectory:
    """RUC -> razón social, searchable by name."""

    def __init__(self, rows: list[tuple[str, str]]) -> None:
        self._by_ruc = dict(rows)
        self._folded = [(_folded(name), ruc, name) for ruc, name in rows]

    @classmethod
    def from_csv(cls, path: Path) -> EntityDirectory:
        """Load ``path``; a missing or unreadable file is a ValueError naming it."""
        rows: list[tuple[str, str]] = []
        skipped = 0
        try:
            with path.open(encoding="utf-8-sig", newline="") as handle:
                for record in csv.reader(handle):
                    if len(record) < 2:
                        continue
                    try:
                        ruc = validate_ruc(record[0])
                    except ValueError:
                        skipped += record[0].strip().lower() != "ruc"
                        continue
                    name = " ".join(record[1].split())
                    if name:
                        rows.append((ruc, name))
        except OSError as exc:
            raise ValueError(f"CONSULTAS_ENTITIES_FILE: cannot read {path}: {exc.strerror}") from exc
        if skipped:
            logger.warning("entities file %s: %d rows with an invalid RUC skipped", path, skipped)
        return cls(rows)

    def __len__(self) -> int:
        return len(self._by_ruc)

    def name_of(self, ruc: str) -> str | None:
        return self._by_ruc.get(ruc)

    def search(self, text: str) -> list[tuple[str, str]]:
        """(ruc, razón social) of the entities whose name contains ``text``; an exact name alone wins."""
        wanted = _folded(text)
        if not wanted:
            return []
        exact = [(ruc, name) for folded, ruc, name in self._folded if folded == wanted]
        if len(exact) == 1:
            return exact
        return [(ruc, name) for folded, ruc, name in self._folded if wanted in folded][:MAX_MATCHES]

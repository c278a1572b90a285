"""Shared fixtures: databases (tests/plugins/database.py) and real servers (tests/plugins/servers.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.plugins.database", "tests.plugins.servers"]


@pytest.fixture(autouse=True)
def clean_environ(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Tests never read the developer's CONSULTAS_* settings or .env file."""
    for name in list(os.environ):
        if name.startswith("CONSULTAS_") and not name.startswith("CONSULTAS_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    yield

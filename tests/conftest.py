"""Shared fixtures: databases (tests/plugins/database.py), real servers (tests/plugins/servers.py) and
workers on a broker (tests/workers_support.py).

The fast loop while working is ``pytest -m "not slow"``: the pure and SQLite tests. A test is slow
when it is marked so (processes, benchmarks) or uses a real server: every fixture below, and the
PostgreSQL half of ``db_url``. CI runs everything.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.plugins.database", "tests.plugins.servers", "tests.workers_support"]

#: Fixtures that hand a test a real server (or start one): their tests are ``slow``.
SERVER_FIXTURES = frozenset(
    {
        "postgres_url",
        "dovecot",
        "dovecot_server",
        "smtp_sink",
        "smtp_sink_server",
        "fake_bot_api",
        "fake_bot_api_server",
        "redis_url",
        "redis_server_url",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that talks to a real server ``slow`` (see the module docstring)."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("db_url") == "postgresql"
        if on_postgres or fixtures & SERVER_FIXTURES:
            item.add_marker(pytest.mark.slow)


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

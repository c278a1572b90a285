"""Settings come from CONSULTAS_* variables; a wrong value is one clear message, not a traceback."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from consultas.errors import ConfigurationError
from consultas.settings import load_settings


def test_defaults_run_on_sqlite_under_var_and_the_memory_broker() -> None:
    settings = load_settings()
    assert settings.resolved_database_url == "sqlite:///var/consultas.sqlite3"
    assert settings.broker_url == "memory"
    assert settings.mailbox_address == "consultas@mef.gob.pe"
    assert settings.imap_folder == "INBOX"
    assert settings.timezone == "America/Lima"


def test_non_working_days_are_comma_separated_dates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSULTAS_NON_WORKING_DAYS", "2024-12-23, 2024-12-24")
    monkeypatch.setenv("CONSULTAS_IMAP_SSL", "false")
    settings = load_settings()
    assert settings.non_working_days == [date(2024, 12, 23), date(2024, 12, 24)]
    assert settings.imap_ssl is False


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CONSULTAS_IMAP_PORT", "abc"),
        ("CONSULTAS_NON_WORKING_DAYS", "2024-13-45"),
        ("CONSULTAS_TIMEZONE", "Mars/Olympus"),
        ("CONSULTAS_BROKER_URL", "amqp://x"),
        ("CONSULTAS_SMTP_STARTTLS", "perhaps"),
        ("CONSULTAS_DATABASE_URL", "mysql://x"),
    ],
)
def test_a_wrong_setting_is_named_in_the_error(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=name):
        load_settings()


def test_postgresql_without_a_secret_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSULTAS_DATABASE_URL", "postgresql+psycopg://u@h/db")
    with pytest.raises(ConfigurationError, match="CONSULTAS_SECRET_KEY"):
        load_settings()


def test_embedded_secret_key_is_created_once_and_kept(tmp_path: Path) -> None:
    settings = load_settings(var_dir=tmp_path)
    first = settings.secret_key_bytes()
    assert len(first) == 64
    assert load_settings(var_dir=tmp_path).secret_key_bytes() == first


@pytest.mark.slow
def test_the_command_prints_one_line_naming_the_setting_and_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "db", "upgrade"],
        env={"CONSULTAS_IMAP_PORT": "abc", "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "CONSULTAS_IMAP_PORT" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

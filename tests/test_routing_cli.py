"""``consultas red import``, ``red list`` and ``classify`` as staff run them (subprocess, SQLite file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.routing_support import DGPMI_TITULAR, EXAMPLE_RED

pytestmark = pytest.mark.slow  # runs `consultas` in subprocesses


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if not k.startswith("CONSULTAS_")}
    values["CONSULTAS_DATABASE_URL"] = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    values["CONSULTAS_VAR_DIR"] = str(tmp_path / "var")
    return values


def consultas(
    env: dict[str, str], *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result


def test_red_import_loads_the_registry_and_red_list_shows_it(env: dict[str, str]) -> None:
    assert consultas(env, "db", "upgrade").returncode == 0
    imported = consultas(env, "red", "import", str(EXAMPLE_RED))
    assert imported.returncode == 0, imported.stderr
    assert "organo DGPMI: added" in imported.stdout
    listed = consultas(env, "red", "list", "--json")
    rows = {row["code"]: row for row in json.loads(listed.stdout)}
    assert [(m["role"], m["email"]) for m in rows["DGPMI"]["members"]] == [
        ("titular", DGPMI_TITULAR),
        ("alterno", "mllerena@mef.gob.pe"),
    ]
    again = consultas(env, "red", "import", str(EXAMPLE_RED))
    assert "no changes" in again.stdout


def test_red_import_of_a_changed_titular_prints_it_and_history_keeps_both(
    env: dict[str, str], tmp_path: Path
) -> None:
    consultas(env, "db", "upgrade")
    consultas(env, "red", "import", str(EXAMPLE_RED))
    changed = tmp_path / "red.yaml"
    changed.write_text(
        EXAMPLE_RED.read_text(encoding="utf-8").replace(DGPMI_TITULAR, "nuevo@mef.gob.pe"), "utf-8"
    )
    imported = consultas(env, "red", "import", str(changed))
    assert f"organo DGPMI: titular {DGPMI_TITULAR} -> nuevo@mef.gob.pe" in imported.stdout
    history = consultas(env, "red", "list", "--history")
    assert DGPMI_TITULAR in history.stdout and "nuevo@mef.gob.pe" in history.stdout
    current = consultas(env, "red", "list")
    assert DGPMI_TITULAR not in current.stdout


def test_red_import_of_an_invalid_file_names_organo_and_field_and_changes_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    consultas(env, "db", "upgrade")
    consultas(env, "red", "import", str(EXAMPLE_RED))
    broken = tmp_path / "red.yaml"
    broken.write_text(EXAMPLE_RED.read_text(encoding="utf-8").replace(DGPMI_TITULAR, "roto"), "utf-8")
    refused = consultas(env, "red", "import", str(broken))
    assert refused.returncode == 1
    assert "organo DGPMI: titular.email" in refused.stderr
    assert DGPMI_TITULAR in consultas(env, "red", "list").stdout


def _eml(subject: str, body: str) -> bytes:
    mail = EmailMessage()
    mail["From"] = "Ana Torres <ana@example.pe>"
    mail["To"] = "consultas@mef.gob.pe"
    mail["Subject"] = subject
    mail.set_content(body)
    return mail.as_bytes()


def test_classify_prints_json_from_a_red_file_or_from_the_database(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "consulta.eml"
    path.write_bytes(_eml("Carta orden electrónica", "¿Cómo se anula una carta orden electrónica en la CUT?"))
    from_file = consultas(env, "classify", "--red", str(EXAMPLE_RED), str(path))
    assert from_file.returncode == 0, from_file.stderr
    assert json.loads(from_file.stdout)["organo"] == "DGTP"
    consultas(env, "db", "upgrade")
    consultas(env, "red", "import", str(EXAMPLE_RED))
    stdin = consultas(
        env, "classify", "-", stdin=_eml("Estado de mi trámite", "¿En qué estado está mi trámite?")
    )
    result = json.loads(stdin.stdout)
    assert result["type"] == "administrativa" and result["organo"] is None and result["reason"]


@pytest.mark.parametrize("command", [("red", "import"), ("red", "list"), ("classify",)])
def test_every_routing_command_has_help(env: dict[str, str], command: tuple[str, ...]) -> None:
    shown = consultas(env, *command, "--help")
    assert shown.returncode == 0 and "usage: consultas" in shown.stdout

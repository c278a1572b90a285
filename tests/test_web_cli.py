"""``consultas web`` and the web settings as an operator meets them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from consultas.settings import load_settings
from tests.servers._net import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[1]


def _env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSULTAS_")}
    env.update(PYTHONPATH=str(REPO), CONSULTAS_VAR_DIR=str(tmp_path / "var"), **settings)
    return env


def _consultas(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_web_defaults_are_the_embedded_ones() -> None:
    settings = load_settings()
    assert (settings.web_host, settings.web_port) == ("127.0.0.1", 8080)
    assert settings.public_url == "http://127.0.0.1:8080"
    assert (settings.web_rate_limit, settings.trusted_proxies, settings.entities_file) == (10, [], None)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CONSULTAS_TRUSTED_PROXIES", "10.0.0.0/8,proxy.mef"),
        ("CONSULTAS_WEB_FRAME_ANCESTORS", "'self'; script-src *"),
        ("CONSULTAS_PUBLIC_URL", "consultas.mef.gob.pe"),
        ("CONSULTAS_WEB_RATE_LIMIT", "0"),
    ],
)
def test_a_wrong_web_setting_is_one_line_naming_it(tmp_path: Path, name: str, value: str) -> None:
    result = _consultas("web", env=_env(tmp_path, **{name: value}))
    assert result.returncode == 2
    assert name in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_missing_entities_file_is_one_line(tmp_path: Path) -> None:
    env = _env(tmp_path, CONSULTAS_ENTITIES_FILE=str(tmp_path / "no-existe.csv"))
    assert _consultas("db", "upgrade", env=env).returncode == 0
    result = _consultas("web", env=env)
    assert result.returncode == 2 and "CONSULTAS_ENTITIES_FILE" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_consultas_web_with_two_workers_serves_the_form_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = _env(tmp_path, CONSULTAS_WEB_PORT=str(port))
    assert _consultas("db", "upgrade", env=env).returncode == 0
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "web", "--workers", "2"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, timeout_s=60)
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=30)
        temas = httpx.get(f"http://127.0.0.1:{port}/api/v1/temas", timeout=30)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert page.status_code == 200 and "Registrar consulta" in page.text
    assert temas.json() == [
        {"code": "ADMINISTRATIVA", "name": "Trámites y servicios del MEF (administrativa)"}
    ]
    assert process.returncode == 0, output

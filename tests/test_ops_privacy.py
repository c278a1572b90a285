"""Retention and the citizen's rights (Ley N° 29733): nothing personal left, the reports unchanged."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from app.cli import main
from consultas.models import Consulta, ConsultaStatus, PrivacyRun
from tests.ops_support import CITIZENS, Citizen, answer, take_in
from tests.routing_support import CONFIG, load_example_red
from workers.reports import Quarter, build_report, report_csv

Q1 = Quarter(2025, 1)


@pytest.fixture
def cli_env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CONSULTAS_DATABASE_URL", db_url)
    monkeypatch.setenv("CONSULTAS_SECRET_KEY", "privacy-test-secret")
    return db_url


def personal_values(citizen: Citizen) -> list[bytes]:
    """What identifies the citizen, as it would appear in a file or a dump."""
    return [value.encode() for value in (citizen.name, citizen.dni, citizen.email, citizen.phone)]


def stored_bytes(db_url: str) -> bytes:
    """The whole database as bytes: the SQLite file (and its WAL), or a pg_dump."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        path = Path(str(url.database))
        return b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())
    if shutil.which("pg_dump") is None:
        pytest.fail("pg_dump is needed to check what PostgreSQL keeps")
    plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return subprocess.run(["pg_dump", "--no-owner", plain], check=True, capture_output=True).stdout


def setup_three(sessions: sessionmaker[Session]) -> list[str]:
    """Citizens 1 and 2 answered (closed 12 March 2025); citizen 3 still waiting."""
    with sessions.begin() as session:
        load_example_red(session)
    numbers = [take_in(sessions, citizen) for citizen in CITIZENS]
    for number in numbers[:2]:
        answer(sessions, number)
    return numbers


def test_retention_leaves_no_personal_data_and_the_quarterly_csv_identical(
    cli_env: str, engine: Engine, sessions: sessionmaker[Session], capsys: pytest.CaptureFixture[str]
) -> None:
    numbers = setup_three(sessions)
    with sessions() as session:
        csv_before = report_csv(build_report(session, config=CONFIG, quarter=Q1))
    before = stored_bytes(cli_env)
    for citizen in CITIZENS:  # the check can fail: the data is there before
        assert all(value in before for value in personal_values(citizen)), citizen.name

    # A dry run counts and changes nothing
    assert main(["retention", "--before", "2025-03-13", "--dry-run"]) == 0
    assert "2 consulta(s) closed before 2025-03-13 would be anonymised (dry run)" in capsys.readouterr().out
    with sessions() as session:
        assert (
            session.scalar(select(Consulta.full_name).where(Consulta.number == numbers[0]))
            == CITIZENS[0].name
        )

    assert main(["retention", "--before", "2025-03-13"]) == 0
    assert "2 consulta(s) closed before 2025-03-13 anonymised" in capsys.readouterr().out
    engine.dispose()
    after = stored_bytes(cli_env)
    for citizen in CITIZENS[:2]:
        assert [v for v in personal_values(citizen) if v in after] == [], citizen.name
    assert all(value in after for value in personal_values(CITIZENS[2]))  # still open: kept

    with sessions() as session:
        assert report_csv(build_report(session, config=CONFIG, quarter=Q1)) == csv_before
        kept = session.execute(
            select(Consulta.number, Consulta.status, Consulta.organo_code, Consulta.presented_on).order_by(
                Consulta.number
            )
        ).all()
        runs = session.execute(select(PrivacyRun.action, PrivacyRun.dry_run, PrivacyRun.consultas)).all()
    assert [(n, s) for n, s, _, _ in kept] == [
        (numbers[0], ConsultaStatus.RESPONDIDA), (numbers[1], ConsultaStatus.RESPONDIDA),
        (numbers[2], ConsultaStatus.ASIGNADA),
    ]  # fmt: skip
    assert {organo for _, _, organo, _ in kept} == {"DGPMI"}
    assert sorted(runs) == [("retention", False, 2), ("retention", True, 2)]

    # Running it again finds nothing more
    assert main(["retention", "--before", "2025-03-13"]) == 0
    assert "0 consulta(s)" in capsys.readouterr().out


def test_a_citizen_exports_then_erases_their_closed_consultas(
    cli_env: str, engine: Engine, sessions: sessionmaker[Session], capsys: pytest.CaptureFixture[str]
) -> None:
    numbers = setup_three(sessions)
    first = CITIZENS[0]
    assert main(["citizen", "export", first.dni]) == 0
    [exported] = json.loads(capsys.readouterr().out)
    assert exported["numero"] == numbers[0] and exported["nombre"] == first.name
    assert exported["correo"] == first.email and exported["estado"] == "respondida"
    assert any(first.dni in (m["texto"] or "") for m in exported["mensajes"])
    assert {"admitted", "routed"} <= {e["evento"] for e in exported["historial"]}

    assert main(["citizen", "erase", first.dni]) == 0
    assert "1 closed consulta(s) anonymised; 0 open one(s) kept" in capsys.readouterr().out
    engine.dispose()
    stored = stored_bytes(cli_env)
    assert [v for v in personal_values(first) if v in stored] == []
    assert all(value in stored for value in personal_values(CITIZENS[1]))

    # The third citizen's consulta is open: erasure waits until it closes
    assert main(["citizen", "erase", CITIZENS[2].dni]) == 0
    assert "0 closed consulta(s) anonymised; 1 open one(s) kept" in capsys.readouterr().out
    assert main(["citizen", "export", "99999999"]) == 1
    with sessions() as session:
        actions = sorted(a for (a,) in session.execute(select(PrivacyRun.action)))
    assert actions == ["erase", "erase", "export", "export"]


def test_the_daily_retention_job_anonymises_what_is_older_than_the_retention_years(
    db_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    from consultas.clock import FixedClock
    from consultas.settings import Settings
    from workers.broker import configure_broker
    from workers.runtime import close_runtime, init_runtime

    setup_three(sessions)
    settings = Settings(
        _env_file=None, database_url=db_url, var_dir=tmp_path, secret_key="k", retention_years=5
    )
    clock = FixedClock(datetime(2030, 3, 12, 12, 0, tzinfo=UTC))  # cut-off 12 March 2025: nothing yet
    configure_broker("memory")
    from workers.retention import run_retention_job

    init_runtime(settings, clock=clock)
    try:
        run_retention_job.fn()
        clock.set(datetime(2030, 3, 13, 12, 0, tzinfo=UTC))  # cut-off 13 March: the two answered ones
        run_retention_job.fn()
    finally:
        close_runtime()
    with sessions() as session:
        runs = session.execute(select(PrivacyRun.actor, PrivacyRun.consultas, PrivacyRun.detail)).all()
        names = sorted(str(n) for n in session.scalars(select(Consulta.full_name)) if n)
    assert runs == [
        ("scheduler", 0, {"before": "2025-03-12"}),
        ("scheduler", 2, {"before": "2025-03-13"}),
    ]
    assert names == [CITIZENS[2].name]

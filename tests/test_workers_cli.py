"""``consultas outbox``: failed mails are visible with their error and can be put back by command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main
from consultas.clock import FixedClock
from consultas.models import Channel, Consulta, ConsultaStatus, Outbox, OutboxStatus
from tests.servers.smtp_sink import SmtpSink
from tests.workers_support import NOW, queue_mails, smtp_settings
from workers.mail import Outcome, Sender
from workers.runtime import close_runtime, init_runtime


def _outbox_json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, object]]:
    assert main(["outbox", "--json", *args]) == 0
    rows: list[dict[str, object]] = json.loads(capsys.readouterr().out)
    return rows


def test_a_refused_mail_is_listed_as_failed_and_retry_puts_it_back(
    db_url: str, smtp_sink: SmtpSink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    runtime = init_runtime(smtp_settings(db_url, smtp_sink, tmp_path), clock=FixedClock(NOW))
    monkeypatch.setenv("CONSULTAS_DATABASE_URL", db_url)
    monkeypatch.setenv("CONSULTAS_SECRET_KEY", "test-secret")
    try:
        with runtime.sessions.begin() as session:
            consulta = Consulta(
                number="CONS-2024-000007",
                channel=Channel.EMAIL,
                status=ConsultaStatus.ADMITIDA,
                received_at=NOW,
                created_at=NOW,
                updated_at=NOW,
            )
            session.add(consulta)
        smtp_sink.reject_rcpt("nadie@example.pe", 550)
        [failed_id] = queue_mails(runtime.sessions, 1, to=("nadie@example.pe",), key="bad")
        [pending_id] = queue_mails(runtime.sessions, 1, key="ok")
        with runtime.sessions.begin() as session:
            row = session.get(Outbox, failed_id)
            assert row is not None
            row.consulta_id = consulta.id
        assert Sender.from_runtime(runtime).deliver(failed_id, worker="w") == Outcome.FAILED

        failed = _outbox_json(capsys, "--failed")
        assert [(r["id"], r["consulta"], r["recipient"], r["attempts"]) for r in failed] == [
            (failed_id, "CONS-2024-000007", "nadie@example.pe", 1)
        ]
        assert "550" in str(failed[0]["last_error"])
        assert [r["id"] for r in _outbox_json(capsys)] == [pending_id]

        assert main(["outbox", "--failed"]) == 0
        table = capsys.readouterr().out
        assert "CONS-2024-000007" in table and "consulta_recibida" in table

        assert main(["outbox", "--retry", str(failed_id)]) == 0
        assert "1 row(s) back in the queue" in capsys.readouterr().out
        assert _outbox_json(capsys, "--failed") == []
        with runtime.sessions() as session:
            row = session.get(Outbox, failed_id)
            assert row is not None and (row.status, row.attempts) == (OutboxStatus.PENDING, 0)
        assert main(["outbox", "--retry", str(pending_id)]) == 1
    finally:
        close_runtime()


@pytest.mark.parametrize("command", [["worker", "--help"], ["outbox", "--help"]])
def test_worker_and_outbox_commands_explain_themselves(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(command)
    assert exit_info.value.code == 0
    assert "usage: consultas " + command[0] in capsys.readouterr().out


def test_retry_puts_back_every_row_named_by_repeated_or_listed_ids(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from consultas.db import make_engine, make_sessionmaker

    monkeypatch.setenv("CONSULTAS_DATABASE_URL", db_url)
    monkeypatch.setenv("CONSULTAS_SECRET_KEY", "test-secret")
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    try:
        ids = queue_mails(sessions, 5, key="retry")
        with sessions.begin() as session:
            for row_id in ids:
                row = session.get(Outbox, row_id)
                assert row is not None
                row.status, row.attempts, row.last_error = OutboxStatus.FAILED, 3, "550 refused"

        assert main(["outbox", "--retry", str(ids[0]), "--retry", str(ids[1])]) == 0
        assert "2 row(s) back in the queue" in capsys.readouterr().out
        assert main(["outbox", "--retry", str(ids[2]), str(ids[3])]) == 0
        assert "2 row(s) back in the queue" in capsys.readouterr().out
        # A row that is not failed is named; the failed one given with it is still put back.
        assert main(["outbox", "--retry", str(ids[0]), "--retry", str(ids[4])]) == 1
        captured = capsys.readouterr()
        assert f"outbox row {ids[0]} is not failed" in captured.err
        assert "1 row(s) back in the queue" in captured.out

        with sessions() as session:
            rows = [session.get(Outbox, row_id) for row_id in ids]
            assert [(r.status, r.attempts) for r in rows if r] == [(OutboxStatus.PENDING, 0)] * 5
    finally:
        engine.dispose()

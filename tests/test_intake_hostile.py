"""Hostile mails (issue 16) through `consultas parse` and the service's Maildir path.

Each mail of ``tests.hostile_mails`` is either turned into one JSON object / processed, or refused
with one clear line / quarantined; never a traceback, and the good mail after it is confirmed.
The big mails are generated once per module.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.cli import main
from consultas.clock import FixedClock
from consultas.context import ServiceConfig
from consultas.mime import MAX_HEADER_FIELDS, MAX_MIME_DEPTH
from consultas.models import Attachment, Consulta, Message, MessageKind, Outbox
from intake.imap_poller import poll_once
from intake.maildir_source import PROCESSED_FOLDER, QUARANTINE_FOLDER, Maildir, poll_maildir_once
from tests.e2e_support import written_mails
from tests.hostile_mails import HOSTILE_MAILS, LONG_LINE_BYTES, SENDER
from tests.intake_imap_support import append_raw, imap_settings
from tests.intake_support import citizen_mail
from tests.routing_support import CITIZEN, CONFIG, MAILBOX, NOW
from tests.servers.dovecot import DovecotServer

#: What the service does with each hostile mail: admit it (the requisitos are in it) or quarantine it,
#: and the words the refusal's reason carries.
EXPECTED: dict[str, tuple[str, str]] = {
    "rfc2231_nul_charset": ("admitted", ""),
    "rfc2231_nul_bytes": ("admitted", ""),
    "date_overflow": ("admitted", ""),
    "deep_multipart": ("quarantined", f"nested more than {MAX_MIME_DEPTH} levels"),
    "long_line": ("admitted", ""),
    "many_headers": ("quarantined", f"more than {MAX_HEADER_FIELDS} header fields"),
    "big_attachment": ("admitted", ""),
    "nul_body": ("admitted", ""),
    "binary_file": ("quarantined", "no headers"),
    "empty_file": ("quarantined", "empty"),
}
assert set(EXPECTED) == set(HOSTILE_MAILS)
#: How long `consultas serve` may take over all of them (the 40 MB mail is most of it).
SERVE_DEADLINE_S = 120.0


@pytest.fixture(scope="module")
def hostile() -> dict[str, bytes]:
    return {name: generate() for name, generate in HOSTILE_MAILS.items()}


@pytest.fixture(scope="module")
def hostile_files(hostile: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    paths = {}
    for name, raw in hostile.items():
        paths[name] = folder / f"{name}.eml"
        paths[name].write_bytes(raw)
    return paths


# consultas parse ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(HOSTILE_MAILS))
def test_parse_prints_one_json_object_or_one_clear_line(
    name: str, hostile_files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["parse", str(hostile_files[name])])

    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    verdict, reason = EXPECTED[name]
    if verdict == "admitted":
        assert code == 0, err
        result = json.loads(out)
        assert result["sender"] == SENDER and result["missing"] == [] and result["invalid"] == []
        assert "\x00" not in json.dumps(result, ensure_ascii=False).replace("\\u0000", "\x00")
    else:
        assert code != 0 and out == ""
        [line] = err.splitlines()
        assert line.startswith("consultas parse: error: not a mail: ") and reason in line


def test_parse_keeps_what_the_hostile_mails_say(
    hostile_files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    def parsed(name: str) -> dict[str, Any]:
        assert main(["parse", str(hostile_files[name])]) == 0
        result: dict[str, Any] = json.loads(capsys.readouterr().out)
        return result

    [pdf] = parsed("rfc2231_nul_charset")["attachments"]
    assert pdf["filename"] == "facturañ.pdf"
    [pdf] = parsed("rfc2231_nul_bytes")["attachments"]
    assert pdf["filename"] == "factura.pdf"
    [big] = parsed("big_attachment")["attachments"]
    assert big == {"filename": "grande.pdf", "content_type": "application/pdf", "size": 40 * 1024 * 1024}
    question = parsed("long_line")["requisitos"]["question"]
    assert question.startswith("¿Cómo registro") and len(question) > LONG_LINE_BYTES - 100
    nul = parsed("nul_body")
    assert nul["subject"] == "Consulta con NUL"
    assert nul["requisitos"]["question"].startswith("¿Cómo registro")


# the service's Maildir path -----------------------------------------------------------------------


def poll(sessions: sessionmaker[Session], maildir: Maildir) -> None:
    poll_maildir_once(sessions, maildir, mailbox=MAILBOX, config=CONFIG, clock=FixedClock(NOW))


@pytest.fixture
def maildir(tmp_path: Path) -> Iterator[Maildir]:
    yield Maildir(tmp_path / "maildir")


@pytest.mark.parametrize("name", list(HOSTILE_MAILS))
def test_the_maildir_source_processes_or_quarantines_and_confirms_the_next_mail(
    name: str, hostile: dict[str, bytes], sessions: sessionmaker[Session], maildir: Maildir
) -> None:
    maildir.deliver(hostile[name], "1-hostile.eml")
    maildir.deliver(citizen_mail(), "2-good.eml")

    poll(sessions, maildir)

    verdict, reason = EXPECTED[name]
    folder = PROCESSED_FOLDER if verdict == "admitted" else QUARANTINE_FOLDER
    assert sorted(p.name for p in (maildir.root / folder / "cur").iterdir())[0] == "1-hostile.eml:2,S"
    assert not list(maildir.new.iterdir())
    with sessions() as session:
        confirmed = {
            row.primary_recipient
            for row in session.scalars(select(Outbox).where(Outbox.template == "consulta_recibida"))
        }
        assert CITIZEN in confirmed
        if verdict == "admitted":
            assert SENDER in confirmed
            numbered = session.scalars(select(Consulta.reply_address).where(Consulta.number.is_not(None)))
            assert sorted(str(address) for address in numbered) == sorted({CITIZEN, SENDER})
        else:
            [kept] = session.scalars(select(Message).where(Message.kind == MessageKind.QUARANTINED))
            assert kept.raw == hostile[name] and reason in (kept.error or "")


def test_nul_bytes_are_stored_without_them_on_every_database(
    hostile: dict[str, bytes], sessions: sessionmaker[Session], maildir: Maildir
) -> None:
    for name in ("nul_body", "rfc2231_nul_bytes", "rfc2231_nul_charset"):
        maildir.deliver(hostile[name], f"{name}.eml")
    poll(sessions, maildir)

    with sessions() as session:
        messages = {m.message_id: m for m in session.scalars(select(Message))}
        nul = messages["<nul-body@hostil.example.pe>"]
        assert nul.raw == hostile["nul_body"]  # the bytes as received are kept
        assert nul.subject == "Consulta con NUL" and "textoconnulos" in (nul.body_text or "")
        assert sorted(session.scalars(select(Attachment.filename))) == ["factura.pdf", "facturañ.pdf"]
        [consulta] = session.scalars(select(Consulta).where(Consulta.id == nul.consulta_id))
        assert consulta.question is not None and "\x00" not in consulta.question


def test_a_big_attachment_is_listed_with_its_size_and_not_kept(
    hostile: dict[str, bytes], sessions: sessionmaker[Session], maildir: Maildir
) -> None:
    maildir.deliver(hostile["big_attachment"], "big.eml")
    poll(sessions, maildir)

    with sessions() as session:
        [attachment] = session.scalars(select(Attachment))
        assert attachment.filename == "grande.pdf" and attachment.size == 40 * 1024 * 1024
        assert attachment.content is None


# the real commands, as processes ------------------------------------------------------------------


def _environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSULTAS_")}
    env["CONSULTAS_VAR_DIR"] = str(tmp_path / "var")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    return env


@pytest.mark.slow
@pytest.mark.parametrize("name", list(HOSTILE_MAILS))
def test_the_parse_command_as_a_process(name: str, hostile_files: dict[str, Path], tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "parse", str(hostile_files[name])],
        env=_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert "Traceback" not in result.stdout + result.stderr
    if EXPECTED[name][0] == "admitted":
        assert result.returncode == 0 and isinstance(json.loads(result.stdout), dict), result.stderr
    else:
        assert result.returncode == 1 and result.stdout == ""
        assert len(result.stderr.splitlines()) == 1 and EXPECTED[name][1] in result.stderr


@pytest.mark.slow
def test_the_parse_command_prints_the_same_json_to_a_terminal_that_cannot_show_the_mails_letters(
    hostile_files: dict[str, Path], tmp_path: Path
) -> None:
    def parse(**env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app.cli", "parse", str(hostile_files["rfc2231_nul_charset"])],
            env={**_environment(tmp_path), **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    utf8, ascii_only = parse(PYTHONIOENCODING="utf-8"), parse(PYTHONIOENCODING="ascii")

    assert ascii_only.returncode == 0 and "Traceback" not in ascii_only.stderr
    assert json.loads(ascii_only.stdout) == json.loads(utf8.stdout)
    assert "facturañ.pdf" in utf8.stdout and "factura\\u00f1.pdf" in ascii_only.stdout


def _wait(condition: Callable[[], bool], process: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + SERVE_DEADLINE_S
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        if condition():
            return
        time.sleep(0.2)  # polling folders the other process writes, with a deadline
    pytest.fail(f"{what} within {SERVE_DEADLINE_S} s")


def _confirmed(outbox: Path, address: str) -> bool:
    for path in written_mails(outbox):
        mail = message_from_bytes(path.read_bytes(), policy=policy.default)
        if mail["To"] == address and "Su consulta ha sido registrada" in str(mail["Subject"]):
            return True
    return False


@pytest.mark.slow
def test_serve_processes_or_quarantines_every_hostile_mail_and_confirms_the_next_one(
    hostile_files: dict[str, Path], tmp_path: Path
) -> None:
    env = _environment(tmp_path)
    upgrade = subprocess.run(
        [sys.executable, "-m", "app.cli", "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    maildir = Maildir(tmp_path / "var" / "maildir")
    for name, path in hostile_files.items():
        maildir.deliver(path.read_bytes(), f"{name}.eml")
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait(lambda: not list(maildir.new.iterdir()), process, "the hostile mails were not all taken")
        maildir.deliver(citizen_mail(), "good.eml")
        _wait(lambda: _confirmed(tmp_path / "var" / "outbox", CITIZEN), process, "no confirmation")
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)

    assert process.returncode == 0, output
    assert "Traceback" not in output
    for folder, verdict in ((PROCESSED_FOLDER, "admitted"), (QUARANTINE_FOLDER, "quarantined")):
        moved = sorted(p.name for p in (maildir.root / folder / "cur").iterdir())
        expected = [f"{n}.eml:2,S" for n, (v, _) in EXPECTED.items() if v == verdict]
        assert moved == sorted(expected + (["good.eml:2,S"] if verdict == "admitted" else []))
    assert _confirmed(tmp_path / "var" / "outbox", SENDER)


def test_the_readme_states_the_refusal_limits_the_parser_applies() -> None:
    from consultas import mime

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("**Hostile mail.**") :].split("\n- ", 1)[0]
    for limit in (mime.MAX_MIME_DEPTH, mime.MAX_MIME_PARTS, mime.MAX_HEADER_FIELDS):
        assert f"**{limit:,}**" in section
    assert f"**{mime.MAX_HEADER_FIELD_CHARS:,}** characters" in section
    assert f"{mime.MAX_MESSAGE_ID_CHARS} characters" in section
    assert f"over {mime.MAX_ADDRESS_CHARS} characters" in section
    assert f"first {mime.MAX_HTML_TO_TEXT_CHARS // (1024 * 1024)} MiB" in section


# the IMAP source (production's) -----------------------------------------------------------------


@pytest.mark.slow
async def test_the_imap_poller_processes_or_quarantines_every_hostile_mail_dovecot_accepts(
    hostile: dict[str, bytes], dovecot: DovecotServer, db_url: str, sessions: sessionmaker[Session],
    *, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.INFO)
    settings = imap_settings(dovecot, db_url, tmp_path)
    appended = []
    for name, raw in hostile.items():
        try:
            append_raw(dovecot, raw)
        except RuntimeError:  # Dovecot refuses some (an empty mail, NUL bytes): they never reach us
            continue
        appended.append(name)
    dovecot.deliver(citizen_mail(), MAILBOX)

    result = await poll_once(settings, sessions, ServiceConfig.from_settings(settings), FixedClock(NOW))

    admitted = [n for n in appended if EXPECTED[n][0] == "admitted"]
    assert result.counts["quarantined"] == len(appended) - len(admitted)
    assert dovecot.message_count(MAILBOX, "INBOX") == 0
    assert dovecot.message_count(MAILBOX, "Procesados") == len(admitted) + 1
    with sessions() as session:
        confirmed = set(
            session.scalars(select(Outbox.primary_recipient).where(Outbox.template == "consulta_recibida"))
        )
    assert CITIZEN in confirmed and (SENDER in confirmed or not admitted)
    # What the service logs at its default level carries no traceback.
    assert [r.getMessage() for r in caplog.records if r.exc_info and r.levelno >= logging.INFO] == []

"""The bot as operators run it: `consultas bot` and `consultas serve` in subprocesses, set up only
through CONSULTAS_* variables, talking to the fake Bot API over real HTTP, stopped with SIGTERM.

The last test follows one consulta from the chat to the Red and back: created by the bot conversation
in `consultas serve`, routed to the órgano chosen, answered by its titular with a mail dropped in the
served Maildir, and the answer relayed to the chat (and mailed). Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from consultas.models import Channel, Consulta, ConsultaStatus
from routing.reply_address import make_reply_address
from tests.bot_support import DNI, EMAIL, Citizen, buttons, fill_form
from tests.e2e_support import written_mails
from tests.routing_support import DGPMI_TITULAR, EXAMPLE_RED, MAILBOX, red_reply
from tests.servers.fake_bot_api import FakeBotApi

ROOT = Path(__file__).resolve().parents[1]
SECRET_KEY = "bot-process-test-secret"
#: Start-up (imports, getMe, first getUpdates), a relayed answer, a clean stop: generous deadlines.
READY_S = 30.0
RELAY_S = 30.0
#: The admission tells the workers at once; the outbox sweep only takes rows 30 s old or more.
HINTED_S = 10.0
STOP_S = 30.0
CHAT = 5556001
NUMBER = re.compile(r"CONS-\d{4}-\d{6}")
ON_POSTGRESQL = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


def consultas_env(tmp_path: Path, api: FakeBotApi, **extra: str) -> dict[str, str]:
    """The process environment: no CONSULTAS_* of the developer, the fake Bot API, a fresh var dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSULTAS_")}
    env.update(
        PYTHONPATH=str(ROOT),
        CONSULTAS_VAR_DIR=str(tmp_path / "var"),
        CONSULTAS_TELEGRAM_TOKEN=api.token,
        CONSULTAS_TELEGRAM_API_URL=api.base_url,
        CONSULTAS_LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


def consultas(*args: str, env: dict[str, str]) -> None:
    """Run a short `consultas` command to completion; it must succeed."""
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


class Service:
    """A long-running `consultas` command; its output goes to a file (never a pipe that could fill)."""

    def __init__(self, command: str, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", command],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=log.parent,
            )

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> None:
        assert self.process.poll() is None, f"exited with {self.process.returncode}:\n{self.output()}"

    def wait_polling(self, api: FakeBotApi) -> None:
        """Wait until the process polls the fake Bot API (or fail if it dies first)."""
        deadline = time.monotonic() + READY_S
        while not api.calls("getUpdates"):
            self.alive()
            if time.monotonic() > deadline:
                pytest.fail(f"no getUpdates within {READY_S} s:\n{self.output()}")
            try:
                api.wait_for_calls("getUpdates", timeout=0.5)
            except AssertionError:
                continue

    def stop(self) -> tuple[int, float]:
        """SIGTERM, then wait for the exit: (exit code, seconds taken)."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOP_S} s after SIGTERM:\n{self.output()}")
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


Start = Callable[[str, dict[str, str]], Service]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """``start(command, env)`` -> a running Service; anything left running is killed at teardown."""
    started: list[Service] = []

    def factory(command: str, env: dict[str, str]) -> Service:
        service = Service(command, env, tmp_path / f"{command}-{len(started)}.log")
        started.append(service)
        return service

    yield factory
    for service in started:
        service.kill()


def stopped_cleanly(service: Service) -> str:
    code, took = service.stop()
    output = service.output()
    assert code == 0, output
    assert took < STOP_S
    assert "Traceback" not in output, output
    return output


def drop_mail(var_dir: Path, raw: bytes, name: str) -> None:
    """Deliver ``raw`` to the served Maildir as an MTA does: written in tmp/, renamed into new/."""
    maildir = var_dir / "maildir"
    for folder in ("tmp", "new", "cur"):
        (maildir / folder).mkdir(parents=True, exist_ok=True)
    (maildir / "tmp" / name).write_bytes(raw)
    os.replace(maildir / "tmp" / name, maildir / "new" / name)


def wait_for_mail(outbox: Path, service: Service, *needles: str, within: float = RELAY_S) -> EmailMessage:
    """The first .eml in ``outbox`` whose plain text contains every needle (deadline ``within``)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        service.alive()
        for path in written_mails(outbox):
            mail = message_from_bytes(path.read_bytes(), policy=policy.default)
            assert isinstance(mail, EmailMessage)
            body = mail.get_body(("plain",))
            text = body.get_content() if isinstance(body, EmailMessage) else ""
            if all(needle in text for needle in needles):
                return mail
        time.sleep(0.1)  # another process writes the folder: poll it, with a deadline
    pytest.fail(f"no mail with {needles} in {outbox} within {within} s")


async def register_consulta(citizen: Citizen) -> str:
    """The whole form, confirmed; return the consulta number the chat was told."""
    summary = await fill_form(citizen)
    assert buttons(summary) == ["confirmar", "corregir", "cancelar"]
    [registered] = await citizen.press("confirmar")
    found = NUMBER.search(registered["text"])
    assert found is not None, registered["text"]
    assert "registrada" in registered["text"] and EMAIL in registered["text"]
    return found.group()


@ON_POSTGRESQL
async def test_consultas_bot_alone_runs_the_whole_form_and_stops_cleanly_on_sigterm(
    fake_bot_api: FakeBotApi,
    start: Start,
    db_url: str,
    sessions: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    # Given a migrated PostgreSQL with the Red registry, and `consultas bot` configured by environment
    env = consultas_env(
        tmp_path, fake_bot_api, CONSULTAS_DATABASE_URL=db_url, CONSULTAS_SECRET_KEY=SECRET_KEY
    )
    consultas("red", "import", str(EXAMPLE_RED), env=env)
    bot = start("bot", env)
    bot.wait_polling(fake_bot_api)
    citizen = Citizen(fake_bot_api, CHAT)

    # When a citizen sends /start and completes the form
    welcome, entidad = await citizen.say("/start", expect=2)
    number = await register_consulta(citizen)
    [estado] = await citizen.say(f"/estado {number}")

    # Then they saw the welcome, the first question with its buttons, their number and its status
    assert "Sistema de Atención de Consultas del MEF" in welcome["text"]
    assert buttons(entidad) == ["entidad:si", "entidad:no"]
    assert number in estado["text"] and "asignada" in estado["text"]
    # And SIGTERM stops the bot with exit code 0, its log free of the token and the citizen's DNI
    output = stopped_cleanly(bot)
    assert "telegram bot polling" in output
    assert fake_bot_api.token not in output and DNI not in output
    # And the consulta is the Telegram one, routed to the órgano chosen, tied to the chat
    with sessions() as session:
        [consulta] = session.scalars(select(Consulta)).all()
    assert consulta.number == number and consulta.channel == Channel.TELEGRAM
    assert consulta.telegram_chat_id == CHAT
    assert (consulta.status, consulta.organo_code) == (ConsultaStatus.ASIGNADA, "DGPMI")


async def test_consultas_serve_with_a_token_also_runs_the_bot(
    fake_bot_api: FakeBotApi, start: Start, tmp_path: Path
) -> None:
    # Given `consultas serve` on its embedded defaults (SQLite, Maildir, no IMAP) plus a bot token
    env = consultas_env(tmp_path, fake_bot_api)
    consultas("db", "upgrade", env=env)
    serve = start("serve", env)
    serve.wait_polling(fake_bot_api)

    # When a citizen sends /start
    welcome, entidad = await Citizen(fake_bot_api, CHAT).say("/start", expect=2)

    # Then the bot inside serve answers with the form's first question
    assert "Sistema de Atención de Consultas del MEF" in welcome["text"]
    assert "entidad" in entidad["text"] and buttons(entidad) == ["entidad:si", "entidad:no"]
    # And serve ran the Maildir intake, the bot and the web app together, and stops cleanly on SIGTERM
    output = stopped_cleanly(serve)
    assert "consultas serve: maildir, telegram-bot, web;" in output
    assert "consultas serve: stopped" in output
    assert fake_bot_api.token not in output


@ON_POSTGRESQL
async def test_a_red_answer_to_a_consulta_made_in_the_chat_reaches_the_chat(
    fake_bot_api: FakeBotApi,
    start: Start,
    db_url: str,
    sessions: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    # Given `consultas serve` with the Red registry file, a bot token and the Maildir inbox
    env = consultas_env(
        tmp_path,
        fake_bot_api,
        CONSULTAS_DATABASE_URL=db_url,
        CONSULTAS_SECRET_KEY=SECRET_KEY,
        CONSULTAS_RED_FILE=str(EXAMPLE_RED),
    )
    var_dir = Path(env["CONSULTAS_VAR_DIR"])
    serve = start("serve", env)
    serve.wait_polling(fake_bot_api)
    citizen = Citizen(fake_bot_api, CHAT)
    # And a consulta registered in the chat on DGPMI's tema, so routed to DGPMI's titular
    number = await register_consulta(citizen)
    with sessions() as session:
        consulta = session.scalars(select(Consulta).where(Consulta.number == number)).one()
        assert (consulta.status, consulta.organo_code) == (ConsultaStatus.ASIGNADA, "DGPMI")
    # And its confirmation is mailed at once, not at the next outbox sweep
    confirmation = wait_for_mail(var_dir / "outbox", serve, number, "ha sido admitida", within=HINTED_S)
    assert confirmation["To"] == EMAIL
    before = len(fake_bot_api.sent(CHAT))

    # When the titular replies to the routed mail's signed Reply-To (with the quoted history)
    answer = "Registre el formato 12-B en el aplicativo del Banco de Inversiones con su usuario de la OPMI."
    reply = red_reply(
        sender=DGPMI_TITULAR,
        to=make_reply_address(MAILBOX, number, SECRET_KEY.encode()),
        subject=f"RE: [{number}] Consulta técnica asignada",
        body=f"{answer}\n\nEl mié, 12 mar 2025 a las 10:00, Consultas MEF escribió:\n> {DNI}",
    )
    drop_mail(var_dir, reply, "respuesta-dgpmi.eml")

    # Then the chat receives the answer with the number, as plain text, without the quoted history
    sent = await asyncio.to_thread(fake_bot_api.wait_for_sent, CHAT, before + 1, RELAY_S)
    [relayed] = sent[before:]
    assert relayed["method"] == "sendMessage" and "parse_mode" not in relayed
    assert f"Respuesta a su consulta {number}" in relayed["text"]
    assert "Dirección General de Programación Multianual de Inversiones" in relayed["text"]
    assert answer in relayed["text"]
    assert "escribió" not in relayed["text"] and DNI not in relayed["text"]
    # And the citizen's mailbox gets the same answer
    mail = wait_for_mail(var_dir / "outbox", serve, answer)
    assert mail["To"] == EMAIL and number in str(mail["Subject"])
    # And /estado now says it was answered; serve stops cleanly
    [estado] = await citizen.say(f"/estado {number}")
    assert "respondida" in estado["text"].lower()
    output = stopped_cleanly(serve)
    assert fake_bot_api.token not in output and DNI not in output
    with sessions() as session:
        answered = session.scalars(select(Consulta).where(Consulta.number == number)).one()
    assert answered.status == ConsultaStatus.RESPONDIDA and answered.answered_by == "DGPMI"

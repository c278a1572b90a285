"""Relaying the Red's answer to the chat: split to Telegram's limit, documents, errors translated."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.store import admit_flow
from consultas.clock import FixedClock
from consultas.errors import PermanentError, TransientError
from consultas.mailer import OutgoingAttachment
from consultas.models import Channel, Consulta, Outbox, OutboxStatus
from consultas.requisitos import Requisitos
from consultas.settings import telegram_file_url as file_url
from routing.answer import send_answer
from tests.bot_support import DNI, EMAIL, PHONE, QUESTION
from tests.routing_support import CONFIG, NOW, load_example_red
from tests.servers.fake_bot_api import FakeBotApi
from workers.mail import Sender
from workers.telegram import (
    MAX_MESSAGE_LENGTH,
    TelegramTransport,
    send_telegram_row,
    send_telegram_row_sync,
    split_message,
)
from workers.transport import FileTransport

CHAT = 5553001
PDF = b"%PDF-1.4 respuesta\n"


def _answer(paragraphs: int = 12, size: int = 499) -> str:
    return "\n\n".join(f"Párrafo {i}: " + "x" * size for i in range(paragraphs))


def test_a_long_answer_is_split_on_paragraphs_within_telegrams_limit() -> None:
    text = _answer()  # about 6100 characters

    pieces = split_message(text)

    assert len(pieces) == 2
    assert all(len(piece) <= MAX_MESSAGE_LENGTH for piece in pieces)
    assert "\n\n".join(pieces) == text
    assert all(piece.startswith("Párrafo") for piece in pieces)


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("", 10, []),
        ("corto", 10, ["corto"]),
        ("uno dos\ntres cuatro", 10, ["uno dos", "tres", "cuatro"]),
        ("abcdefghijkl", 5, ["abcde", "fghij", "kl"]),
        ("😀😀😀", 4, ["😀😀", "😀"]),  # Telegram counts UTF-16 code units
    ],
)
def test_split_message_cuts_at_the_finest_boundary_needed(text: str, limit: int, expected: list[str]) -> None:
    assert split_message(text, limit) == expected


def test_the_file_url_goes_with_the_api_url() -> None:
    assert file_url("https://api.telegram.org/bot") == "https://api.telegram.org/file/bot"
    assert file_url("http://127.0.0.1:8081/bot/") == "http://127.0.0.1:8081/file/bot"


async def test_an_answer_of_6000_characters_reaches_the_chat_as_two_messages_and_a_document(
    fake_bot_api: FakeBotApi,
) -> None:
    text = _answer()

    await send_telegram_row(
        {"chat_id": CHAT, "text": text},
        [("respuesta.pdf", "application/pdf", PDF)],
        token=fake_bot_api.token,
        api_url=fake_bot_api.base_url,
    )

    sent = fake_bot_api.sent(CHAT)
    assert [s["method"] for s in sent] == ["sendMessage", "sendMessage", "sendDocument"]
    assert "\n\n".join(s["text"] for s in sent[:2]) == text
    assert "parse_mode" not in sent[0]  # the Red's text is shown literally
    assert sent[2]["document"] == {
        "filename": "respuesta.pdf",
        "content": PDF,
        "mime_type": "application/pdf",
    }


@pytest.mark.parametrize(
    ("code", "description", "retry_after", "error"),
    [
        (403, "Forbidden: bot was blocked by the user", None, PermanentError),
        (400, "Bad Request: chat not found", None, PermanentError),
        (502, "Bad Gateway", None, TransientError),
        (500, "Internal Server Error", None, TransientError),
        pytest.param(
            429,
            "Too Many Requests: retry after 7",
            7,
            TransientError,
            # PTB 22 itself warns about RetryAfter.retry_after's future type while building the error.
            marks=pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning"),
        ),
    ],
)
async def test_telegram_errors_become_transient_or_permanent(
    fake_bot_api: FakeBotApi, code: int, description: str, retry_after: int | None, error: type[Exception]
) -> None:
    fake_bot_api.fail_next("sendMessage", code, description, retry_after=retry_after)

    with pytest.raises(error) as raised:
        await send_telegram_row(
            {"chat_id": CHAT, "text": "Hola"}, [], fake_bot_api.token, fake_bot_api.base_url
        )

    assert fake_bot_api.token not in str(raised.value)
    assert fake_bot_api.sent(CHAT) == []


async def test_a_rejected_token_is_transient_and_never_quoted(fake_bot_api: FakeBotApi) -> None:
    wrong = "7000001:AAWrongTokenWrongTokenWrongToken000"

    with pytest.raises(TransientError) as raised:
        await send_telegram_row({"chat_id": CHAT, "text": "Hola"}, [], wrong, fake_bot_api.base_url)

    assert wrong not in str(raised.value) and raised.value.__cause__ is None


def test_the_outbox_worker_relays_a_red_answer_to_the_telegram_chat(
    fake_bot_api: FakeBotApi, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    # Given a consulta registered from a chat and answered by the Red with a long text and a PDF
    requisitos = Requisitos(
        full_name="Ana María Quispe Huamán", document_type="DNI", document_number=DNI,
        email=EMAIL, phone=PHONE, question=QUESTION,
    )  # fmt: skip
    with sessions.begin() as session:
        load_example_red(session)
    admit_flow(sessions, requisitos, flow_id="f1", chat_id=CHAT, tema="DGPMI", config=CONFIG, now=NOW)
    body = _answer()
    with sessions.begin() as session:
        consulta = session.scalars(select(Consulta)).one()
        send_answer(
            session, consulta, body=body,
            attachments=[OutgoingAttachment("respuesta.pdf", "application/pdf", PDF)],
            answered_by="DGPMI", config=CONFIG, now=NOW,
        )  # fmt: skip
        [row_id] = session.scalars(select(Outbox.id).where(Outbox.channel == Channel.TELEGRAM)).all()
    sender = Sender(
        sessions=sessions, transport=FileTransport(tmp_path / "outbox"), clock=FixedClock(NOW),
        max_attempts=3, telegram=TelegramTransport(fake_bot_api.token, fake_bot_api.base_url),
    )  # fmt: skip

    # When the outbox worker sends the Telegram row
    sender.deliver(row_id, worker="test")

    # Then the chat has the whole answer in pieces within the limit, then the document
    sent = fake_bot_api.sent(CHAT)
    texts = [s["text"] for s in sent if s["method"] == "sendMessage"]
    assert len(texts) >= 2 and all(len(t) <= MAX_MESSAGE_LENGTH for t in texts)
    assert body in "\n\n".join(texts)
    assert [s["document"]["filename"] for s in sent if s["method"] == "sendDocument"] == ["respuesta.pdf"]
    with sessions() as session:
        assert session.get(Outbox, row_id).status == OutboxStatus.SENT  # type: ignore[union-attr]


def test_the_sync_wrapper_sends_from_a_thread_without_an_event_loop(fake_bot_api: FakeBotApi) -> None:
    send_telegram_row_sync({"chat_id": CHAT, "text": "Hola"}, [], fake_bot_api.token, fake_bot_api.base_url)

    assert [s["text"] for s in fake_bot_api.sent(CHAT)] == ["Hola"]

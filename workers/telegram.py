"""The Telegram transport: send one Telegram outbox row (the Red's answer relayed to the chat), text
split to Telegram's limit, then the attachments as documents.

The transport beside SMTP (``workers.transport``) that the outbox sender (``workers.mail``) uses for
Telegram rows. Telegram errors are translated once, here,
into ``TransientError`` (retry later) or ``PermanentError`` (record and stop). The relayed text
is plain (no parse mode), so whatever the Red wrote is shown literally.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from telegram import Bot
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.request import HTTPXRequest

from consultas.errors import PermanentError, TransientError
from consultas.settings import telegram_file_url

#: Telegram's maximum message length (characters counted as UTF-16 code units).
MAX_MESSAGE_LENGTH = 4096
#: Every call has a timeout (seconds); a long answer is a handful of calls.
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 30.0
WRITE_TIMEOUT_S = 60.0  # documents up to the attachment cap


class _Document(Protocol):
    @property
    def filename(self) -> str: ...
    @property
    def content_type(self) -> str: ...
    @property
    def content(self) -> bytes: ...


DocumentLike = tuple[str, str, bytes] | _Document


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def split_message(text: str, limit: int = MAX_MESSAGE_LENGTH) -> list[str]:
    """Split ``text`` into pieces of at most ``limit``, at paragraph, then line, then word boundaries."""
    text = text.strip()
    if not text:
        return []
    return [piece for piece in _pack(text, limit, ("\n\n", "\n", " ")) if piece.strip()]


def _pack(text: str, limit: int, separators: tuple[str, ...]) -> list[str]:
    if _utf16_length(text) <= limit:
        return [text]
    if not separators:
        return list(_hard_cut(text, limit))
    separator, finer = separators[0], separators[1:]
    pieces: list[str] = []
    current = ""
    for part in text.split(separator):
        candidate = f"{current}{separator}{part}" if current else part
        if _utf16_length(candidate) <= limit:
            current = candidate
            continue
        if current:
            pieces.append(current)
        if _utf16_length(part) <= limit:
            current = part
        else:
            pieces.extend(_pack(part, limit, finer))
            current = ""
    if current:
        pieces.append(current)
    return [piece.strip("\n") for piece in pieces]


def _hard_cut(text: str, limit: int) -> Iterator[str]:
    current = ""
    for char in text:
        if _utf16_length(current + char) > limit:
            yield current
            current = ""
        current += char
    if current:
        yield current


def _document_parts(document: DocumentLike) -> tuple[str, str, bytes]:
    if isinstance(document, tuple):
        return document
    return document.filename, document.content_type, document.content


async def send_telegram_row(
    payload: dict[str, Any],
    documents: Sequence[DocumentLike],
    token: str,
    api_url: str,
) -> None:
    """Send ``payload["text"]`` (split) and ``documents`` to ``payload["chat_id"]``.

    Raises TransientError (network, 5xx, 429, bad token) or PermanentError (chat not found, bot
    blocked, request refused). Not exactly-once: a retry after a partial send repeats the pieces
    already delivered (as with SMTP).
    """
    chat_id = int(payload["chat_id"])
    pieces = split_message(str(payload.get("text") or ""))
    request = HTTPXRequest(
        connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S, write_timeout=WRITE_TIMEOUT_S
    )
    bot = Bot(token, base_url=api_url, base_file_url=telegram_file_url(api_url), request=request)
    try:
        async with bot:
            for piece in pieces:
                await bot.send_message(chat_id, piece)
            for document in documents:
                filename, _content_type, content = _document_parts(document)
                await bot.send_document(chat_id, document=content, filename=filename)
    except InvalidToken:
        # PTB's message quotes the token: drop it (and the chained exception) from what is logged.
        raise TransientError("Telegram rejected the bot token (check CONSULTAS_TELEGRAM_TOKEN)") from None
    except RetryAfter as exc:
        raise TransientError(f"Telegram asked to slow down: {exc.message}") from exc
    except Forbidden as exc:
        raise PermanentError(f"Telegram refused the chat (bot blocked?): {exc.message}") from exc
    except (BadRequest, ChatMigrated) as exc:
        raise PermanentError(f"Telegram refused the message: {exc.message}") from exc
    except (NetworkError, Conflict) as exc:
        raise TransientError(f"Telegram unreachable or busy: {exc.message}") from exc
    except TelegramError as exc:
        raise TransientError(f"Telegram error: {exc.message}") from exc


def send_telegram_row_sync(
    payload: dict[str, Any], documents: Sequence[DocumentLike], token: str, api_url: str
) -> None:
    """``send_telegram_row`` for synchronous callers (a worker thread without an event loop)."""
    asyncio.run(send_telegram_row(payload, documents, token, api_url))


@dataclass(frozen=True)
class TelegramTransport:
    """Sends Telegram outbox rows with the bot's token; safe to share between threads."""

    token: str
    api_url: str

    def send(self, payload: dict[str, Any], documents: Sequence[DocumentLike]) -> None:
        """Send one row (see ``send_telegram_row``); PermanentError when no token is configured."""
        if not self.token:
            raise PermanentError("CONSULTAS_TELEGRAM_TOKEN is not set: Telegram messages cannot be sent")
        send_telegram_row_sync(payload, documents, self.token, self.api_url)

"""Wiring of the Telegram bot: the Application, its persistence, flood control, errors, and running it.

``build_application`` assembles handlers from ``bot.conversation``; ``running`` starts polling
(default: no public HTTPS needed) or a webhook (``CONSULTAS_TELEGRAM_WEBHOOK_URL``); ``run_bot``
is what ``consultas serve`` and ``consultas bot`` run until told to stop.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import importlib.util
import logging
import time
import traceback
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from sqlalchemy.orm import Session, sessionmaker
from telegram import LinkPreviewOptions, Update
from telegram.constants import ParseMode
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    ApplicationHandlerStop,
    ContextTypes,
    Defaults,
    PersistenceInput,
    PicklePersistence,
    TypeHandler,
)

from bot import texts
from bot.conversation import (
    DEFAULT_CONVERSATION_TIMEOUT_S,
    Form,
    Services,
    form_handler,
    other_handlers,
)
from bot.estado import EstadoLookup, estado_handler
from bot.flood import FloodGuard, Verdict
from consultas.clock import Clock, SystemClock
from consultas.context import ServiceConfig
from consultas.errors import ConfigurationError
from consultas.settings import Settings, telegram_file_url

logger = logging.getLogger(__name__)

BotApplication: TypeAlias = Application[Any, Any, Any, Any, Any, Any]
#: Long-polling wait per getUpdates call (seconds); each call's HTTP read timeout is 10 s more.
POLL_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 30.0
#: Webhook mode: the local HTTP server a reverse proxy (TLS) forwards to.
WEBHOOK_LISTEN = "0.0.0.0"  # behind the TLS proxy, inside the container
WEBHOOK_PORT = 8443
#: Handler groups: flood control first, then /estado (it may take the next text), then the form.
FLOOD_GROUP, ESTADO_GROUP, FORM_GROUP = -2, -1, 0
NO_PREVIEWS = LinkPreviewOptions(is_disabled=True)
PERSISTENCE_FILE = "telegram-bot.pickle"


def persistence_path(settings: Settings) -> Path:
    """Where the drafts and conversation states are kept across restarts."""
    return settings.var_dir / PERSISTENCE_FILE


def build_application(
    settings: Settings,
    *,
    sessions: sessionmaker[Session],
    config: ServiceConfig,
    clock: Clock,
    conversation_timeout_s: float | None = DEFAULT_CONVERSATION_TIMEOUT_S,
    flood: FloodGuard | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    on_committed: Callable[[list[int]], object] | None = None,
) -> BotApplication:
    """Build the bot (not started): the form, /estado, flood control and the error handler."""
    token = settings.telegram_token.get_secret_value()
    if not token:
        raise ConfigurationError("invalid setting: CONSULTAS_TELEGRAM_TOKEN: required to run the bot")
    path = persistence_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    persistence = PicklePersistence(
        filepath=path,
        store_data=PersistenceInput(bot_data=False, chat_data=True, user_data=False, callback_data=False),
    )
    application = (
        ApplicationBuilder()
        .token(token)
        .base_url(settings.telegram_api_url)
        .base_file_url(telegram_file_url(settings.telegram_api_url))
        .defaults(Defaults(parse_mode=ParseMode.HTML, link_preview_options=NO_PREVIEWS))
        .persistence(persistence)
        .connect_timeout(CONNECT_TIMEOUT_S)
        .read_timeout(READ_TIMEOUT_S)
        .get_updates_connect_timeout(CONNECT_TIMEOUT_S)
        .get_updates_read_timeout(POLL_TIMEOUT_S + 10)
        .build()
    )
    services = Services(sessions=sessions, config=config, clock=clock, on_committed=on_committed)
    form = Form(services)
    guard = flood or FloodGuard()

    async def flood_control(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat = update.effective_chat
        if chat is None:
            return
        verdict = guard.check(chat.id, monotonic())
        if verdict == Verdict.ALLOW:
            return
        if verdict == Verdict.WARN:
            logger.warning("telegram chat %s over the message limit: ignored for a while", chat.id)
            await chat.send_message(texts.DEMASIADOS_MENSAJES)
        raise ApplicationHandlerStop

    application.add_handler(TypeHandler(Update, flood_control), group=FLOOD_GROUP)
    application.add_handler(
        estado_handler(EstadoLookup(services), timeout_s=conversation_timeout_s), group=ESTADO_GROUP
    )
    application.add_handler(form_handler(form, timeout_s=conversation_timeout_s), group=FORM_GROUP)
    application.add_handlers(other_handlers(form), group=FORM_GROUP)
    application.add_error_handler(_error_handler(token))
    return application


def _error_handler(token: str) -> Callable[[object, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]:
    async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log first (no personal data, no token), then tell the citizen politely."""
        error = context.error
        chat = update.effective_chat if isinstance(update, Update) else None
        update_id = update.update_id if isinstance(update, Update) else None
        logger.error(
            "telegram update %s (chat %s) failed: %s\n%s",
            update_id,
            chat.id if chat is not None else None,
            describe_error(error, token),
            "".join(traceback.format_tb(error.__traceback__)) if error is not None else "",
        )
        if chat is None:
            return
        try:
            await chat.send_message(texts.ERROR_INTERNO)
        except TelegramError as exc:
            logger.warning("could not tell chat %s about the error: %s", chat.id, describe_error(exc, token))

    return on_error


def describe_error(error: BaseException | None, token: str) -> str:
    """The error's type, plus its message only for Telegram errors (with the token removed).

    Other messages may quote personal data (a database error lists the row's values), so only
    the type is logged; the traceback's frames say where it happened.
    """
    if error is None:
        return "unknown error"
    name = type(error).__name__
    if isinstance(error, TelegramError):
        message = str(error).replace(token, "<token>") if token else str(error)
        return f"{name}: {message}"
    return name


def webhook_secret(settings: Settings) -> str:
    """The secret Telegram sends back on each webhook call (derived from the service's key)."""
    return hmac.new(settings.secret_key_bytes(), b"telegram-webhook", hashlib.sha256).hexdigest()


@asynccontextmanager
async def running(
    application: BotApplication, settings: Settings, *, poll_timeout_s: float = POLL_TIMEOUT_S
) -> AsyncIterator[BotApplication]:
    """Run ``application`` (polling, or a webhook when configured) for the ``async with`` body."""
    webhook_url = settings.telegram_webhook_url
    if webhook_url and importlib.util.find_spec("tornado") is None:
        raise ConfigurationError(
            "invalid setting: CONSULTAS_TELEGRAM_WEBHOOK_URL: webhook mode needs "
            "python-telegram-bot[webhooks] installed (or leave it empty for long polling)"
        )
    async with application:
        await application.start()
        updater = application.updater
        assert updater is not None
        if webhook_url:
            await updater.start_webhook(
                listen=WEBHOOK_LISTEN,
                port=WEBHOOK_PORT,
                url_path=urlsplit(webhook_url).path.lstrip("/"),
                webhook_url=webhook_url,
                secret_token=webhook_secret(settings),
                allowed_updates=Update.ALL_TYPES,
            )
            logger.info("telegram bot receiving updates by webhook on port %s", WEBHOOK_PORT)
        else:
            await updater.start_polling(
                timeout=timedelta(seconds=poll_timeout_s), allowed_updates=Update.ALL_TYPES
            )
            logger.info("telegram bot polling %s", urlsplit(settings.telegram_api_url).netloc)
        try:
            yield application
        finally:
            await updater.stop()
            await application.stop()


async def run_bot(
    settings: Settings,
    stop: asyncio.Event,
    *,
    sessions: sessionmaker[Session] | None = None,
    clock: Clock | None = None,
    on_committed: Callable[[list[int]], object] | None = None,
) -> None:
    """Run the bot until ``stop`` is set (``consultas serve`` and ``consultas bot``).

    ``on_committed`` gets the outbox rows each admission queued (``workers.mail`` send hints).
    """
    from consultas.db import make_engine, make_sessionmaker

    engine = None
    if sessions is None:
        engine = make_engine(settings.resolved_database_url)
        sessions = make_sessionmaker(engine)
    try:
        config = await asyncio.to_thread(ServiceConfig.from_settings, settings)
        application = build_application(
            settings,
            sessions=sessions,
            config=config,
            clock=clock or SystemClock(),
            on_committed=on_committed,
        )
        async with running(application, settings):
            await stop.wait()
    finally:
        if engine is not None:
            engine.dispose()

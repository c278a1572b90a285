"""The test servers themselves work for real: Dovecot, the SMTP sink, the fake Bot API and Redis."""

from __future__ import annotations

import asyncio
import imaplib
import io
import os
import time
from email.message import EmailMessage

import aiosmtplib
import httpx
import pytest
import redis
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.servers import DovecotServer, FakeBotApi, SmtpSink

MAILBOX = "consultas@mef.gob.pe"


def _mail(subject: str, to: str = MAILBOX, message_id: str = "<prueba-1@example.pe>") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Ciudadana <ciudadana@example.pe>"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = message_id
    message.set_content("Buenos días, quisiera consultar sobre el presupuesto.\n")
    return message


# Dovecot ------------------------------------------------------------------------------------------


def test_mail_delivered_over_lmtp_is_read_over_imap_without_marking_it_seen_and_uid_moved(
    dovecot: DovecotServer,
) -> None:
    dovecot.deliver(_mail("Consulta sobre presupuesto").as_bytes(), MAILBOX)

    client = imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=10)
    try:
        client.login(MAILBOX, "secret")
        client.select("INBOX")
        _, unseen = client.uid("SEARCH", "UNSEEN")
        (uid,) = unseen[0].split()
        _, fetched = client.uid("FETCH", uid.decode(), "(BODY.PEEK[])")
        assert b"Subject: Consulta sobre presupuesto" in fetched[0][1]
        client.create("Procesados")
        typ, _ = client.uid("MOVE", uid.decode(), "Procesados")
        assert typ == "OK"
    finally:
        client.logout()

    assert dovecot.list_messages(MAILBOX, "INBOX") == []
    (moved,) = dovecot.list_messages(MAILBOX, "Procesados")
    assert b"Message-ID: <prueba-1@example.pe>" in moved
    assert "Procesados" in dovecot.folder_names(MAILBOX)
    assert "\\Seen" not in dovecot.flags(MAILBOX, "Procesados")["<prueba-1@example.pe>"]


def test_mail_saved_into_a_folder_is_listed_only_there_and_each_user_has_a_separate_mailbox(
    dovecot: DovecotServer,
) -> None:
    dovecot.deliver(_mail("Ya atendida").as_bytes(), MAILBOX, folder="Cuarentena")

    assert dovecot.message_count(MAILBOX, "Cuarentena") == 1
    assert dovecot.message_count(MAILBOX, "INBOX") == 0
    assert dovecot.message_count("ogdau@mef.gob.pe", "INBOX") == 0
    assert dovecot.folder_names("ogdau@mef.gob.pe") == ["INBOX"]


def test_dovecot_refuses_a_wrong_password(dovecot: DovecotServer) -> None:
    client = imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=10)
    try:
        with pytest.raises(imaplib.IMAP4.error):
            client.login(MAILBOX, "incorrecta")
    finally:
        client.shutdown()


def test_dovecot_refuses_connections_while_stopped_and_keeps_mail_and_port_after_start(
    dovecot: DovecotServer,
) -> None:
    dovecot.deliver(_mail("Antes del corte").as_bytes(), MAILBOX)
    port = dovecot.imap_port

    dovecot.stop()
    with pytest.raises(ConnectionRefusedError):
        imaplib.IMAP4(dovecot.host, port, timeout=5)

    dovecot.start()
    assert dovecot.imap_port == port
    assert dovecot.message_count(MAILBOX) == 1


def test_dovecot_user_added_while_running_can_log_in(dovecot: DovecotServer) -> None:
    dovecot.add_user("nuevo.titular@mef.gob.pe", "otra-clave")

    dovecot.deliver(
        _mail("Para el nuevo titular", to="nuevo.titular@mef.gob.pe").as_bytes(), "nuevo.titular@mef.gob.pe"
    )

    assert dovecot.message_count("nuevo.titular@mef.gob.pe") == 1


# SMTP sink ----------------------------------------------------------------------------------------


async def test_mail_sent_with_aiosmtplib_is_captured_with_its_envelope(smtp_sink: SmtpSink) -> None:
    await aiosmtplib.send(
        _mail("Su consulta CONS-2025-000001", to="ciudadana@example.pe"),
        hostname=smtp_sink.host,
        port=smtp_sink.port,
        start_tls=False,
        recipients=["ciudadana@example.pe", "ogdau@mef.gob.pe"],
        timeout=10,
    )

    (captured,) = await asyncio.to_thread(smtp_sink.wait_for, 1)
    assert captured.rcpt_tos == ["ciudadana@example.pe", "ogdau@mef.gob.pe"]
    assert captured.mail_from == "ciudadana@example.pe"
    assert captured.subject == "Su consulta CONS-2025-000001"
    assert "presupuesto" in captured.message.get_content()


async def test_sink_refuses_connections_while_stopped_and_accepts_mail_after_start(
    smtp_sink: SmtpSink,
) -> None:
    smtp_sink.stop()
    with pytest.raises(aiosmtplib.SMTPConnectError):
        await aiosmtplib.send(
            _mail("Durante el corte"),
            hostname=smtp_sink.host,
            port=smtp_sink.port,
            start_tls=False,
            timeout=5,
        )

    smtp_sink.start()
    await aiosmtplib.send(
        _mail("Después del corte"), hostname=smtp_sink.host, port=smtp_sink.port, start_tls=False, timeout=5
    )

    assert [c.subject for c in await asyncio.to_thread(smtp_sink.wait_for, 1)] == ["Después del corte"]


@pytest.mark.parametrize("code", [550, 451])
async def test_sink_refuses_a_chosen_recipient_with_the_given_code(smtp_sink: SmtpSink, code: int) -> None:
    smtp_sink.reject_rcpt("no.existe@mef.gob.pe", code=code)

    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await aiosmtplib.send(
            _mail("Derivación", to="no.existe@mef.gob.pe"),
            hostname=smtp_sink.host,
            port=smtp_sink.port,
            start_tls=False,
            timeout=5,
        )

    assert [r.code for r in refused.value.recipients] == [code]
    assert smtp_sink.messages == []


async def test_auth_sink_captures_mail_only_after_login(smtp_auth_sink: SmtpSink) -> None:
    assert smtp_auth_sink.auth is not None
    user, password = smtp_auth_sink.auth
    with pytest.raises(aiosmtplib.SMTPResponseException):
        await aiosmtplib.send(
            _mail("Sin login"),
            hostname=smtp_auth_sink.host,
            port=smtp_auth_sink.port,
            start_tls=False,
            timeout=5,
        )

    await aiosmtplib.send(
        _mail("Con login"),
        hostname=smtp_auth_sink.host,
        port=smtp_auth_sink.port,
        start_tls=False,
        username=user,
        password=password,
        timeout=5,
    )

    (captured,) = await asyncio.to_thread(smtp_auth_sink.wait_for, 1)
    assert (captured.subject, captured.auth_login) == ("Con login", user)


# Fake Bot API -------------------------------------------------------------------------------------


async def _echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.message is not None and update.message.text is not None
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Confirmar", callback_data="confirmar")]])
    await update.message.reply_text(update.message.text, reply_markup=keyboard)


async def _confirm(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None
    await query.answer("Listo")
    await query.edit_message_text(f"Elegiste: {query.data}")


def _application(api: FakeBotApi) -> Application:  # type: ignore[type-arg]
    app = (
        ApplicationBuilder().token(api.token).base_url(api.base_url).base_file_url(api.base_file_url).build()
    )
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, _echo))
    app.add_handler(CallbackQueryHandler(_confirm))
    return app


async def test_real_ptb_application_echoes_hola_and_answers_a_button_press(fake_bot_api: FakeBotApi) -> None:
    app = _application(fake_bot_api)
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0.0, timeout=1)
        try:
            fake_bot_api.push_text(4242, "hola")
            (echo,) = await asyncio.to_thread(fake_bot_api.wait_for_sent, 4242, 1)
            fake_bot_api.push_callback(4242, "confirmar")
            (answer,) = await asyncio.to_thread(fake_bot_api.wait_for_calls, "answerCallbackQuery", 1)
            (edit,) = await asyncio.to_thread(fake_bot_api.wait_for_calls, "editMessageText", 1)
        finally:
            await app.updater.stop()
            await app.stop()

    assert echo["text"] == "hola"
    assert echo["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "confirmar"
    assert answer["text"] == "Listo"
    assert (edit["message_id"], edit["text"]) == (echo["message_id"], "Elegiste: confirmar")
    assert fake_bot_api.pending_updates == 0


async def test_document_upload_and_download_round_trip_through_the_fake(fake_bot_api: FakeBotApi) -> None:
    async with Bot(
        fake_bot_api.token, base_url=fake_bot_api.base_url, base_file_url=fake_bot_api.base_file_url
    ) as bot:
        sent = await bot.send_document(4242, io.BytesIO(b"%PDF-1.4 informe"), filename="Informe año.pdf")
        assert sent.document is not None
        downloaded = await (await bot.get_file(sent.document.file_id)).download_as_bytearray()

    (record,) = fake_bot_api.sent(4242)
    assert record["document"] == {
        "filename": "Informe año.pdf",
        "content": b"%PDF-1.4 informe",
        "mime_type": "application/pdf",
    }
    assert bytes(downloaded) == b"%PDF-1.4 informe"


def test_get_updates_long_polls_until_its_timeout_and_an_offset_confirms_updates(
    fake_bot_api: FakeBotApi,
) -> None:
    url = f"{fake_bot_api.base_url}{fake_bot_api.token}/getUpdates"
    with httpx.Client(timeout=10) as client:
        started = time.monotonic()
        empty = client.post(url, data={"timeout": "1"}).json()
        waited = time.monotonic() - started

        first = fake_bot_api.push_text(7, "/start")
        queued = client.post(url, data={"timeout": "1"}).json()["result"]
        client.post(url, data={"offset": str(first["update_id"] + 1), "timeout": "0"})

    assert empty == {"ok": True, "result": []}
    assert waited >= 0.9
    assert queued[0]["message"]["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
    assert fake_bot_api.pending_updates == 0


def test_unknown_method_and_wrong_token_get_telegram_style_errors(fake_bot_api: FakeBotApi) -> None:
    with httpx.Client(timeout=5) as client:
        unknown = client.post(f"{fake_bot_api.base_url}{fake_bot_api.token}/sendPoll")
        wrong_token = client.post(f"{fake_bot_api.base_url}123:otro/getMe")

    assert unknown.status_code == 404
    assert unknown.json()["ok"] is False
    assert "sendPoll" in unknown.json()["description"]
    assert (wrong_token.status_code, wrong_token.json()["error_code"]) == (401, 401)


# Redis --------------------------------------------------------------------------------------------


def test_redis_url_is_an_empty_database_15(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.dbsize() == 0
        client.set("consultas:prueba", "1")
        assert client.get("consultas:prueba") == b"1"
    finally:
        client.close()
    # Database 15 unless CONSULTAS_TEST_REDIS_URL picks another (two checkouts at once).
    assert redis_url == os.environ.get("CONSULTAS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

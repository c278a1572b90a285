"""A local fake of the Telegram Bot API over real HTTP, for python-telegram-bot 22 in tests.

PTB POSTs every call to ``{base_url}{token}/{method}``: form-encoded (``application/x-www-form-
urlencoded``) when nothing is uploaded, ``multipart/form-data`` for uploads; non-string values
(``chat_id``, ``reply_markup``, ``offset``...) arrive JSON-dumped. Replies are ``{"ok": true,
"result": ...}``; errors carry the HTTP status PTB maps to exceptions (400 BadRequest, 403
Forbidden, 404 InvalidToken, 429 RetryAfter with ``parameters.retry_after``, 5xx NetworkError).

The test side queues updates (``push_text``, ``push_callback``, ``push_document``) and reads
what the bot did (``sent``, ``edits``, ``calls``), waiting on a Condition, never sleeping.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from tests.servers._net import free_port, wait_for_port

JSONDict = dict[str, Any]

#: A syntactically valid token; the fake answers 401 to any other.
DEFAULT_TOKEN = "7000001:AAFakeTokenForTestsOnly-consultas_mef"
WAIT_TIMEOUT_S = 10.0
#: Parameters PTB sends as plain strings; every other value is JSON-decoded (it was JSON-dumped).
_STRING_PARAMS = frozenset(
    {
        "text",
        "caption",
        "callback_query_id",
        "url",
        "parse_mode",
        "file_id",
        "inline_message_id",
        "secret_token",
        "language_code",
        "scope_type",
        "description",
        "short_description",
        "name",
        "action",
        "ip_address",
    }
)


class ApiError(Exception):
    """A Bot API error reply: HTTP status = ``error_code``."""

    def __init__(self, error_code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], api: FakeBotApi) -> None:
        self.api = api
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet; the fake records calls instead."""

    def _serve(self) -> None:
        api = self.server.api
        url = urlsplit(self.path)
        path = unquote(url.path)  # PTB percent-encodes file paths (the token's ":" too)
        file_prefix = f"/file/bot{api.token}/"
        if path.startswith(file_prefix):
            content = api._file_content(path[len(file_prefix) :])
            if content is None:
                self._reply(404, {"ok": False, "error_code": 404, "description": "Not Found: file"})
            else:
                self._send(200, content, "application/octet-stream")
            return
        prefix, _, method = path.rpartition("/")
        if prefix != f"/bot{api.token}":
            self._reply(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
            return
        try:
            params, files = self._parameters(url.query)
            result = api._call(method, params, files)
        except ApiError as exc:
            body: JSONDict = {"ok": False, "error_code": exc.error_code, "description": exc.description}
            if exc.retry_after is not None:
                body["parameters"] = {"retry_after": exc.retry_after}
            self._reply(exc.error_code, body)
            return
        except Exception as exc:  # the per-request boundary: a bug in the fake must be visible
            api._record_error(method, exc)
            self._reply(500, {"ok": False, "error_code": 500, "description": f"fake bug: {exc!r}"})
            return
        self._reply(200, {"ok": True, "result": result})

    def _parameters(self, query: str) -> tuple[JSONDict, dict[str, JSONDict]]:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        content_type = self.headers.get("Content-Type", "")
        raw: dict[str, str] = dict(parse_qsl(query, keep_blank_values=True))
        files: dict[str, JSONDict] = {}
        if content_type.startswith("application/json"):
            return {**raw, **(json.loads(body) if body else {})}, files
        if content_type.startswith("multipart/form-data"):
            parsed = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
            )
            for part in parsed.iter_parts():
                name = str(part.get_param("name", header="content-disposition"))
                payload = cast(bytes, part.get_payload(decode=True) or b"")
                filename = part.get_filename()
                if filename is not None:
                    files[name] = {
                        "filename": _undo_surrogates(filename),
                        "content": payload,
                        "mime_type": part.get_content_type(),
                    }
                else:
                    raw[name] = payload.decode("utf-8")
        else:
            raw.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        return {key: _decode_value(key, value) for key, value in raw.items()}, files

    def _reply(self, status: int, body: JSONDict) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the bot gave up on a long poll (Updater.stop() cancels it): nothing to tell


def _decode_value(key: str, value: str) -> Any:
    if key in _STRING_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value  # e.g. chat_id "@channel", or a plain string parameter we do not know


def _undo_surrogates(text: str) -> str:
    """Header bytes outside ASCII arrive surrogate-escaped (httpx sends raw UTF-8 filenames)."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeError:
        return text


class FakeBotApi:
    """A Bot API server on 127.0.0.1 with one bot, queued updates and a record of every call."""

    def __init__(self, token: str = DEFAULT_TOKEN, *, port: int | None = None) -> None:
        self.token = token
        self.host = "127.0.0.1"
        self.port = port or free_port(self.host)
        self.bot_user: JSONDict = {
            "id": int(token.split(":", 1)[0]) if token.split(":", 1)[0].isdigit() else 7000001,
            "is_bot": True,
            "first_name": "Consultas MEF",
            "username": "consultas_mef_bot",
            "can_join_groups": False,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self._condition = threading.Condition()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._methods: dict[str, Callable[[JSONDict, dict[str, JSONDict]], Any]] = {
            "getMe": lambda params, files: self.bot_user,
            "logOut": lambda params, files: True,
            "close": lambda params, files: True,
            "deleteWebhook": self._delete_webhook,
            "setWebhook": self._set_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "getUpdates": self._get_updates,
            "sendMessage": self._send_message,
            "sendDocument": self._send_document,
            "sendChatAction": lambda params, files: True,
            "editMessageText": self._edit_message,
            "editMessageReplyMarkup": self._edit_message,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": lambda params, files: list(self._commands),
            "deleteMyCommands": self._delete_my_commands,
            "getFile": self._get_file,
        }
        self._reset_state()

    def _reset_state(self) -> None:
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._updates: list[JSONDict] = []
        self._messages: dict[tuple[int | str, int], JSONDict] = {}
        self._calls: list[tuple[str, JSONDict]] = []
        self._sent: list[JSONDict] = []
        self._edits: list[JSONDict] = []
        self._errors: list[str] = []
        self._files: dict[str, tuple[str, bytes, JSONDict]] = {}  # file_id -> (path, content, meta)
        self._commands: list[JSONDict] = []
        self._failures: list[tuple[str, ApiError]] = []
        self.webhook_url = ""

    # Lifecycle ------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What ApplicationBuilder().base_url() takes."""
        return f"http://{self.host}:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        """What ApplicationBuilder().base_file_url() takes."""
        return f"http://{self.host}:{self.port}/file/bot"

    @property
    def is_running(self) -> bool:
        """Tell whether the fake is serving requests."""
        return self._server is not None

    def start(self) -> None:
        """Serve on ``self.port`` (the same port every time) in a background thread."""
        if self._server is not None:
            return
        with self._condition:
            self._stopping = False
        self._server = _Server((self.host, self.port), self)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-bot-api", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving (pending long polls return at once); the port then refuses connections."""
        if self._server is None:
            return
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None
        wait_for_port(self.host, self.port, open_=False)

    def __enter__(self) -> FakeBotApi:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget updates, messages, calls and injected failures (between tests)."""
        with self._condition:
            self._reset_state()

    # Test side: what the citizen does -------------------------------------------------------------

    def push_update(self, update: JSONDict) -> JSONDict:
        """Queue a raw update (``update_id`` is assigned); return it."""
        with self._condition:
            update = {"update_id": next(self._update_ids), **update}
            self._updates.append(update)
            self._condition.notify_all()
            return update

    def push_text(
        self, chat_id: int, text: str, user_id: int | None = None, first_name: str = "Ciudadana"
    ) -> JSONDict:
        """Queue a private text message from a citizen; ``/command`` gets a bot_command entity."""
        message = self._user_message(chat_id, user_id, first_name)
        message["text"] = text
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        return self.push_update({"message": message})

    def push_document(
        self,
        chat_id: int,
        filename: str,
        content: bytes,
        *,
        mime_type: str = "application/pdf",
        caption: str | None = None,
        user_id: int | None = None,
    ) -> JSONDict:
        """Queue a message with a document; the bot can getFile and download its bytes."""
        with self._condition:
            document = self._store_file(filename, content, mime_type)
        message = self._user_message(chat_id, user_id, "Ciudadana")
        message["document"] = document
        if caption is not None:
            message["caption"] = caption
        return self.push_update({"message": message})

    def push_callback(
        self, chat_id: int, data: str, message_id: int | None = None, user_id: int | None = None
    ) -> JSONDict:
        """Queue a button press (callback_query) on the bot's message ``message_id``.

        Without ``message_id``, the bot's last message in the chat is the one pressed.
        """
        with self._condition:
            if message_id is None:
                mine = [m for (chat, _), m in self._messages.items() if chat == chat_id and _is_bot(m)]
                message = dict(mine[-1]) if mine else self._bot_message(chat_id, "(mensaje)")
            else:
                message = dict(self._messages.get((chat_id, message_id)) or self._bot_message(chat_id, ""))
                message["message_id"] = message_id
            callback = {
                "id": str(next(self._callback_ids)),
                "from": _user(user_id or chat_id, "Ciudadana"),
                "chat_instance": str(chat_id),
                "data": data,
                "message": message,
            }
        return self.push_update({"callback_query": callback})

    def fail_next(
        self,
        method: str,
        error_code: int = 502,
        description: str = "Bad Gateway",
        *,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail with this error."""
        with self._condition:
            self._failures.extend([(method, ApiError(error_code, description, retry_after))] * times)

    # Test side: what the bot did ------------------------------------------------------------------

    def sent(self, chat_id: int | str | None = None) -> list[JSONDict]:
        """Messages the bot sent (sendMessage, sendDocument), optionally to one chat, in order."""
        with self._condition:
            return self._sent_to(chat_id)

    def wait_for_sent(
        self, chat_id: int | str | None, count: int = 1, timeout: float = WAIT_TIMEOUT_S
    ) -> list[JSONDict]:
        """Wait until the bot sent at least ``count`` messages to ``chat_id``; return them."""
        return self._wait(lambda: self._sent_to(chat_id), count, timeout, f"messages to {chat_id}")

    def _sent_to(self, chat_id: int | str | None) -> list[JSONDict]:
        return [dict(s) for s in self._sent if chat_id is None or s["chat_id"] == chat_id]

    def edits(self, chat_id: int | str | None = None) -> list[JSONDict]:
        """editMessageText / editMessageReplyMarkup calls, in order."""
        with self._condition:
            return [dict(e) for e in self._edits if chat_id is None or e.get("chat_id") == chat_id]

    def calls(self, method: str | None = None) -> list[JSONDict]:
        """The decoded parameters of every call (of ``method``), in order."""
        with self._condition:
            return [dict(p) for m, p in self._calls if method is None or m == method]

    def wait_for_calls(self, method: str, count: int = 1, timeout: float = WAIT_TIMEOUT_S) -> list[JSONDict]:
        """Wait until ``method`` was called at least ``count`` times; return those calls."""
        return self._wait(
            lambda: [dict(p) for m, p in self._calls if m == method], count, timeout, f"{method} calls"
        )

    @property
    def pending_updates(self) -> int:
        """Updates queued that the bot has not confirmed yet."""
        with self._condition:
            return len(self._updates)

    @property
    def commands(self) -> list[JSONDict]:
        """The command list set by setMyCommands."""
        with self._condition:
            return list(self._commands)

    @property
    def errors(self) -> list[str]:
        """Bugs in the fake itself (a request it could not handle)."""
        with self._condition:
            return list(self._errors)

    # Internals: HTTP thread side ------------------------------------------------------------------

    def _wait(
        self, items: Callable[[], list[JSONDict]], count: int, timeout: float, what: str
    ) -> list[JSONDict]:
        deadline = time.monotonic() + timeout
        with self._condition:
            while len(found := items()) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"expected {count} {what} within {timeout} s, got {found}")
                self._condition.wait(remaining)
            return found

    def _call(self, method: str, params: JSONDict, files: dict[str, JSONDict]) -> Any:
        with self._condition:
            self._calls.append((method, {**params, **{k: dict(v) for k, v in files.items()}}))
            self._condition.notify_all()
            for index, (failing, error) in enumerate(self._failures):
                if failing == method:
                    del self._failures[index]
                    raise error
        handler = self._methods.get(method)
        if handler is None:
            raise ApiError(404, f"Not Found: method {method} is not implemented by the fake Bot API")
        return handler(params, files)

    def _record_error(self, method: str, exc: Exception) -> None:
        with self._condition:
            self._errors.append(f"{method}: {exc!r}")

    def _file_content(self, file_path: str) -> bytes | None:
        with self._condition:
            for path, content, _ in self._files.values():
                if path == file_path:
                    return content
            return None

    def _store_file(self, filename: str, content: bytes, mime_type: str) -> JSONDict:
        number = next(self._file_ids)
        file_id = f"FILE{number:06d}"
        meta = {
            "file_id": file_id,
            "file_unique_id": f"U{number:06d}",
            "file_name": filename,
            "mime_type": mime_type,
            "file_size": len(content),
        }
        self._files[file_id] = (f"documents/file_{number}", content, meta)
        return dict(meta)

    def _user_message(self, chat_id: int, user_id: int | None, first_name: str) -> JSONDict:
        with self._condition:
            message_id = next(self._message_ids)
            message: JSONDict = {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private", "first_name": first_name},
                "from": _user(user_id or chat_id, first_name),
            }
            self._messages[(chat_id, message_id)] = message
            return dict(message)

    def _bot_message(self, chat_id: int | str, text: str | None) -> JSONDict:
        message: JSONDict = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "from": self.bot_user,
        }
        if text is not None:
            message["text"] = text
        return message

    def _get_updates(self, params: JSONDict, files: dict[str, JSONDict]) -> list[JSONDict]:
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        with self._condition:
            # Telegram: asking with an offset confirms every update before it.
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            while not self._updates and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._condition.wait(remaining)
            return [dict(u) for u in self._updates[:limit]]

    def _delete_webhook(self, params: JSONDict, files: dict[str, JSONDict]) -> bool:
        with self._condition:
            self.webhook_url = ""
            if params.get("drop_pending_updates"):
                self._updates.clear()
        return True

    def _set_webhook(self, params: JSONDict, files: dict[str, JSONDict]) -> bool:
        with self._condition:
            self.webhook_url = str(params.get("url", ""))
        return True

    def _get_webhook_info(self, params: JSONDict, files: dict[str, JSONDict]) -> JSONDict:
        with self._condition:
            return {"url": self.webhook_url, "has_custom_certificate": False, "pending_update_count": 0}

    def _send_message(self, params: JSONDict, files: dict[str, JSONDict]) -> JSONDict:
        chat_id = _required(params, "chat_id")
        text = _required(params, "text")
        if not str(text).strip():
            raise ApiError(400, "Bad Request: message text is empty")
        with self._condition:
            message = self._bot_message(chat_id, str(text))
            _attach_markup(message, params)
            self._remember_sent("sendMessage", message, params)
            return message

    def _send_document(self, params: JSONDict, files: dict[str, JSONDict]) -> JSONDict:
        chat_id = _required(params, "chat_id")
        with self._condition:
            upload = files.get("document")
            if upload is not None:
                document = self._store_file(upload["filename"], upload["content"], upload["mime_type"])
            elif isinstance(params.get("document"), str) and params["document"] in self._files:
                document = dict(self._files[params["document"]][2])
            else:
                raise ApiError(400, "Bad Request: there is no document in the request")
            message = self._bot_message(chat_id, None)
            message["document"] = document
            if "caption" in params:
                message["caption"] = params["caption"]
            _attach_markup(message, params)
            record = self._remember_sent("sendDocument", message, params)
            record["document"] = {
                "filename": document["file_name"],
                "content": self._files[document["file_id"]][1],
                "mime_type": document["mime_type"],
            }
            return message

    def _remember_sent(self, method: str, message: JSONDict, params: JSONDict) -> JSONDict:
        chat_id = message["chat"]["id"]
        self._messages[(chat_id, message["message_id"])] = message
        record = {**params, "method": method, "chat_id": chat_id, "message_id": message["message_id"]}
        self._sent.append(record)
        self._condition.notify_all()
        return record

    def _edit_message(self, params: JSONDict, files: dict[str, JSONDict]) -> JSONDict | bool:
        with self._condition:
            method = "editMessageText" if "text" in params else "editMessageReplyMarkup"
            self._edits.append({**params, "method": method})
            self._condition.notify_all()
            if "inline_message_id" in params:
                return True
            key = (_required(params, "chat_id"), int(_required(params, "message_id")))
            message = self._messages.get(key)
            if message is None:
                raise ApiError(400, "Bad Request: message to edit not found")
            if "text" in params:
                message["text"] = params["text"]
            message.pop("reply_markup", None)
            _attach_markup(message, params)
            message["edit_date"] = int(time.time())
            return dict(message)

    def _delete_message(self, params: JSONDict, files: dict[str, JSONDict]) -> bool:
        key = (_required(params, "chat_id"), int(_required(params, "message_id")))
        with self._condition:
            if self._messages.pop(key, None) is None:
                raise ApiError(400, "Bad Request: message to delete not found")
        return True

    def _answer_callback_query(self, params: JSONDict, files: dict[str, JSONDict]) -> bool:
        _required(params, "callback_query_id")
        return True

    def _set_my_commands(self, params: JSONDict, files: dict[str, JSONDict]) -> bool:
        commands = _required(params, "commands")
        with self._condition:
            self._commands = [dict(c) for c in commands]
        return True

    def _delete_my_commands(self, params: JSONDict, files: dict[str, JSONDict]) -> bool:
        with self._condition:
            self._commands = []
        return True

    def _get_file(self, params: JSONDict, files: dict[str, JSONDict]) -> JSONDict:
        file_id = str(_required(params, "file_id"))
        with self._condition:
            if file_id not in self._files:
                raise ApiError(400, "Bad Request: invalid file_id")
            path, content, meta = self._files[file_id]
            return {
                "file_id": file_id,
                "file_unique_id": meta["file_unique_id"],
                "file_size": len(content),
                "file_path": path,
            }


def _required(params: JSONDict, name: str) -> Any:
    if name not in params or params[name] in ("", None):
        raise ApiError(400, f"Bad Request: {name} is required")
    return params[name]


def _attach_markup(message: JSONDict, params: JSONDict) -> None:
    """Telegram echoes only inline keyboards in the returned Message."""
    markup = params.get("reply_markup")
    if isinstance(markup, dict) and "inline_keyboard" in markup:
        message["reply_markup"] = markup


def _is_bot(message: JSONDict) -> bool:
    return bool(message.get("from", {}).get("is_bot"))


def _user(user_id: int | str, first_name: str) -> JSONDict:
    return {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "es"}

"""The IMAP protocol edge: a thin aioimaplib wrapper speaking in UIDs, with a timeout on every command.

Owns the connection (login, SELECT, UID SEARCH/FETCH/MOVE, IDLE) and translates aioimaplib,
socket and timeout errors into ``ImapUnavailableError`` (a ``TransientError``) once, here. It knows
nothing of consultas: the poller (``intake.imap_poller``) decides what to fetch and where mail goes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from aioimaplib import aioimaplib

from consultas.errors import TransientError
from consultas.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_EXISTS = re.compile(rb"^(\d+) EXISTS")
_FETCH_UID = re.compile(rb"\bUID (\d+)")
_LITERAL_SIZE = re.compile(rb"\{(\d+)\}$")
_FETCH_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
#: Mails per UID FETCH (RFC822.SIZE) command.
SIZE_CHUNK = 100
#: RFC 3501 atom characters that force a folder name into a quoted string.
_NEEDS_QUOTES = re.compile(r'[\s(){%*"\\\]]')


class ImapUnavailableError(TransientError):
    """Raised when the IMAP server cannot be reached, times out, drops the connection or says NO/BAD."""


@dataclass(frozen=True)
class SelectedFolder:
    """What SELECT told us about a folder."""

    name: str
    uidvalidity: int
    exists: int


def uid_set(uids: Iterable[int]) -> str:
    """Compress UIDs into an IMAP sequence set: ``[1, 2, 3, 7, 9, 10]`` -> ``"1:3,7,9:10"``."""
    ordered = sorted(set(uids))
    if not ordered:
        raise ValueError("an IMAP UID set cannot be empty")
    ranges: list[str] = []
    start = previous = ordered[0]
    for uid in ordered[1:]:
        if uid == previous + 1:
            previous = uid
            continue
        ranges.append(f"{start}:{previous}" if previous != start else str(start))
        start = previous = uid
    ranges.append(f"{start}:{previous}" if previous != start else str(start))
    return ",".join(ranges)


def quote_folder(name: str) -> str:
    """Quote a folder name for a command when it is not a plain atom (``Procesados`` stays as is)."""
    if name and not _NEEDS_QUOTES.search(name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_fetch_bodies(lines: Sequence[bytes | bytearray]) -> list[tuple[int, bytes]]:
    """Pull ``(uid, raw)`` pairs out of an aioimaplib UID FETCH (UID BODY.PEEK[]) response.

    aioimaplib hands each literal as a ``bytearray`` right after the line announcing it
    (``b'1 FETCH (UID 7 BODY[] {290}'``); the UID may also come after the literal (``b' UID 7)'``),
    which RFC 3501 allows, so both lines are searched.
    """
    bodies: list[tuple[int, bytes]] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if (
            isinstance(line, bytes)
            and b"FETCH (" in line
            and _LITERAL_SIZE.search(line)
            and index + 1 < len(lines)
            and isinstance(lines[index + 1], bytearray)
        ):
            raw = bytes(lines[index + 1])
            trailer = lines[index + 2] if index + 2 < len(lines) else b""
            match = _FETCH_UID.search(line) or _FETCH_UID.search(bytes(trailer))
            if match is not None:
                bodies.append((int(match.group(1)), raw))
            index += 2
            continue
        index += 1
    return bodies


def parse_fetch_sizes(lines: Sequence[bytes | bytearray]) -> dict[int, int]:
    """``{uid: size}`` from a UID FETCH (UID RFC822.SIZE) answer: ``b'3 FETCH (UID 7 RFC822.SIZE 290)'``."""
    sizes: dict[int, int] = {}
    for line in lines:
        if isinstance(line, bytes) and b"FETCH (" in line:
            uid, size = _FETCH_UID.search(line), _FETCH_SIZE.search(line)
            if uid is not None and size is not None:
                sizes[int(uid.group(1))] = int(size.group(1))
    return sizes


class ImapConnection:
    """One logged-in IMAP connection; every method raises ImapUnavailableError on trouble."""

    def __init__(self, client: aioimaplib.IMAP4, *, timeout_s: float) -> None:
        self._client = client
        self._timeout_s = timeout_s
        self.selected: SelectedFolder | None = None

    @property
    def capabilities(self) -> frozenset[str]:
        """The server's capabilities (IDLE, MOVE, UIDPLUS...)."""
        return frozenset(str(c).upper() for c in self._client.protocol.capabilities)

    @property
    def supports_idle(self) -> bool:
        return "IDLE" in self.capabilities

    @property
    def supports_move(self) -> bool:
        return "MOVE" in self.capabilities

    async def _run(self, what: str, call: Awaitable[T]) -> T:
        """Await one command with the timeout; translate every library or socket failure."""
        try:
            return await asyncio.wait_for(call, self._timeout_s)
        except (TimeoutError, aioimaplib.AioImapException, OSError, ConnectionError) as exc:
            raise ImapUnavailableError(f"IMAP {what} failed: {exc!r}") from exc

    async def _ok(self, what: str, call: Awaitable[Any]) -> Any:
        response = await self._run(what, call)
        if response.result != "OK":
            raise ImapUnavailableError(f"IMAP {what} answered {response.result}: {_text(response.lines)}")
        return response

    async def login(self, user: str, password: str) -> None:
        """LOGIN; a refusal is an ImapUnavailableError naming the user (never the password)."""
        response = await self._run("LOGIN", self._client.login(user, password))
        if response.result != "OK":
            raise ImapUnavailableError(f"IMAP LOGIN as {user} refused: {_text(response.lines)}")

    async def select(self, folder: str) -> SelectedFolder:
        """SELECT ``folder`` (read-write) and return its UIDVALIDITY and message count."""
        response = await self._ok(f"SELECT {folder}", self._client.select(quote_folder(folder)))
        uidvalidity = exists = None
        for line in response.lines:
            if not isinstance(line, bytes):
                continue
            if (found := _UIDVALIDITY.search(line)) is not None:
                uidvalidity = int(found.group(1))
            if (count := _EXISTS.match(line)) is not None:
                exists = int(count.group(1))
        if uidvalidity is None:
            raise ImapUnavailableError(f"IMAP SELECT {folder} gave no UIDVALIDITY")
        self.selected = SelectedFolder(folder, uidvalidity, exists or 0)
        return self.selected

    async def search_uids(self, criteria: str = "ALL") -> list[int]:
        """UID SEARCH in the selected folder, ascending (\\Seen is irrelevant: what is here is work)."""
        response = await self._ok("UID SEARCH", self._client.uid_search(criteria, charset=None))
        uids: list[int] = []
        for line in response.lines[:-1]:
            if isinstance(line, bytes):
                uids.extend(int(token) for token in line.split() if token.isdigit())
        return sorted(uids)

    async def fetch(self, uids: Sequence[int]) -> list[tuple[int, bytes]]:
        """UID FETCH the raw mails with BODY.PEEK[] (never sets \\Seen), in UID order."""
        if not uids:
            return []
        response = await self._ok("UID FETCH", self._client.uid("fetch", uid_set(uids), "(UID BODY.PEEK[])"))
        wanted = set(uids)
        return sorted((uid, raw) for uid, raw in parse_fetch_bodies(response.lines) if uid in wanted)

    async def fetch_sizes(self, uids: Sequence[int]) -> dict[int, int]:
        """UID FETCH RFC822.SIZE: each mail's size in bytes, ``SIZE_CHUNK`` mails per command.

        aioimaplib's handling of a response grows faster than its line count (3,000 sizes in one
        command did not finish in 30 s here), so callers ask only for the mails they must weigh.
        """
        sizes: dict[int, int] = {}
        ordered = sorted(uids)
        for start in range(0, len(ordered), SIZE_CHUNK):
            chunk = uid_set(ordered[start : start + SIZE_CHUNK])
            response = await self._ok("UID FETCH", self._client.uid("fetch", chunk, "(UID RFC822.SIZE)"))
            sizes.update(parse_fetch_sizes(response.lines))
        return sizes

    async def ensure_folder(self, folder: str) -> None:
        """CREATE ``folder`` unless it exists (ALREADYEXISTS is fine)."""
        response = await self._run(f"CREATE {folder}", self._client.create(quote_folder(folder)))
        if response.result != "OK" and b"ALREADYEXISTS" not in b" ".join(
            bytes(line) for line in response.lines
        ):
            raise ImapUnavailableError(
                f"IMAP CREATE {folder} answered {response.result}: {_text(response.lines)}"
            )

    async def move(self, uids: Sequence[int], folder: str) -> None:
        """UID MOVE a set to ``folder``; without MOVE: UID COPY, STORE \\Deleted, UID EXPUNGE."""
        if not uids:
            return
        members = uid_set(uids)
        target = quote_folder(folder)
        if self.supports_move:
            await self._ok(f"UID MOVE to {folder}", self._client.uid("move", members, target))
            return
        await self._ok(f"UID COPY to {folder}", self._client.uid("copy", members, target))
        await self._ok("UID STORE", self._client.uid("store", members, "+FLAGS.SILENT", r"(\Deleted)"))
        if "UIDPLUS" in self.capabilities:
            await self._ok("UID EXPUNGE", self._client.uid("expunge", members))
        else:
            # Without UIDPLUS a plain EXPUNGE also removes other \Deleted mail of this folder;
            # nothing but this poller deletes in the intake folder, so that is acceptable.
            await self._ok("EXPUNGE", self._client.expunge())

    async def wait_for_new_mail(self, timeout_s: float, *, stop: asyncio.Event | None = None) -> bool:
        """IDLE up to ``timeout_s`` or until ``stop`` is set, then DONE; True when the server pushed news.

        Without IDLE: NOOP and report no change (the caller's catch-up poll finds new mail).
        """
        if not self.supports_idle:
            await self._ok("NOOP", self._client.noop())
            return False
        idle = await self._run("IDLE", self._client.idle_start(timeout=timeout_s + self._timeout_s))
        push = asyncio.ensure_future(self._client.wait_server_push())
        waiters: set[asyncio.Future[Any]] = {push}
        if stop is not None:
            waiters.add(asyncio.ensure_future(stop.wait()))
        try:
            done, _ = await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            if self._client.has_pending_idle():
                self._client.idle_done()
        await self._ok("IDLE DONE", idle)
        if push not in done or push.cancelled() or push.exception() is not None:
            return False
        pushed = push.result()
        return isinstance(pushed, list) and any(
            isinstance(line, bytes) and (b"EXISTS" in line or b"RECENT" in line) for line in pushed
        )

    async def logout(self) -> None:
        """LOGOUT, ignoring a server that already went away."""
        try:
            await asyncio.wait_for(self._client.logout(), self._timeout_s)
        except (TimeoutError, aioimaplib.AioImapException, OSError, ConnectionError):
            logger.debug("IMAP logout failed; the connection is dropped anyway", exc_info=True)


@asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[ImapConnection]:
    """Open, log in and yield a connection per ``CONSULTAS_IMAP_*``; log out on exit."""
    timeout_s = settings.imap_timeout_s
    try:
        if settings.imap_ssl:
            client: aioimaplib.IMAP4 = aioimaplib.IMAP4_SSL(
                settings.imap_host,
                settings.imap_port,
                timeout=timeout_s,
                ssl_context=ssl.create_default_context(),
            )
        else:
            client = aioimaplib.IMAP4(settings.imap_host, settings.imap_port, timeout=timeout_s)
        await asyncio.wait_for(client.wait_hello_from_server(), timeout_s)
    except (TimeoutError, aioimaplib.AioImapException, OSError, ConnectionError) as exc:
        raise ImapUnavailableError(
            f"cannot connect to IMAP {settings.imap_host}:{settings.imap_port}: {exc!r}"
        ) from exc
    connection = ImapConnection(client, timeout_s=timeout_s)
    try:
        await connection.login(settings.imap_user, settings.imap_password.get_secret_value())
        yield connection
    finally:
        await connection.logout()
        transport = getattr(client.protocol, "transport", None)
        if transport is not None:
            transport.close()


def _text(lines: Sequence[bytes | bytearray]) -> str:
    return " ".join(bytes(line).decode("utf-8", "replace") for line in lines)[:300]

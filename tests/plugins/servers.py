"""Pytest plugin: the real servers edge tests talk to (Dovecot, SMTP sink, fake Bot API, Redis).

Each server starts once per session (``*_server`` fixtures); the per-test fixtures (``dovecot``,
``smtp_sink``, ``fake_bot_api``, ``redis_url``) hand it over clean and started again if a test
stopped it. A missing server skips the test locally with the reason and fails it in CI (``CI=true``),
as Dramatiq's ``check_redis`` does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest

from tests.servers.dovecot import DovecotServer, DovecotUnavailableError
from tests.servers.fake_bot_api import FakeBotApi
from tests.servers.smtp_sink import SmtpSink

#: The Redis database tests may flush (never 0, where a developer's data would live);
#: ``CONSULTAS_TEST_REDIS_URL`` picks another, so that two checkouts can run their suites at once.
REDIS_TEST_URL = os.environ.get("CONSULTAS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
#: Credentials of the AUTH-requiring SMTP sink.
SMTP_AUTH = ("consultas@mef.gob.pe", "secret")


def running_in_ci() -> bool:
    """Tell whether this run is CI, where a missing server is a failure, not a skip."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def server_unavailable(reason: str) -> NoReturn:
    """Skip the test (locally) or fail it (in CI) because a server it needs is missing."""
    if running_in_ci():
        pytest.fail(f"{reason} (CI must provide it: see scripts/install-test-deps.sh)", pytrace=False)
    pytest.skip(reason)


# Dovecot ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dovecot_server() -> Iterator[DovecotServer]:
    """One Dovecot (IMAP + LMTP) for the session, with consultas@mef.gob.pe:secret and other users."""
    try:
        server = DovecotServer()
    except DovecotUnavailableError as exc:
        server_unavailable(str(exc))
    try:
        server.start()
    except (RuntimeError, OSError) as exc:
        server.close()
        server_unavailable(f"dovecot could not start: {exc}")
    yield server
    server.close()


@pytest.fixture
def dovecot(dovecot_server: DovecotServer) -> Iterator[DovecotServer]:
    """The session's Dovecot, running, with every mailbox empty."""
    dovecot_server.start()
    dovecot_server.reset()
    yield dovecot_server
    dovecot_server.start()  # an outage test may have stopped it


# SMTP sink ----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def smtp_sink_server() -> Iterator[SmtpSink]:
    """One capturing SMTP server (no AUTH) for the session."""
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
def smtp_sink(smtp_sink_server: SmtpSink) -> Iterator[SmtpSink]:
    """The session's SMTP sink, running, with no captured mail and no rejection rules."""
    smtp_sink_server.start()
    smtp_sink_server.reset()
    yield smtp_sink_server
    smtp_sink_server.start()


@pytest.fixture(scope="session")
def smtp_auth_sink_server() -> Iterator[SmtpSink]:
    """One capturing SMTP server that requires AUTH (SMTP_AUTH) without TLS."""
    sink = SmtpSink(auth=SMTP_AUTH)
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
def smtp_auth_sink(smtp_auth_sink_server: SmtpSink) -> Iterator[SmtpSink]:
    """The AUTH-requiring sink, running and empty (user/password in ``.auth``)."""
    smtp_auth_sink_server.start()
    smtp_auth_sink_server.reset()
    yield smtp_auth_sink_server
    smtp_auth_sink_server.start()


# Fake Telegram Bot API ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fake_bot_api_server() -> Iterator[FakeBotApi]:
    """One fake Bot API over HTTP for the session."""
    api = FakeBotApi()
    api.start()
    yield api
    api.stop()


@pytest.fixture
def fake_bot_api(fake_bot_api_server: FakeBotApi) -> Iterator[FakeBotApi]:
    """The session's fake Bot API, running, with no updates, messages or calls recorded.

    Fails the test if the fake itself could not handle a request (a bug in the fake, not the bot).
    """
    fake_bot_api_server.start()
    fake_bot_api_server.reset()
    yield fake_bot_api_server
    errors = fake_bot_api_server.errors
    fake_bot_api_server.start()
    assert not errors, f"the fake Bot API failed on: {errors}"


# Redis --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server_url() -> str:
    """The test Redis URL, once checked reachable for the session."""
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        server_unavailable(f"Redis is not reachable at {REDIS_TEST_URL}: {exc}")
    finally:
        client.close()
    return REDIS_TEST_URL


@pytest.fixture
def redis_url(redis_server_url: str) -> Iterator[str]:
    """``REDIS_TEST_URL``, flushed before and after the test."""
    import redis

    client = redis.Redis.from_url(redis_server_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.flushdb()
        yield redis_server_url
        client.flushdb()
    finally:
        client.close()


# Chromium (Debian's) driven by Playwright ------------------------------------------------------------

#: Debian's chromium (scripts/install-test-deps.sh installs it); Playwright's own download is not used.
CHROMIUM = os.environ.get("CONSULTAS_TEST_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture
def chromium() -> Iterator[Any]:
    """A headless Chromium (a Playwright ``Browser``) for one test.

    Per test, not per session: Playwright's sync API keeps an event loop running in the main
    thread while it is started, which would break the asyncio tests that run after it.
    """
    if not os.path.exists(CHROMIUM):
        server_unavailable(f"chromium not found at {CHROMIUM}")
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        server_unavailable("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        except PlaywrightError as exc:
            server_unavailable(f"chromium could not start: {exc}")
        yield browser
        browser.close()

"""Real servers the test suite starts itself: Dovecot (IMAP + LMTP), an SMTP sink, a fake Bot API.

Each class starts on 127.0.0.1 with free ports, can be stopped and started again on the same ports
(outage tests), and offers small synchronous helpers for the test side. Fixtures live in
``tests/plugins/servers.py``.
"""

from tests.servers.dovecot import DovecotServer, DovecotUnavailableError
from tests.servers.fake_bot_api import FakeBotApi
from tests.servers.smtp_sink import Captured, SmtpSink

__all__ = ["Captured", "DovecotServer", "DovecotUnavailableError", "FakeBotApi", "SmtpSink"]

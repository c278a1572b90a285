"""Errors of the consultas service, named by what the caller does next.

::

    ConsultasError
     +-- ConfigurationError        a setting is wrong: stop with one clear message
     +-- QuarantineError           keep the mail, move it to quarantine, tell OGDAU
     |    +-- MalformedMailError   the mail cannot be parsed at all
     +-- IgnoredMailError          automatic mail: stored, logged once, never answered
     +-- TransientError            retry later (a server is down)
     +-- PermanentError            record the failure on the row and stop
     +-- RegistryError             the Red registry file is invalid

Library exceptions are translated into these once, at the edge (``raise ... from exc``).
"""

from __future__ import annotations


class ConsultasError(Exception):
    """Base class of every error this service raises on purpose."""


class ConfigurationError(ConsultasError):
    """Raised when a setting is missing or has a wrong value."""


class QuarantineError(ConsultasError):
    """Raised when a mail cannot be processed and must be kept aside for a person."""


class MalformedMailError(QuarantineError):
    """Raised when a mail's bytes cannot be parsed as a message at all."""


class IgnoredMailError(ConsultasError):
    """Raised when a mail is automatic (auto-reply, bounce, bulk) and must never be answered."""


class TransientError(ConsultasError):
    """Raised when a server is unreachable or busy: the work is retried later."""


class PermanentError(ConsultasError):
    """Raised when retrying cannot help (recipient refused): the failure is recorded."""


class RegistryError(ConsultasError):
    """Raised when the Red registry file is invalid; each message names the organo and field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems

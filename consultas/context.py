"""What the use cases need to know from the settings, resolved once at start-up.

Use cases (admission, routing, reminders) take a ``ServiceConfig`` and ``now``; they never read
settings or the clock themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from consultas.calendar import WorkingCalendar
from consultas.outbox import MailIdentity
from consultas.settings import Settings


@dataclass(frozen=True)
class ServiceConfig:
    identity: MailIdentity  # our mailbox address and display name
    calendar: WorkingCalendar
    number_prefix: str
    due_working_days: int
    ogdau_email: str
    ogsu_email: str
    secret_key: bytes  # signs Red reply addresses
    auto_reply_cap: int  # automatic mails per recipient per 24 h
    max_attachment_bytes: int
    reminder_offsets: tuple[int, ...]  # working days before the due date
    subsanacion_expiry_working_days: int
    public_url: str = "http://127.0.0.1:8080"  # base of the links in mails (the status page)
    absence_days: int = 7  # how long an out-of-office reply keeps a Red member away (routing.absence)
    authserv_id: str = ""  # the ministry MTA's Authentication-Results id; "" = not checked

    @property
    def mailbox(self) -> str:
        return self.identity.address

    @property
    def own_addresses(self) -> frozenset[str]:
        """Addresses whose mail is our own coming back (loop protection)."""
        return frozenset({self.identity.address.lower()})

    @classmethod
    def from_settings(cls, settings: Settings) -> ServiceConfig:
        return cls(
            identity=MailIdentity(address=settings.mailbox_address, name=settings.mail_from_name),
            calendar=WorkingCalendar(settings.non_working_days, tz=settings.timezone),
            number_prefix=settings.number_prefix,
            due_working_days=settings.due_working_days,
            ogdau_email=settings.ogdau_email,
            ogsu_email=settings.ogsu_email,
            secret_key=settings.secret_key_bytes(),
            auto_reply_cap=settings.auto_reply_cap_per_day,
            max_attachment_bytes=settings.max_attachment_bytes,
            reminder_offsets=tuple(settings.reminder_offsets),
            subsanacion_expiry_working_days=settings.subsanacion_expiry_working_days,
            public_url=settings.public_url,
            absence_days=settings.absence_days,
            authserv_id=settings.authserv_id.strip().lower(),
        )

    def status_url(self, number: str) -> str:
        """The public status page of consulta ``number`` (the link in its confirmation)."""
        return f"{self.public_url}/estado?numero={number}"

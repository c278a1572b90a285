"""The service's settings: ``CONSULTAS_*`` environment variables (or a ``.env`` file).

Defaults run the whole service on a laptop (SQLite under ``./var/``, the in-process broker, a Maildir
inbox and an outbox folder of .eml files); production changes URLs, not code. Settings are built once
in ``main()`` and passed down: the core never reads the environment.
"""

from __future__ import annotations

import ipaddress
import secrets
from datetime import date
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from consultas.errors import ConfigurationError

#: Where the embedded default keeps its files (SQLite database, Maildir, outbox, secret key).
DEFAULT_VAR_DIR = Path("var")
ENV_PREFIX = "CONSULTAS_"


def _split_csv(value: Any) -> Any:
    """Accept ``a,b,c`` (the documented form) as well as a JSON-style list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every setting of the service; see README "Configuration" for the meaning of each."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # Storage and queue
    var_dir: Path = DEFAULT_VAR_DIR
    database_url: str = ""
    broker_url: str = "memory"

    # Mailbox (IMAP); empty host = the embedded Maildir source under var_dir
    imap_host: str = ""
    imap_port: int = Field(993, ge=1, le=65535)
    imap_user: str = ""
    imap_password: SecretStr = SecretStr("")
    imap_ssl: bool = True
    imap_folder: str = "INBOX"
    imap_processed_folder: str = "Procesados"
    imap_quarantine_folder: str = "Cuarentena"
    imap_poll_interval_s: float = Field(5.0, gt=0)
    imap_idle_timeout_s: float = Field(240.0, gt=0)
    imap_timeout_s: float = Field(30.0, gt=0)

    # Outgoing mail (SMTP); empty host = .eml files in var_dir/outbox
    smtp_host: str = ""
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_user: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_starttls: bool = True
    smtp_ssl: bool = False
    smtp_timeout_s: float = Field(30.0, gt=0)

    # Addresses
    mailbox_address: str = "consultas@mef.gob.pe"
    mail_from_name: str = "Consultas MEF"
    ogdau_email: str = "ogdau@mef.gob.pe"
    ogsu_email: str = ""
    red_file: Path | None = None
    secret_key: SecretStr = SecretStr("")

    # Telegram
    telegram_token: SecretStr = SecretStr("")
    telegram_api_url: str = "https://api.telegram.org/bot"
    telegram_webhook_url: str = ""

    # Web form, status page and public API (the ``web`` package)
    web_host: str = "127.0.0.1"
    web_port: int = Field(8080, ge=1, le=65535)
    public_url: str = "http://127.0.0.1:8080"
    entities_file: Path | None = None
    web_rate_limit: int = Field(10, ge=1)
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    web_frame_ancestors: str = "'none'"

    # Time rules (directive 5.1, 5.6)
    timezone: str = "America/Lima"
    non_working_days: Annotated[list[date], NoDecode] = Field(default_factory=list)
    due_working_days: int = Field(10, ge=1, le=60)
    reminder_offsets: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [3, 0])
    subsanacion_expiry_working_days: int = Field(10, ge=1)

    # Numbering and limits
    number_prefix: str = Field("CONS", pattern=r"^[A-Z]{2,10}$")
    max_attachment_bytes: int = Field(10 * 1024 * 1024, ge=0)
    auto_reply_cap_per_day: int = Field(5, ge=1)
    outbox_max_attempts: int = Field(8, ge=1)
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")

    # Operations and data protection (consultas.watchdog, routing.absence, routing.authres, consultas.privacy)
    log_format: str = Field("text", pattern=r"^(text|json)$")
    ops_email: str = ""
    watchdog_interval_s: float = Field(30.0, gt=0)
    absence_days: int = Field(7, ge=1, le=365)
    authserv_id: str = ""
    retention_years: int = Field(5, ge=1, le=100)

    @field_validator("non_working_days", "reminder_offsets", "trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"not an IP address or network: {item!r}") from exc
        return value

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("web_frame_ancestors")
    @classmethod
    def _csp_source_list(cls, value: str) -> str:
        # One CSP directive's sources: a ';' or a newline would inject further directives.
        if any(ch in value for ch in ";,\r\n") or not value.strip():
            raise ValueError("must be a space-separated CSP source list, e.g. 'self' https://www.mef.gob.pe")
        return value.strip()

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("broker_url")
    @classmethod
    def _known_broker(cls, value: str) -> str:
        if value != "memory" and not value.startswith(("redis://", "rediss://")):
            raise ValueError("must be 'memory' or a redis:// URL")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must be an sqlite:/// or postgresql+psycopg:// URL")
        return value

    # Derived values -----------------------------------------------------------------------------

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to an SQLite file under ``var_dir``."""
        return self.database_url or f"sqlite:///{self.var_dir / 'consultas.sqlite3'}"

    @property
    def maildir_path(self) -> Path:
        """The embedded inbox (a Maildir) used when no IMAP host is set."""
        return self.var_dir / "maildir"

    @property
    def outbox_dir(self) -> Path:
        """Where the embedded mode writes outgoing mail as .eml files when no SMTP host is set."""
        return self.var_dir / "outbox"

    def secret_key_bytes(self) -> bytes:
        """The HMAC key for signed reply addresses.

        The embedded default (no ``CONSULTAS_SECRET_KEY``) creates a random key once under
        ``var_dir`` so that a laptop run works and stays stable across restarts.
        """
        if self.secret_key.get_secret_value():
            return self.secret_key.get_secret_value().encode()
        key_file = self.var_dir / "secret.key"
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.write_text(secrets.token_hex(32))
            key_file.chmod(0o600)
        return key_file.read_text().strip().encode()


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment; raise one ConfigurationError naming each bad setting."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ENV_PREFIX + "_".join(str(part) for part in error["loc"][:1]).upper()
            given = error.get("input")
            shown = f" (got {given!r})" if isinstance(given, str | int | float) else ""
            problems.append(f"{name}: {error['msg']}{shown}")
        raise ConfigurationError("invalid setting: " + "; ".join(problems)) from exc
    if settings.resolved_database_url.startswith("postgresql") and not settings.secret_key.get_secret_value():
        raise ConfigurationError(
            "invalid setting: CONSULTAS_SECRET_KEY: required when CONSULTAS_DATABASE_URL is PostgreSQL "
            "(production); it signs the Red reply addresses"
        )
    return settings


def telegram_file_url(api_url: str) -> str:
    """The Bot API file URL that goes with ``api_url`` (``.../bot`` -> ``.../file/bot``)."""
    base = api_url.rstrip("/")
    head, _, tail = base.rpartition("/")
    return f"{head}/file/{tail}" if head else f"{base}/file"

"""A throwaway Dovecot (IMAP + LMTP) for edge tests, with sync stdlib helpers for the test side.

Follows the verified recipe in INFRA.md: config in a temp dir, ``ssl = no``, plaintext auth, a
passwd-file of ``user:{PLAIN}password`` lines and a static userdb whose owner is never uid 0 (a
root-owned mailbox makes logins hang). Mail is read back with ``BODY.PEEK[]`` so helpers never set
``\\Seen`` behind the test's back.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import email.utils
import grp
import imaplib
import os
import pwd
import re
import shutil
import signal
import smtplib
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.servers._net import POLL_INTERVAL_S, free_port, wait_for_port

#: Mailboxes every test Dovecot has: the service's own, OGDAU, two Red members and a citizen.
DEFAULT_USERS: Mapping[str, str] = {
    "consultas@mef.gob.pe": "secret",
    "ogdau@mef.gob.pe": "secret",
    "titular.dgpp@mef.gob.pe": "secret",
    "alterno.dgpp@mef.gob.pe": "secret",
    "ciudadano@example.pe": "secret",
}
#: How long start and stop may take before the test fails (Dovecot needs ~0.02 s to listen).
START_TIMEOUT_S = 15.0
IMAP_TIMEOUT_S = 10.0
#: How long the master may take to exit on SIGTERM before its stuck children are killed.
STOP_GRACE_S = 0.3

_LIST_LINE = re.compile(rb'^\((?P<flags>[^)]*)\) (?P<delim>"[^"]*"|NIL) (?P<name>.+)$')
_FLAGS = re.compile(rb"FLAGS \((?P<flags>[^)]*)\)")
_UID = re.compile(rb"UID (?P<uid>\d+)")


class DovecotUnavailableError(RuntimeError):
    """Raised when the Dovecot binary is not installed (run scripts/install-test-deps.sh)."""


def find_dovecot() -> str:
    """Return the path of the dovecot binary (often in /usr/sbin, off a normal user's PATH)."""
    found = shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise DovecotUnavailableError(
            "dovecot is not installed (apt-get install dovecot-core dovecot-imapd dovecot-lmtpd, "
            "or run scripts/install-test-deps.sh as root)"
        )
    return found


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class DovecotServer:
    """One Dovecot master on 127.0.0.1 with its own config, users, mail and free ports."""

    def __init__(self, users: Mapping[str, str] | None = None, *, root_dir: Path | None = None) -> None:
        self.binary = find_dovecot()
        self.host = "127.0.0.1"
        self.imap_port = free_port(self.host)
        self.lmtp_port = free_port(self.host)
        self._owns_dir = root_dir is None
        self.dir = Path(tempfile.mkdtemp(prefix="dovecot-")) if root_dir is None else root_dir
        # Dovecot's unprivileged login processes must traverse the directory to reach base_dir.
        self.dir.chmod(0o755)
        self.config_path = self.dir / "dovecot.conf"
        self.log_path = self.dir / "dovecot.log"
        self._users: dict[str, str] = dict(DEFAULT_USERS if users is None else users)
        self._running = False
        self._write_config()
        self._write_users()

    # Lifecycle ------------------------------------------------------------------------------------

    @property
    def users(self) -> dict[str, str]:
        """The mailbox users and their passwords."""
        return dict(self._users)

    @property
    def is_running(self) -> bool:
        """Tell whether this Dovecot is started (as far as start()/stop() know)."""
        return self._running

    def start(self) -> None:
        """Start Dovecot (daemonizes) and wait until IMAP and LMTP accept connections."""
        if self._running:
            return
        # The daemon inherits our descriptors: a pipe would never reach EOF, so use a file.
        with (self.dir / "start.err").open("w+") as errors:
            result = subprocess.run(
                [self.binary, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                timeout=START_TIMEOUT_S,
                check=False,
            )
            errors.seek(0)
            stderr = errors.read().strip()
        if result.returncode != 0:
            raise RuntimeError(f"dovecot did not start: {stderr}\n{self.log_tail()}")
        self._running = True
        try:
            wait_for_port(self.host, self.imap_port, timeout_s=START_TIMEOUT_S)
            wait_for_port(self.host, self.lmtp_port, timeout_s=START_TIMEOUT_S)
        except TimeoutError as exc:
            self.stop()
            raise RuntimeError(f"dovecot is not listening: {exc}\n{self.log_tail()}") from exc

    def stop(self) -> None:
        """Stop Dovecot and wait until its master process is gone and the ports refuse connections."""
        if not self._running:
            return
        master_pid = self._master_pid()
        if master_pid is None:
            subprocess.run(
                [self.binary, "-c", str(self.config_path), "stop"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=START_TIMEOUT_S,
                check=False,
            )
        else:
            # What `dovecot stop` does, minus its wait: a child that was still reading its config
            # when the master got SIGTERM blocks ~5 s, so after a grace period its children are
            # killed (only this master's children, by pid).
            os.kill(master_pid, signal.SIGTERM)
            if not _wait_until_gone(master_pid, STOP_GRACE_S):
                for child in _children(master_pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child, signal.SIGKILL)
                if not _wait_until_gone(master_pid, START_TIMEOUT_S):
                    raise TimeoutError(f"dovecot master {master_pid} still running\n{self.log_tail()}")
        wait_for_port(self.host, self.imap_port, open_=False, timeout_s=START_TIMEOUT_S)
        wait_for_port(self.host, self.lmtp_port, open_=False, timeout_s=START_TIMEOUT_S)
        self._running = False

    def close(self) -> None:
        """Stop Dovecot and remove its directory (config, mail, logs)."""
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> DovecotServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def log_tail(self, lines: int = 20) -> str:
        """Return the last lines of Dovecot's log (for failure messages)."""
        if not self.log_path.exists():
            return "(no dovecot log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    # Users ----------------------------------------------------------------------------------------

    def add_user(self, user: str, password: str = "secret") -> None:
        """Add (or change) a mailbox user and wait until Dovecot accepts its login.

        Dovecot re-reads a changed passwd-file at most once a second, hence the polling.
        """
        self._users[user] = password
        self._write_users()
        if not self._running:
            return
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with self.imap(user):
                    return
            except imaplib.IMAP4.error:
                if time.monotonic() > deadline:
                    raise
                time.sleep(POLL_INTERVAL_S * 10)

    # Mail helpers (sync, stdlib) ------------------------------------------------------------------

    @contextlib.contextmanager
    def imap(self, user: str) -> Iterator[imaplib.IMAP4]:
        """Yield a logged-in stdlib IMAP client for ``user``."""
        client = imaplib.IMAP4(self.host, self.imap_port, timeout=IMAP_TIMEOUT_S)
        try:
            client.login(user, self._users[user])
            yield client
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                client.logout()

    def deliver(self, raw: bytes, user: str, folder: str = "INBOX") -> None:
        """Put a mail into ``user``'s ``folder``: LMTP for INBOX (real delivery), APPEND otherwise."""
        if folder == "INBOX":
            parsed = email.message_from_bytes(raw, policy=email.policy.default)
            sender = email.utils.parseaddr(str(parsed.get("From", "")))[1] or "remitente@example.pe"
            with smtplib.LMTP(self.host, self.lmtp_port, timeout=IMAP_TIMEOUT_S) as lmtp:
                lmtp.sendmail(sender, [user], raw)
            return
        with self.imap(user) as client:
            self._create_folder(client, folder)
            typ, data = client.append(_quote(folder), "", None, raw)
            if typ != "OK":
                raise RuntimeError(f"APPEND to {folder} failed: {data!r}")

    def create_folder(self, user: str, folder: str) -> None:
        """Create ``folder`` for ``user`` (no error if it exists)."""
        with self.imap(user) as client:
            self._create_folder(client, folder)

    def list_messages(self, user: str, folder: str = "INBOX") -> list[bytes]:
        """Return the raw bytes of every mail in ``folder``, in UID order, without setting \\Seen."""
        with self.imap(user) as client:
            if not self._select(client, folder):
                return []
            typ, data = client.uid("SEARCH", "ALL")
            uids = data[0].split() if typ == "OK" and data and data[0] else []
            messages = []
            for uid in uids:
                typ, fetched = client.uid("FETCH", uid.decode(), "(BODY.PEEK[])")
                for item in fetched:
                    if isinstance(item, tuple):
                        messages.append(item[1])
            return messages

    def message_count(self, user: str, folder: str = "INBOX") -> int:
        """Return how many mails ``folder`` holds (0 if it does not exist)."""
        with self.imap(user) as client:
            if not self._select(client, folder):
                return 0
            typ, data = client.uid("SEARCH", "ALL")
            return len(data[0].split()) if typ == "OK" and data and data[0] else 0

    def folder_names(self, user: str) -> list[str]:
        """Return ``user``'s folder names, sorted (ASCII names; modified UTF-7 is not decoded)."""
        with self.imap(user) as client:
            return sorted(self._folders(client))

    def flags(self, user: str, folder: str = "INBOX") -> dict[str, frozenset[str]]:
        """Return each mail's IMAP flags keyed by its Message-ID (``<uid:N>`` when it has none)."""
        with self.imap(user) as client:
            if not self._select(client, folder):
                return {}
            typ, data = client.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            if typ != "OK":
                return {}
            result: dict[str, frozenset[str]] = {}
            for item in data:
                if not isinstance(item, tuple):
                    continue
                meta, header = item
                flags_match = _FLAGS.search(meta)
                uid_match = _UID.search(meta)
                flags = frozenset(flags_match.group("flags").decode().split()) if flags_match else frozenset()
                parsed = email.message_from_bytes(header, policy=email.policy.default)
                uid = uid_match.group("uid").decode() if uid_match else "?"
                key = str(parsed.get("Message-ID", "")).strip() or f"<uid:{uid}>"
                result[key] = flags
            return result

    def reset(self) -> None:
        """Empty every user's mailbox: delete all folders but INBOX and expunge INBOX."""
        for user in self._users:
            with self.imap(user) as client:
                for folder in sorted(self._folders(client), key=len, reverse=True):
                    if folder != "INBOX":
                        client.delete(_quote(folder))
                if self._select(client, "INBOX", readonly=False):
                    typ, data = client.uid("SEARCH", "ALL")
                    if typ == "OK" and data and data[0]:
                        client.uid("STORE", "1:*", "+FLAGS.SILENT", r"(\Deleted)")
                        client.expunge()

    # Internals ------------------------------------------------------------------------------------

    @staticmethod
    def _select(client: imaplib.IMAP4, folder: str, *, readonly: bool = True) -> bool:
        typ, _ = client.select(_quote(folder), readonly=readonly)
        return typ == "OK"

    @staticmethod
    def _create_folder(client: imaplib.IMAP4, folder: str) -> None:
        typ, data = client.create(_quote(folder))
        if typ != "OK" and b"ALREADYEXISTS" not in b" ".join(d for d in data if isinstance(d, bytes)):
            raise RuntimeError(f"CREATE {folder} failed: {data!r}")

    @staticmethod
    def _folders(client: imaplib.IMAP4) -> list[str]:
        typ, data = client.list()
        names = []
        for line in data if typ == "OK" else []:
            if not isinstance(line, bytes):
                continue
            match = _LIST_LINE.match(line)
            if match is None:
                continue
            name = match.group("name").decode()
            if name.startswith('"') and name.endswith('"'):
                name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            names.append(name)
        return names

    def _master_pid(self) -> int | None:
        pid_file = self.dir / "run" / "master.pid"
        try:
            return int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _write_users(self) -> None:
        lines = [f"{user}:{{PLAIN}}{password}" for user, password in self._users.items()]
        users_file = self.dir / "users"
        users_file.write_text("\n".join(lines) + "\n")
        users_file.chmod(0o644)

    def _write_config(self) -> None:
        run_dir = self.dir / "run"
        mail_dir = self.dir / "mail"
        run_dir.mkdir(exist_ok=True)
        mail_dir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            # The mail owner must not be uid 0: Dovecot refuses it and the login hangs until timeout.
            owner = "uid=mail gid=mail"
            os.chown(mail_dir, pwd.getpwnam("mail").pw_uid, grp.getgrnam("mail").gr_gid)
            rootless = chroot = ""
        else:
            # Rootless Dovecot (a developer's own account): every process runs as the current user.
            account = pwd.getpwuid(os.geteuid()).pw_name
            group = grp.getgrgid(os.getegid()).gr_name
            owner = f"uid={os.geteuid()} gid={os.getegid()}"
            rootless = (
                f"default_internal_user = {account}\ndefault_internal_group = {group}\n"
                f"default_login_user = {account}\n"
            )
            chroot = "  chroot =\n"  # only root may chroot
        self.config_path.write_text(
            f"""base_dir = {run_dir}
state_dir = {run_dir}
log_path = {self.log_path}
{rootless}protocols = imap lmtp
listen = {self.host}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
# A wrong password answers at once (the default 2 s penalty only slows tests down).
auth_failure_delay = 0
first_valid_uid = 1
# No stats process: its handshake timeout made every stop take several seconds.
stats_writer_socket_path =
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.dir / "users"}
}}
userdb {{
  driver = static
  args = {owner} home={mail_dir}/%u
}}
protocol imap {{
  mail_max_userip_connections = 100
}}
# No anvil "auth penalty": after one failed login it delays every login from the IP by seconds.
service anvil {{
{chroot}  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
{chroot}  inet_listener imap {{
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = {self.host}
    port = {self.lmtp_port}
  }}
}}
"""
        )


def _wait_until_gone(pid: int, timeout_s: float) -> bool:
    """Poll until process ``pid`` has exited (a zombie counts as gone); False on timeout."""
    deadline = time.monotonic() + timeout_s
    while _is_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_INTERVAL_S)
    return True


def _children(pid: int) -> list[int]:
    """Return the pids whose parent is ``pid`` (from /proc)."""
    children = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            children.append(int(stat_file.parent.name))
    return children


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status

"""Where the intake benchmarks run the SMTP sink and the sending workers (shared by both benchmarks).

Topologies (``--sink``, ``--workers`` of bench/bench_intake.py and bench/bench_intake_imap.py):

- ``--sink process`` (default): ``ProcessSink`` runs this file as a script (``python
  bench/intake_topology.py sink --port P --expected N``): an aiosmtpd ``Controller`` in its own
  process, which reports on its stdout as JSON lines: ``ready``, ``done`` (the N-th confirmation
  arrived, with the counts and its time) and ``final`` (the counts when told to stop by SIGTERM or
  by its stdin closing). Times are ``CLOCK_MONOTONIC`` (``monotonic_s``), system-wide on Linux, so
  the benchmark subtracts its own start time from the sink's arrival time.
- ``--sink thread``: ``ThreadSink``, the same handler in a thread of the benchmark process.
- ``--workers process`` (default): ``WorkerProcesses`` starts ``consultas worker --processes K
  --threads T`` (the Dramatiq CLI: one supervisor plus K worker processes) on a Redis broker whose
  database is flushed first; the benchmark process hints the sends through it.
- ``--workers inprocess``: ``start_inprocess_workers`` on the memory broker, in the benchmark process.

Peak RSS per role (``PeakRss``): the benchmark process from ``getrusage(RUSAGE_SELF)``, every other
process from ``VmHWM`` in ``/proc/<pid>/status`` read just before it is stopped.

CPU per role (``CpuMeter``): the CPU time (user + system, ``/proc/<pid>/stat``) every process of
the machine spent between the start of the intake and the last confirmation, by role: ``intake``
(the benchmark process), ``workers`` (the ``consultas worker`` processes), ``sink``, ``postgres``
(every PostgreSQL process), ``dovecot`` (IMAP mode) and ``other`` (the rest of the machine); and
how many cores the machine kept busy (``/proc/stat``). Divided by N it is the CPU each mail costs
every part of the topology: their sum over the number of cores is the throughput ceiling.

Only the standard library is imported at module level: the sink process stays small.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

CONFIRMATION_MARK = b"ha sido registrada"
#: Redis database of the ``--workers process`` broker; flushed at the start of every run.
DEFAULT_REDIS_URL = os.environ.get("CONSULTAS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
#: Redis databases the benchmark refuses to flush (the default one and the test suite's).
PROTECTED_REDIS_DBS = frozenset({0, 15})
SINK_START_TIMEOUT_S = 30.0
SMTP_SINK_BINARY = "/usr/sbin/smtp-sink"
#: Where smtp-sink's dumps go: memory (tmpfs) where the machine has it. On this machine's disk the
#: same dumps cost smtp-sink 0.26 to 1.16 ms of CPU per mail (file system work, varying by run; ~1
#: in most runs) against 0.17 to 0.2 on tmpfs: CPU the service under test lost on the same two cores.
DUMP_PARENT = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
SINK_STOP_TIMEOUT_S = 15.0
WORKER_READY_TIMEOUT_S = 120.0
WORKER_STOP_TIMEOUT_S = 60.0
WORKER_READY_LINE = "Worker process is ready for action."


def monotonic_s() -> float:
    """``CLOCK_MONOTONIC`` in seconds: one clock for the benchmark and the sink process."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def vmhwm_mb(pid: int) -> float | None:
    """Peak resident set size of a running process (``VmHWM``), None once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def processes() -> Iterator[tuple[int, list[str]]]:
    """Every process's pid and the fields of ``/proc/<pid>/stat`` after its name (state, ppid, ...)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        yield int(entry), fields


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (scanning /proc: no dependency on CONFIG_PROC_CHILDREN)."""
    return sorted(child for child, fields in processes() if int(fields[1]) == pid)


def exit_on_sigterm() -> None:
    """SIGTERM raises SystemExit in the benchmark, so its ``finally`` blocks stop the processes."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def self_peak_rss_mb() -> float:
    """Peak RSS of the benchmark process since it started (``getrusage(RUSAGE_SELF)``)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# Sink -----------------------------------------------------------------------------------------------


class SinkCounts(Protocol):
    """What the checks read from a sink once it is stopped."""

    @property
    def mails(self) -> int: ...

    @property
    def confirmations(self) -> int: ...


class CountingHandler:
    """aiosmtpd handler counting every mail and the confirmations, and when the last one arrived."""

    def __init__(self, expected: int, on_done: Callable[[], None] | None = None) -> None:
        self.lock = threading.Lock()
        self.expected = expected
        self.mails = 0
        self.confirmations = 0
        self.last_at = 0.0
        self.done = threading.Event()
        self._on_done = on_done

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        head = bytes(envelope.content[:2048])
        with self.lock:
            self.mails += 1
            if CONFIRMATION_MARK in head:
                self.confirmations += 1
                self.last_at = monotonic_s()
                if self.confirmations >= self.expected and not self.done.is_set():
                    self.done.set()
                    if self._on_done is not None:
                        self._on_done()
        return "250 OK"


class ThreadSink:
    """``--sink thread``: an aiosmtpd Controller in a thread of the benchmark process."""

    kind = "thread"

    def __init__(self, port: int, expected: int) -> None:
        from aiosmtpd.controller import Controller

        self.port = port
        self.handler = CountingHandler(expected)
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=port)
        self.peak_rss_mb: float | None = None  # shares the benchmark process's

    @property
    def mails(self) -> int:
        return self.handler.mails

    @property
    def confirmations(self) -> int:
        return self.handler.confirmations

    @property
    def last_at(self) -> float:
        return self.handler.last_at

    def start(self) -> None:
        self._controller.start()

    def wait(self, timeout_s: float) -> bool:
        """True once the expected number of confirmations has arrived."""
        return self.handler.done.wait(timeout_s)

    def check_alive(self) -> None:
        """Nothing to check: the thread lives as long as this process."""

    def stop(self) -> None:
        self._controller.stop()


class ProcessSink:
    """``--sink process``: this file run as ``sink`` in a child process, read through its stdout."""

    kind = "process"

    def __init__(self, port: int, expected: int) -> None:
        self.port = port
        self.expected = expected
        self.mails = 0
        self.confirmations = 0
        self.last_at = 0.0
        self.peak_rss_mb: float | None = None
        self._events = {name: threading.Event() for name in ("ready", "done", "final")}
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._stderr: list[str] = []

    def start(self) -> None:
        command = [
            sys.executable, str(Path(__file__).resolve()), "sink",
            "--port", str(self.port), "--expected", str(self.expected),
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._reader = threading.Thread(
            target=self._read, args=(self._proc.stdout,), name="sink-reports", daemon=True
        )
        self._reader.start()
        threading.Thread(
            target=self._drain_stderr, args=(self._proc.stderr,), name="sink-stderr", daemon=True
        ).start()
        deadline = monotonic_s() + SINK_START_TIMEOUT_S
        while not self._events["ready"].wait(0.05):
            if self._proc.poll() is not None or monotonic_s() > deadline:
                self.stop()
                raise RuntimeError(f"SMTP sink did not start: {''.join(self._stderr)[-2000:]}")

    def wait(self, timeout_s: float) -> bool:
        """True once the sink has reported the expected number of confirmations."""
        return self._events["done"].wait(timeout_s)

    def check_alive(self) -> None:
        """RuntimeError when the sink process has ended (waiting for it would last until the deadline)."""
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"SMTP sink process exited: {''.join(self._stderr)[-2000:]}")

    def stop(self) -> None:
        """Read the sink's peak RSS, stop it (SIGTERM), take its final counts."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self.peak_rss_mb = vmhwm_mb(proc.pid)
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(SINK_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if self._reader is not None:
            self._reader.join(SINK_STOP_TIMEOUT_S)
        if proc.stdin is not None:
            proc.stdin.close()
        if not self._events["final"].is_set():
            print(f"SMTP sink gave no final report: {''.join(self._stderr)[-2000:]}", file=sys.stderr)
        self._proc = None

    def _read(self, stdout: IO[bytes]) -> None:
        for line in stdout:
            try:
                report = json.loads(line)
            except ValueError:
                continue
            if "mails" in report:
                self.mails = int(report["mails"])
                self.confirmations = int(report["confirmations"])
                self.last_at = float(report["last_at"])
            event = self._events.get(str(report.get("event")))
            if event is not None:
                event.set()

    def _drain_stderr(self, stderr: IO[bytes]) -> None:
        for line in stderr:
            self._stderr.append(line.decode("utf-8", "replace"))


class DumpedMails:
    """Counts of the mails smtp-sink dumped into ``folder``, one file each, read as they appear.

    ``read_new`` reads the files in the folder (the first 4 KB: smtp-sink's own headers, then the
    mail's), counts mails and confirmations, and deletes each file counted, so the folder and this
    object stay small over 200,000 mails. A confirmation's arrival (``last_at``, in ``monotonic_s``
    terms) is its file's mtime. A file whose headers are not all written yet is left for the next
    call.
    """

    #: Files read per call at most; the rest are read by the next call.
    READ_PER_CALL = 5000

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.mails = 0
        self.confirmations = 0
        self.last_at = 0.0
        self._wall_minus_monotonic = time.time() - monotonic_s()

    def read_new(self) -> int:
        """Count (and delete) the complete files in the folder; how many were counted."""
        counted = 0
        with os.scandir(self.folder) as entries:
            for entry in entries:
                with open(entry.path, "rb") as dumped:
                    head = dumped.read(4096)
                if b"\n\n" not in head and b"\r\n\r\n" not in head and len(head) < 4096:
                    continue  # still being written
                self.mails += 1
                if CONFIRMATION_MARK in head:
                    self.confirmations += 1
                    self.last_at = max(self.last_at, entry.stat().st_mtime - self._wall_minus_monotonic)
                os.unlink(entry.path)
                counted += 1
                if counted >= self.READ_PER_CALL:
                    break
        return counted


class PostfixSink:
    """``--sink smtp-sink``: Postfix's ``smtp-sink`` benchmarking server, dumping each mail to a file.

    A C program: receiving costs the machine far less CPU than aiosmtpd, so the figures show more of
    what the service itself costs. The dumps go to a temporary folder (under ``DUMP_PARENT``: in
    memory where the machine has /dev/shm), counted by ``DumpedMails`` on every ``wait`` and once
    more when stopped.
    """

    kind = "smtp-sink"

    def __init__(self, port: int, expected: int) -> None:
        self.port = port
        self.expected = expected
        self.peak_rss_mb: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._dumped: DumpedMails | None = None  # kept after stop: its counts are the final ones

    @property
    def mails(self) -> int:
        return self._dumped.mails if self._dumped else 0

    @property
    def confirmations(self) -> int:
        return self._dumped.confirmations if self._dumped else 0

    @property
    def last_at(self) -> float:
        return self._dumped.last_at if self._dumped else 0.0

    def start(self) -> None:
        binary = shutil.which("smtp-sink") or SMTP_SINK_BINARY
        if not os.access(binary, os.X_OK):
            raise RuntimeError(
                f"--sink smtp-sink needs Postfix's smtp-sink ({SMTP_SINK_BINARY}): install postfix"
            )
        self._folder = tempfile.TemporaryDirectory(prefix="consultas-smtp-sink-", dir=DUMP_PARENT)
        self._dumped = DumpedMails(Path(self._folder.name))
        user = pwd.getpwuid(os.getuid()).pw_name
        command = [binary, "-u", user, "-d", f"{self._folder.name}/m.", f"127.0.0.1:{self.port}", "256"]
        self._proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = monotonic_s() + SINK_START_TIMEOUT_S
        while not _accepts(self.port):
            if self._proc.poll() is not None or monotonic_s() > deadline:
                self.stop()
                raise RuntimeError("smtp-sink did not start")
            time.sleep(0.05)

    def wait(self, timeout_s: float) -> bool:
        """Count the mails dumped since the last call; True once the expected confirmations arrived."""
        if self._dumped is not None:
            self._dumped.read_new()
        if self.confirmations >= self.expected:
            return True
        time.sleep(timeout_s)
        return False

    def check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            stderr = self._proc.stderr.read().decode("utf-8", "replace") if self._proc.stderr else ""
            raise RuntimeError(f"smtp-sink exited: {stderr[-2000:]}")

    def stop(self) -> None:
        """Read the sink's peak RSS, stop it, count what it dumped, remove the dumps."""
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                self.peak_rss_mb = vmhwm_mb(proc.pid)
                proc.terminate()
            try:
                proc.wait(SINK_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self._proc = None
        if self._folder is not None:
            assert self._dumped is not None
            while self._dumped.read_new():
                pass
            self._folder.cleanup()
            self._folder = None


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


Sink = ThreadSink | ProcessSink | PostfixSink
#: ``--sink`` choices and their sinks.
_SINKS: dict[str, type[Sink]] = {"process": ProcessSink, "thread": ThreadSink, "smtp-sink": PostfixSink}
SINK_KINDS = tuple(_SINKS)


def make_sink(kind: str, port: int, expected: int) -> Sink:
    """The sink of ``--sink kind``, not started yet."""
    return _SINKS[kind](port, expected)


def serve_sink(port: int, expected: int, out: IO[str]) -> int:
    """Body of the sink process: serve SMTP until SIGTERM or stdin closes, reporting on ``out``."""
    from aiosmtpd.controller import Controller

    out_lock = threading.Lock()
    stop = threading.Event()

    def report(event: str, handler: CountingHandler | None = None) -> None:
        line: dict[str, Any] = {"event": event}
        if handler is not None:
            line.update(mails=handler.mails, confirmations=handler.confirmations, last_at=handler.last_at)
        with out_lock:
            out.write(json.dumps(line) + "\n")
            out.flush()

    def watch_stdin() -> None:  # the benchmark died: do not outlive it
        while sys.stdin.buffer.read(4096):
            pass
        stop.set()

    def on_done() -> None:  # called by the handler, under its lock
        report("done", handler)

    handler = CountingHandler(expected, on_done)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()
    report("ready")
    while not stop.wait(1.0):
        pass
    controller.stop()
    with handler.lock:
        report("final", handler)
    return 0


# Workers --------------------------------------------------------------------------------------------


def flush_redis(url: str) -> None:
    """Empty the benchmark's Redis database (never 0 or 15: the default one and the tests')."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        db = int(client.connection_pool.connection_kwargs.get("db", 0))
        if db in PROTECTED_REDIS_DBS:
            raise ValueError(f"refusing to flush Redis database {db} ({url}); pick another one")
        client.flushdb()
    finally:
        client.close()


def settings_env(overrides: dict[str, Any]) -> dict[str, str]:
    """``load_settings(**overrides)`` as ``CONSULTAS_*`` variables for a ``consultas`` subprocess."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CONSULTAS_")}
    for key, given in overrides.items():
        value = given.get_secret_value() if hasattr(given, "get_secret_value") else given
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        env["CONSULTAS_" + key.upper()] = text
    return env


@dataclass
class WorkerProcesses:
    """``consultas worker --processes K --threads T`` as a subprocess (the Dramatiq supervisor)."""

    env: dict[str, str]
    processes: int
    threads: int
    log_path: Path
    supervisor_rss_mb: float | None = None
    worker_rss_mb: list[float] = field(default_factory=list)
    _proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self) -> None:
        """Start the workers and wait until each worker process is ready for messages."""
        consultas = Path(sys.executable).with_name("consultas")
        command = [
            str(consultas), "worker", "--processes", str(self.processes), "--threads", str(self.threads),
        ]  # fmt: skip
        self._log = self.log_path.open("wb")
        self._proc = subprocess.Popen(
            command, env=self.env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = monotonic_s() + WORKER_READY_TIMEOUT_S
        while self._log_text().count(WORKER_READY_LINE) < self.processes:
            if self._proc.poll() is not None or monotonic_s() > deadline:
                self.stop()
                raise RuntimeError(f"consultas worker did not start:\n{self._log_text()[-3000:]}")
            time.sleep(0.05)

    def check_alive(self) -> None:
        """RuntimeError when the supervisor has ended (a worker process crashed or failed to boot)."""
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"consultas worker exited early:\n{self._log_text()[-3000:]}")

    def stop(self) -> None:
        """Read every process's peak RSS, SIGTERM the supervisor, wait for the whole tree to end."""
        proc = self._proc
        if proc is None:
            return
        children = child_pids(proc.pid) if proc.poll() is None else []
        if proc.poll() is None:
            self.supervisor_rss_mb = vmhwm_mb(proc.pid)
            self.worker_rss_mb = [mb for mb in map(vmhwm_mb, children) if mb is not None]
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(WORKER_STOP_TIMEOUT_S)  # the supervisor waits for its worker processes
        except subprocess.TimeoutExpired:
            print(
                f"consultas worker ignored SIGTERM for {WORKER_STOP_TIMEOUT_S:.0f} s: killed", file=sys.stderr
            )
            for pid in [*children, proc.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait()
        if self._log is not None:
            self._log.close()
        if proc.returncode != 0:
            print(
                f"consultas worker exited with {proc.returncode}:\n{self._log_text()[-2000:]}",
                file=sys.stderr,
            )
        self._proc = None

    def _log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""


# CPU ------------------------------------------------------------------------------------------------

CPU_ROLES = ("intake", "workers", "sink", "postgres", "dovecot", "other")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _role(pid: int, cmdline: str) -> str:
    if pid == os.getpid():
        return "intake"
    if "workers.boot:boot_from_environment" in cmdline or " worker --processes " in cmdline:
        return "workers"
    if "intake_topology.py sink" in cmdline or "smtp-sink" in cmdline:
        return "sink"
    if cmdline.startswith("postgres"):
        return "postgres"
    if "dovecot" in cmdline:
        return "dovecot"
    return "other"


def cpu_by_process() -> dict[int, tuple[str, float]]:
    """Every process's role and CPU seconds so far (user + system)."""
    seen: dict[int, tuple[str, float]] = {}
    for pid, fields in processes():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as raw:
                cmdline = raw.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except (FileNotFoundError, ProcessLookupError):
            continue
        seen[pid] = (_role(pid, cmdline), (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS)
    return seen


def machine_busy_s() -> float:
    """Seconds of CPU the whole machine spent not idle since boot (``/proc/stat``, all cores)."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / _CLOCK_TICKS


@dataclass
class CpuMeter:
    """CPU seconds per role between ``start`` and ``stop``.

    A thread reads every process every ``interval_s`` and keeps each one's last reading, so a
    process that ends in between (Dovecot's ``imap`` process when the poller logs out) still counts,
    up to its last interval; a process started in between counts whole.
    """

    interval_s: float = 1.0  # a reading of every process costs ~6 ms of the intake process here
    seconds: dict[str, float] = field(default_factory=dict)
    cores_busy: float = 0.0
    _before: dict[int, tuple[str, float]] = field(default_factory=dict)
    _last: dict[int, tuple[str, float]] = field(default_factory=dict)
    _busy_before: float = 0.0
    _started: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _sampler: threading.Thread | None = None

    def start(self) -> None:
        self._before = cpu_by_process()
        self._last = dict(self._before)
        self._busy_before = machine_busy_s()
        self._started = monotonic_s()
        self._stop.clear()
        self._sampler = threading.Thread(target=self._sample, name="cpu-meter", daemon=True)
        self._sampler.start()

    def stop(self) -> None:
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join()
        self._last.update(cpu_by_process())
        wall = monotonic_s() - self._started
        busy = machine_busy_s() - self._busy_before
        self.seconds = dict.fromkeys(CPU_ROLES, 0.0)
        for pid, (role, seconds) in self._last.items():
            before = self._before.get(pid)
            self.seconds[role] += seconds - (before[1] if before and before[0] == role else 0.0)
        self.cores_busy = busy / wall if wall > 0 else 0.0

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._last.update(cpu_by_process())

    def ms_per_mail(self, n: int) -> dict[str, float]:
        """Each role's CPU milliseconds per mail (roles under 0.01 ms left out), and ``total``."""
        per_mail = {role: round(seconds * 1000 / n, 2) for role, seconds in self.seconds.items()}
        per_mail = {role: ms for role, ms in per_mail.items() if ms >= 0.01}
        per_mail["total"] = round(sum(self.seconds.values()) * 1000 / n, 2)
        return per_mail


# Peak RSS -------------------------------------------------------------------------------------------


@dataclass
class PeakRss:
    """Largest peak RSS per role over the runs, in MB."""

    intake: float = 0.0
    worker: float | None = None
    worker_processes: int = 0
    supervisor: float | None = None
    sink: float | None = None

    def record_intake(self) -> None:
        self.intake = max(self.intake, self_peak_rss_mb())

    def record_workers(self, workers: WorkerProcesses) -> None:
        if workers.worker_rss_mb:
            self.worker = max(self.worker or 0.0, *workers.worker_rss_mb)
            self.worker_processes = len(workers.worker_rss_mb)
        if workers.supervisor_rss_mb is not None:
            self.supervisor = max(self.supervisor or 0.0, workers.supervisor_rss_mb)

    def record_sink(self, sink: Sink) -> None:
        if sink.peak_rss_mb is not None:
            self.sink = max(self.sink or 0.0, sink.peak_rss_mb)

    def text(self, *, workers: str, sink: str) -> str:
        """E.g. ``peak RSS intake 120 MB, worker 95 MB (1 process; supervisor 20 MB), sink 40 MB``."""
        inside = [
            name for name, kind in (("workers", workers), ("sink", sink)) if kind in {"inprocess", "thread"}
        ]
        parts = [f"intake {self.intake:.0f} MB" + (f" (with {' and '.join(inside)})" if inside else "")]
        if workers == "process":
            worker = "?" if self.worker is None else f"{self.worker:.0f}"
            supervisor = "?" if self.supervisor is None else f"{self.supervisor:.0f}"
            each = "largest of " if self.worker_processes > 1 else ""
            plural = "es" if self.worker_processes != 1 else ""
            parts.append(
                f"worker {worker} MB ({each}{self.worker_processes} process{plural}; "
                f"dramatiq supervisor {supervisor} MB)"
            )
        if sink != "thread":
            label = "sink" if sink == "process" else sink
            parts.append(f"{label} ? MB" if self.sink is None else f"{label} {self.sink:.0f} MB")
        return "peak RSS " + ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    """``python bench/intake_topology.py sink --port P --expected N``: the sink process."""
    parser = argparse.ArgumentParser(description="SMTP sink process of the intake benchmarks")
    commands = parser.add_subparsers(dest="command", required=True)
    sink = commands.add_parser("sink", help="count mails and confirmations; JSON lines on stdout")
    sink.add_argument("--port", type=int, required=True)
    sink.add_argument("--expected", type=int, required=True)
    args = parser.parse_args(argv)
    return serve_sink(args.port, args.expected, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())

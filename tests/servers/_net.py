"""Port helpers shared by the test servers."""

from __future__ import annotations

import socket
import time

#: Pause between two connection attempts while waiting for a port (polling, with a deadline).
POLL_INTERVAL_S = 0.01


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_open(host: str, port: int) -> bool:
    """Tell whether something accepts connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, *, open_: bool = True, timeout_s: float = 10.0) -> None:
    """Poll host:port until it accepts (or, with ``open_=False``, refuses) connections.

    Raises TimeoutError when the deadline passes first.
    """
    deadline = time.monotonic() + timeout_s
    while port_is_open(host, port) != open_:
        if time.monotonic() > deadline:
            state = "open" if open_ else "closed"
            raise TimeoutError(f"{host}:{port} was not {state} after {timeout_s} s")
        time.sleep(POLL_INTERVAL_S)

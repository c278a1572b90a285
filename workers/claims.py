"""Keeping outbox claims fresh while their mails are being sent.

A worker claims a chunk of outbox rows (``consultas.outbox.claim_many``) and sends them one by one.
While it does, a thread of its process refreshes the claims every ``REFRESH_INTERVAL_S`` seconds;
a claim not refreshed for ``consultas.outbox.CLAIM_TIMEOUT`` belongs to a worker that died (killed,
its machine gone) and is retaken by the next sweep. So a restarted service sends what a dead one
left within about half a minute, and a live worker that is slow (a large mail, a slow server) is
never robbed of its rows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from sqlalchemy.orm import Session, sessionmaker

from consultas.clock import Clock
from consultas.outbox import CLAIM_TIMEOUT, refresh_claims

logger = logging.getLogger(__name__)

#: How often held claims are refreshed: several times within ``CLAIM_TIMEOUT``, so that a slow or
#: failed refresh (the database briefly locked or unreachable) does not let a live claim expire.
REFRESH_INTERVAL_S = CLAIM_TIMEOUT.total_seconds() / 6


class ClaimKeeper:
    """The rows this process is sending, per claiming worker, refreshed by one background thread."""

    def __init__(
        self, sessions: sessionmaker[Session], clock: Clock, *, interval_s: float = REFRESH_INTERVAL_S
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.interval_s = interval_s
        self._held: dict[str, set[int]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, worker: str, outbox_ids: Iterable[int]) -> None:
        """Keep ``worker``'s claims on these rows fresh until ``release``."""
        ids = set(outbox_ids)
        if not ids:
            return
        with self._lock:
            self._held.setdefault(worker, set()).update(ids)
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(target=self._run, name="outbox-claims", daemon=True)
                self._thread.start()

    def release(self, worker: str, outbox_ids: Iterable[int]) -> None:
        """Stop refreshing these rows (their outcome is recorded, or sending stopped)."""
        with self._lock:
            held = self._held.get(worker)
            if held is None:
                return
            held.difference_update(outbox_ids)
            if not held:
                del self._held[worker]

    def refresh_once(self) -> int:
        """Refresh every held claim now; the number of rows refreshed."""
        with self._lock:
            held = {worker: sorted(ids) for worker, ids in self._held.items()}
        if not held:
            return 0
        with self.sessions.begin() as session:
            now = self.clock.now()
            return sum(refresh_claims(session, ids, worker=worker, now=now) for worker, ids in held.items())

    def close(self) -> None:
        """Stop the refresh thread (claims still held then expire like a dead worker's)."""
        self._stopping.set()
        thread = self._thread
        if thread is not None:
            thread.join(self.interval_s + 5)

    def _run(self) -> None:
        while not self._stopping.wait(self.interval_s):
            try:
                self.refresh_once()
            except Exception:  # loop boundary: a failed refresh (database locked or down) is retried
                logger.warning("outbox claims could not be refreshed; retrying", exc_info=True)

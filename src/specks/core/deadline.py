"""A request's deadline: the time by which its work must be done, and whether its client is still there.

The service makes one per request (``SPECKS_REQUEST_TIMEOUT_S`` from the end of its upload) and the
pipeline checks it where one request's work divides: each stage of each tile and pass
(``pipeline.StageTimer``), between the images of a batch. Past it, the request stops at the next
check, frees its slot and is answered 503 (``DeadlineExceededError``). Time spent waiting for a
prediction slot does not count (``extend``): a burst wider than the workers is queued and answered,
not refused because of the requests ahead of it; a waiter whose client has gone leaves the queue. A front-end that can
tell that its client has gone (the HTTP server: the connection was closed or reset) passes
``client_gone``, and the work stops at the next check too (``ClientGoneError``).

Nothing here runs on a timer: a check is a clock read (and, with ``client_gone``, one non-blocking
peek at a socket at most every ``CLIENT_PROBE_INTERVAL_S``), so checks are cheap enough for every tile.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import ClientGoneError, DeadlineExceededError

# How often a check may look at the client's socket: a peek costs a system call, and a request
# whose client left 0.2 s ago loses at most one more tile's work.
CLIENT_PROBE_INTERVAL_S = 0.2


@dataclass
class Deadline:
    """``expires_at_s`` on the ``time.monotonic`` clock; ``timeout_s`` is what the message quotes.

    client_gone: a cheap probe answering True once the client has closed its connection (None: never).
    """

    expires_at_s: float
    timeout_s: float
    client_gone: Callable[[], bool] | None = None
    _next_probe_s: float = field(default=0.0, repr=False)

    @classmethod
    def after(cls, timeout_s: float, *, client_gone: Callable[[], bool] | None = None) -> Deadline:
        """The deadline ``timeout_s`` seconds from now."""
        return cls(time.monotonic() + timeout_s, timeout_s, client_gone)

    def remaining_s(self) -> float:
        """Seconds left (negative once past)."""
        return self.expires_at_s - time.monotonic()

    def extend(self, seconds: float) -> None:
        """Move the deadline ``seconds`` later: time spent waiting for a prediction slot is not the request's work."""
        self.expires_at_s += seconds

    def check_client(self, stage: str) -> None:
        """Raise ClientGoneError once the client has gone (the deadline itself is not looked at)."""
        now = time.monotonic()
        if self.client_gone is not None and now >= self._next_probe_s:
            self._next_probe_s = now + CLIENT_PROBE_INTERVAL_S
            if self.client_gone():
                raise ClientGoneError(f"the client closed its connection; the request was stopped before {stage}")

    def check(self, stage: str) -> None:
        """Raise DeadlineExceededError past the deadline, ClientGoneError once the client has gone.

        stage: what was about to start (for the message and the log), e.g. "inference".
        """
        if time.monotonic() > self.expires_at_s:
            raise DeadlineExceededError(
                f"the request took longer than the server's limit of {self.timeout_s:g} s and was stopped "
                f"before {stage}; send a smaller image, fewer scales or tiles, or raise SPECKS_REQUEST_TIMEOUT_S"
            )
        self.check_client(stage)

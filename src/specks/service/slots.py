"""Prediction slots served in arrival order.

A worker decodes and runs at most ``count`` requests at once (``SPECKS_PREDICTIONS_PER_WORKER``);
the others wait. ``threading.Semaphore`` does not queue fairly: a thread that releases and takes
again at once (a batch between its images) gets the slot back ahead of threads that were waiting,
measured as three normal requests sent into a 15 s batch all finishing after it. Here a released
slot is handed to the oldest waiter, so a batch that takes its slot again between images queues
behind the requests that arrived meanwhile, and no waiter is overtaken.

``on_saturation`` is told when the last free slot is taken (True) and when one frees again (False):
the HTTP worker uses it to let an idle sibling worker take new connections (``web.server``).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from ..core.deadline import Deadline

# A waiter wakes this often to check whether its client has gone.
WAIT_CHECK_INTERVAL_S = 0.25


class FairSlots:
    """At most ``count`` holders at once; waiters are served first come, first served."""

    def __init__(self, count: int, on_saturation: Callable[[bool], None] | None = None) -> None:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self.count = count
        self.on_saturation = on_saturation
        self._free = count
        self._waiters: deque[threading.Event] = deque()
        self._lock = threading.Lock()

    @property
    def waiting(self) -> int:
        """How many callers wait for a slot now."""
        return len(self._waiters)

    @property
    def saturated(self) -> bool:
        """Whether every slot is taken."""
        return self._free == 0

    def acquire(self, deadline: Deadline | None = None) -> None:
        """Take a slot, waiting behind earlier callers; a ``deadline`` whose client has gone ends the wait.

        The deadline itself is not looked at: the wait is not the request's work (``Deadline.extend``).
        """
        with self._lock:
            if self._free and not self._waiters:
                self._take_free()
                return
            granted = threading.Event()
            self._waiters.append(granted)
        try:
            while not granted.wait(None if deadline is None else WAIT_CHECK_INTERVAL_S):
                if deadline is not None:
                    deadline.check_client("waiting for a prediction slot")
        except BaseException:
            self._withdraw(granted)
            raise

    def try_acquire(self) -> bool:
        """Take a slot only when one is free and nobody waits for it; never waits."""
        with self._lock:
            if self._free and not self._waiters:
                self._take_free()
                return True
            return False

    def release(self) -> None:
        """Give a slot back: to the oldest waiter when there is one (it never becomes free meanwhile)."""
        with self._lock:
            if self._waiters:
                self._waiters.popleft().set()
                return
            if self._free == self.count:
                raise RuntimeError("FairSlots released more often than acquired")
            self._free += 1
            # Told under the lock, so that saturation news arrive in the order they happened.
            if self._free == 1 and self.on_saturation is not None:
                self.on_saturation(False)

    def _take_free(self) -> None:
        """Under the lock: take a free slot, telling ``on_saturation`` when it was the last."""
        self._free -= 1
        if self._free == 0 and self.on_saturation is not None:
            self.on_saturation(True)

    def _withdraw(self, granted: threading.Event) -> None:
        """A waiter gives up (deadline, client gone): leave the queue, or pass on a slot granted meanwhile."""
        with self._lock:
            if not granted.is_set():
                self._waiters.remove(granted)
                return
        self.release()

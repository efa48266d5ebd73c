"""Read deadlines on a client's connection, and whether the client is still there.

A request's headers and body arrive on an I/O thread that blocks in ``recv``; a client trickling
one byte every few seconds would hold that thread without end (128 such clients stopped a server
with 32 threads per worker). A socket timeout bounds each ``recv``, not the whole read, so a
``Watchdog`` instead shuts the socket's read side when the read's time is up: the blocked ``recv``
returns at once, the read fails, and the thread is free. The write side stays open, so the client
still gets its answer (408, JSON) where one can be written.

Time allowed (``config.Limits``): ``read_timeout_s`` for the request line and headers; for the body
the same plus its declared length at ``min_upload_bytes_per_s`` (an unknown length counts as the
body limit). A phone on a slow uplink (256 kbit/s) sends 32 KiB/s; the default allows that.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from ..config import Limits
from ..errors import RequestTimeoutError


def body_read_s(limits: Limits, content_length: int | None) -> float:
    """Seconds a body of ``content_length`` bytes (None: unknown, chunked) may take to arrive."""
    length = limits.max_body_bytes if content_length is None else min(content_length, limits.max_body_bytes)
    return limits.read_timeout_s + length / limits.min_upload_bytes_per_s


class Watchdog:
    """Calls each scheduled callback at its time, on one daemon thread, unless it was cancelled first."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._cancelled: set[int] = set()
        self._ids = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def schedule(self, delay_s: float, callback: Callable[[], None]) -> int:
        """Call ``callback`` in ``delay_s`` seconds; returns a handle for ``cancel``."""
        with self._wake:
            handle = next(self._ids)
            heapq.heappush(self._heap, (time.monotonic() + delay_s, handle, callback))
            if self._thread is None or not self._thread.is_alive():  # first use, or after a fork
                self._thread = threading.Thread(target=self._run, name="specks-read-watchdog", daemon=True)
                self._thread.start()
            self._wake.notify()
        return handle

    def cancel(self, handle: int) -> None:
        with self._wake:
            if any(entry[1] == handle for entry in self._heap):
                self._cancelled.add(handle)

    def pending(self) -> int:
        """Callbacks scheduled and neither run nor cancelled."""
        with self._wake:
            return len(self._heap) - len(self._cancelled)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._wake.wait(None if not self._heap else self._heap[0][0] - time.monotonic())
                _, handle, callback = heapq.heappop(self._heap)
                if handle in self._cancelled:
                    self._cancelled.discard(handle)
                    continue
            with contextlib.suppress(Exception):
                callback()


WATCHDOG = Watchdog()  # one per process: the gunicorn worker's (started on first use, after the fork)


def shut_read(sock: socket.socket) -> Callable[[], None]:
    """A callback that ends reads on ``sock`` (a blocked ``recv`` returns b''); writing still works."""

    def shut() -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RD)

    return shut


def client_gone_probe(sock: socket.socket | None) -> Callable[[], bool] | None:
    """A probe answering True once the peer has closed or reset ``sock`` (None without a socket).

    It peeks without blocking: no data yet is "still there"; end of stream or a reset is "gone".
    Bytes waiting (a pipelined next request) are "still there" and stay unread.
    """
    if sock is None:
        return None

    def gone() -> bool:
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:  # reset, or the socket is closed
            return True

    return gone


def deadline_read(read: Callable[[int], bytes], sock: Any, timeout_s: float) -> Callable[[int], bytes]:
    """``read`` that fails with RequestTimeoutError (408) once ``timeout_s`` have passed since this call.

    sock: the connection (``gunicorn.socket`` in the WSGI environ); None reads with no deadline (a
    test client, a server that does not expose it).
    """
    if sock is None:
        return read
    started = time.monotonic()
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        shut_read(sock)()

    def timed_read(size: int) -> bytes:
        handle = WATCHDOG.schedule(max(0.0, timeout_s - (time.monotonic() - started)), expire)
        try:
            data = read(size)
        except Exception as exc:
            if expired.is_set():
                raise _too_slow(timeout_s) from exc
            raise
        finally:
            WATCHDOG.cancel(handle)
        if expired.is_set():
            raise _too_slow(timeout_s)
        return data

    return timed_read


def _too_slow(timeout_s: float) -> RequestTimeoutError:
    return RequestTimeoutError(
        f"the request body did not arrive within {timeout_s:.0f} s; send it faster or in a smaller request "
        "(see SPECKS_READ_TIMEOUT_S and SPECKS_MIN_UPLOAD_BYTES_PER_S)"
    )

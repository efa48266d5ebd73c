"""Sharing the cores between a server's workers: when one inference may use all of them.

With several workers, each worker's model runs on ``cores / workers`` threads, so that the
workers do not oversubscribe the cores under load. A lone client would then get one core of
two. Adaptive threads give each model a second, wide session (every core) that a run takes when
no other request is in progress in any worker: one client gets every core, and under load every
run is narrow. Requests count from their prediction slot on, decoding included: counting only
inferences made a run wide whenever the other worker was decoding, and the two then fought over
the cores (concurrency-8 throughput 0.58-0.78 of bare sequential calls against 1.11-1.13 narrow).

``CoreShare`` knows whether other requests are in progress. Inside one process it counts them;
across the workers of one server it uses one lock file per worker in a directory the master
makes before forking (``SPECKS_CORE_SHARE_DIR``): a worker holds a shared ``flock`` on its own
file while any of its requests is in progress, and a run about to start tries each other
worker's file. The kernel drops a killed worker's lock, so a crash never leaves the others
narrow, and nothing here can deadlock: probes never wait.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

CORE_SHARE_DIR_ENV = "SPECKS_CORE_SHARE_DIR"
_LOCK_SUFFIX = ".running"


class CoreShare:
    """Counts the requests in progress, in this process and (with ``directory``) its sibling workers."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self._guard = threading.Lock()
        self._running_here = 0
        self._own_fd: int | None = None
        self._own_pid: int | None = None

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Count one request in progress while the block runs (its decode, passes and drawing)."""
        with self._guard:
            self._running_here += 1
            if self._running_here == 1:
                self._mark_running(True)
        try:
            yield
        finally:
            with self._guard:
                self._running_here -= 1
                if self._running_here == 0:
                    self._mark_running(False)

    def others_busy(self) -> bool:
        """Whether a request other than the caller's is in progress, here or in a sibling worker.

        The caller's own request is the one ``busy`` counts around it (none for a direct call).
        """
        with self._guard:
            here = self._running_here
        return here > 1 or self._others_running()

    def register(self) -> None:
        """Make this worker's lock file now, so that siblings see it (idle) before its first request."""
        self._own_file_fd()

    def sibling_idle(self) -> bool:
        """Whether some live sibling worker has no request in progress (False without siblings to see)."""
        return any(
            not _is_locked(path) and _process_exists(int(path.name.removesuffix(_LOCK_SUFFIX)))
            for path in self._sibling_files()
        )

    def _own_file_fd(self) -> int | None:
        if self.directory is None:
            return None
        if self._own_pid != os.getpid():  # first use, or a process forked from the one that opened it
            self._own_pid = os.getpid()
            path = self.directory / f"{self._own_pid}{_LOCK_SUFFIX}"
            try:
                self._own_fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:  # the directory went away: count this process's runs only
                self.directory, self._own_fd = None, None
        return self._own_fd

    def _mark_running(self, running: bool) -> None:
        fd = self._own_file_fd()
        if fd is not None:
            # Blocking, but only ever behind a sibling's probe, which holds its lock for microseconds.
            fcntl.flock(fd, fcntl.LOCK_SH if running else fcntl.LOCK_UN)

    def _others_running(self) -> bool:
        return any(_is_locked(path) for path in self._sibling_files())

    def _sibling_files(self) -> list[Path]:
        """The other workers' lock files (none without a directory)."""
        if self.directory is None:
            return []
        own = f"{os.getpid()}{_LOCK_SUFFIX}"
        try:
            names = [entry.name for entry in os.scandir(self.directory) if _is_lock_file_name(entry.name)]
        except OSError:
            return []
        return [self.directory / name for name in names if name != own]


def _is_lock_file_name(name: str) -> bool:
    return name.endswith(_LOCK_SUFFIX) and name.removesuffix(_LOCK_SUFFIX).isdigit()


def _is_locked(path: Path) -> bool:
    """Whether some process holds a lock on ``path``; the file of a worker that has exited is removed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # vanished: not running
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        if not _process_exists(int(path.name.removesuffix(_LOCK_SUFFIX))):
            with contextlib.suppress(OSError):
                path.unlink()  # a recycled or killed worker's
        return False
    finally:
        os.close(fd)  # closing drops the lock taken just now


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prepare_core_share_dir() -> Path:
    """Make the directory the workers' lock files go in and name it in ``SPECKS_CORE_SHARE_DIR``.

    Called in the gunicorn master before the fork; the workers inherit the variable.
    """
    path = Path(tempfile.mkdtemp(prefix="specks-cores-"))
    os.environ[CORE_SHARE_DIR_ENV] = str(path)
    return path


_process_share: CoreShare | None = None
_process_share_guard = threading.Lock()


def process_core_share() -> CoreShare:
    """This process's CoreShare: across the server's workers when ``SPECKS_CORE_SHARE_DIR`` is set."""
    global _process_share
    with _process_share_guard:
        if _process_share is None:
            directory = os.environ.get(CORE_SHARE_DIR_ENV)
            _process_share = CoreShare(Path(directory) if directory and os.path.isdir(directory) else None)
        return _process_share

"""A `specks serve` in a child process, for the benchmarks, the load test and the live tests: start it
on a free loopback port, wait until every worker answers, read its workers' memory, stop it.

Only processes this module started are ended, by their id.
"""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from ..config import Settings
from ..errors import SpecksError


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_steadily_ready(
    url: str, *, successes: int = 20, timeout_s: float = 120, check_alive: Callable[[], None] | None = None
) -> None:
    """Wait until ``GET /ready`` answers 200 on ``successes`` fresh connections in a row.

    For a server whose workers may answer 503 while they load (not ``specks serve``, whose
    workers take no connection before their model is ready: see
    ``ServerProcess.wait_until_all_workers_ready``). Each connection goes to whichever worker
    accepts it, so 20 successes in a row leave a still-loading worker of two a one-in-a-million
    chance. ``check_alive`` raises when the server has died (no point waiting for it).
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    deadline = time.monotonic() + timeout_s
    in_a_row = 0
    while in_a_row < successes:
        if check_alive is not None:
            check_alive()
        if time.monotonic() > deadline:
            raise SpecksError(f"{url} did not answer GET /ready steadily within {timeout_s:.0f} s")
        connection = http.client.HTTPConnection(host, port, timeout=5)
        try:
            connection.request("GET", "/ready")
            response = connection.getresponse()
            response.read()
            in_a_row = in_a_row + 1 if response.status == 200 else 0
        except (OSError, http.client.HTTPException):
            in_a_row = 0
        finally:
            connection.close()
        if in_a_row == 0:
            time.sleep(0.2)


class ServerProcess:
    """A ``specks serve`` subprocess on a free loopback port, for timing through real HTTP.

    workers / threads None keep the server's defaults (one worker per core, cores / workers
    inference threads); ``env`` adds SPECKS_* variables, e.g. ``{"SPECKS_SLICE": "off"}``.
    Its output goes to a temporary file, not a pipe: a pipe nobody reads would fill up under
    load and block the server's logging.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        workers: int | None = None,
        threads: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.workers = workers if workers is not None else settings.resolved_workers()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "specks.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if workers is not None:
            command += ["--workers", str(workers)]
        if threads is not None:
            command += ["--threads", str(threads)]
        if settings.model:
            command += ["--model", settings.model]
        for spec in settings.models:
            command += ["--model", f"{spec.name}={spec.path}"]
        full_env = {**os.environ, "SPECKS_CACHE_DIR": str(settings.cache_dir), **(env or {})}
        self._output = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the server; closed in stop)
        self.process = subprocess.Popen(command, env=full_env, stdout=self._output, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        """The gunicorn master's process id (its children are the workers)."""
        return self.process.pid

    def output(self) -> str:
        """Everything the server has printed so far."""
        self._output.seek(0)
        return self._output.read().decode(errors="replace")

    def output_tail(self, chars: int = 2000) -> str:
        return self.output()[-chars:]

    def wait_ready(self, timeout_s: float = 120, *, successes: int = 1) -> None:
        """Wait for ``successes`` 200s from ``GET /ready`` in a row (see ``wait_until_steadily_ready``)."""
        wait_until_steadily_ready(self.url, successes=successes, timeout_s=timeout_s, check_alive=self._check_alive)

    def wait_until_all_workers_ready(self, timeout_s: float = 120) -> list[int]:
        """Wait until every worker has logged that it takes connections; returns their pids.

        ``GET /ready`` cannot tell: a worker still loading its model takes no connections, so
        every answer comes from one that is ready.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            self._check_alive()
            workers = child_pids(self.pid)
            if len(workers) == self.workers and set(workers) <= self.ready_worker_pids():
                return workers
            if time.monotonic() > deadline:
                raise SpecksError(f"not every worker of {self.url} was ready within {timeout_s:.0f} s")
            time.sleep(0.1)

    def ready_worker_pids(self) -> set[int]:
        """Pids of the workers that have said they take connections so far (living or not)."""
        from ..web.server import WORKER_READY_MESSAGE

        pattern = re.escape(WORKER_READY_MESSAGE) + r" \(pid (\d+)"
        return {int(pid) for pid in re.findall(pattern, self.output())}

    def _check_alive(self) -> None:
        if self.process.poll() is not None:
            raise SpecksError(f"the benchmark server exited early:\n{self.output_tail()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)
        self._output.close()


def child_pids(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (a gunicorn master's workers), sorted; Linux /proc only."""
    found: set[int] = set()
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found.update(int(p) for p in handle.read().split())
        return sorted(found)
    except OSError:  # no /proc/<pid>/task/*/children (kernel without CONFIG_PROC_CHILDREN): scan /proc
        pass
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _parent_pid(int(entry)) == pid:
            found.add(int(entry))
    return sorted(found)


def _parent_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
            return int(handle.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def rss_mb(pid: int) -> float | None:
    """Resident memory of ``pid`` in MiB (VmRSS), or None when the process is gone."""
    return _status_mb(pid, "VmRSS:")


def peak_rss_mb(pid: int) -> float | None:
    """The most resident memory ``pid`` has had, in MiB (VmHWM), or None when the process is gone.

    Since the process started, or since ``reset_peak_rss``. Exact, unlike sampling every second.
    """
    return _status_mb(pid, "VmHWM:")


def reset_peak_rss(pid: int) -> bool:
    """Restart ``pid``'s peak (VmHWM) from its current RSS; False where the kernel does not allow it."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _status_mb(pid: int, field_name: str) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(field_name):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError):
        return None
    return None

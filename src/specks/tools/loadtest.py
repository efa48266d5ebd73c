"""A bounded concurrent load test against a live server; returns data, the CLI prints it.

``run_load`` keeps ``concurrency`` threads, each with its own keep-alive ``http.client``
connection, POSTing one body for ``duration_s`` seconds (or until ``max_requests``). It records
every request's latency and status and samples the workers' resident memory every second.
Throughput and latency percentiles are taken over the measured window, after ``warmup_s``.

``run_load_benchmark`` does that against a ``specks serve`` it starts itself, then times the
yardstick (``yardstick.BareModel``): sequential ``session.run`` calls per second on the already
prepared input tensor, same model, same machine, every core.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..config import Settings
from ..errors import ConfigError
from .server_process import ServerProcess, child_pids, peak_rss_mb, reset_peak_rss, rss_mb
from .yardstick import BareModel, bare_rate_per_s, percentile, predict_body

# The seed client's headers: a JSON body, nothing else.
SEED_HEADERS = {"Content-type": "application/json"}
# Sequential session.run calls timed for the bare rate, after BARE_WARMUP untimed ones.
BARE_RUNS, BARE_WARMUP = 50, 5
# Pause after a failed connection so a dead server is not hammered in a tight loop.
ERROR_BACKOFF_S = 0.05


# -- the report -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestRecord:
    """One request: seconds since the run started, HTTP status (0: no response) and error kind."""

    started_s: float
    finished_s: float
    status: int
    error: str | None = None

    @property
    def latency_ms(self) -> float:
        return (self.finished_s - self.started_s) * 1000

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


@dataclass(frozen=True)
class LoadReport:
    """What one load run measured.

    records:     every request, in completion order.
    memory_mb:   worker pid -> [(seconds since start, RSS in MiB)], sampled about once a second.
    peak_mb:     worker pid -> its peak RSS in MiB (VmHWM) at the end of the run, counted from
                 the warm-up's end (``peak_since`` "warm-up") or, where the kernel does not let
                 it be reset, from the worker's start ("worker start").
    started_at_s: ``time.monotonic()`` when the run started; every time above counts from it.
    warmup_s:    requests finishing before this are left out of throughput and percentiles
                 (their errors still count).
    duration_s:  seconds until sending stopped: the time limit, or the last reply when the request
                 budget ran out first; requests in flight at the time limit still finish.
    """

    url: str
    concurrency: int
    duration_s: float
    warmup_s: float
    records: tuple[RequestRecord, ...]
    memory_mb: Mapping[int, Sequence[tuple[float, float]]] = field(default_factory=dict)
    peak_mb: Mapping[int, float] = field(default_factory=dict)
    peak_since: str = "warm-up"
    started_at_s: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.records)

    @property
    def errors(self) -> int:
        return sum(not r.ok for r in self.records)

    def error_kinds(self) -> dict[str, int]:
        return dict(Counter(r.error or f"HTTP {r.status}" for r in self.records if not r.ok))

    def window_s(self) -> tuple[float, float]:
        """The measured window: from the warm-up's end to when sending stopped."""
        return self.warmup_s, self.duration_s

    def measured(self) -> list[RequestRecord]:
        """Successful requests that finished after the warm-up."""
        return [r for r in self.records if r.ok and r.finished_s >= self.warmup_s]

    @property
    def throughput_per_s(self) -> float:
        """Successful replies per second inside the measured window."""
        start, end = self.window_s()
        if end <= start:
            return 0.0
        return sum(start <= r.finished_s <= end for r in self.measured()) / (end - start)

    def latency_percentiles_ms(self) -> dict[str, float] | None:
        latencies = [r.latency_ms for r in self.measured()]
        if not latencies:
            return None
        return {f"p{q}": percentile(latencies, q) for q in (50, 95, 99)}

    def memory_at_warmup_mb(self) -> dict[int, float]:
        """Per worker: the first sample at or after the warm-up's end."""
        firsts = {}
        for pid, series in self.memory_mb.items():
            after = [rss for t, rss in series if t >= self.warmup_s]
            if after:
                firsts[pid] = after[0]
        return firsts

    def memory_end_mb(self) -> dict[int, float]:
        return {pid: series[-1][1] for pid, series in self.memory_mb.items() if series}

    @property
    def memory_growth_mb(self) -> float | None:
        """Largest growth of any worker from the warm-up's end to the end of the run, MiB."""
        start, end = self.memory_at_warmup_mb(), self.memory_end_mb()
        growths = [end[pid] - start[pid] for pid in start if pid in end]
        return max(growths) if growths else None

    @property
    def peak_total_mb(self) -> float | None:
        """The workers' peaks added up: an upper bound of their peak together (the peaks may not coincide)."""
        return sum(self.peak_mb.values()) if self.peak_mb else None

    def sampled_peak_total_mb(self) -> float | None:
        """The highest sum of the workers' RSS over the samples taken at the same moments: a lower bound."""
        totals: dict[int, float] = {}
        for series in self.memory_mb.values():
            for index, (_, rss) in enumerate(series):
                totals[index] = totals.get(index, 0.0) + rss
        return max(totals.values()) if totals else None

    def to_dict(self) -> dict[str, Any]:
        start, end = self.window_s()
        at_warmup, at_end = self.memory_at_warmup_mb(), self.memory_end_mb()
        percentiles = self.latency_percentiles_ms()
        growth = self.memory_growth_mb
        return {
            "url": self.url,
            "concurrency": self.concurrency,
            "duration_s": round(self.duration_s, 3),
            "warmup_s": self.warmup_s,
            "requests": self.requests,
            "measured_requests": len(self.measured()),
            "errors": self.errors,
            "error_kinds": self.error_kinds(),
            "window_s": [round(start, 3), round(end, 3)],
            "throughput_per_s": round(self.throughput_per_s, 3),
            "latency_ms": {k: round(v, 2) for k, v in percentiles.items()} if percentiles else None,
            "memory": {
                "workers": {
                    str(pid): {
                        "at_warmup_mb": round(at_warmup[pid], 1) if pid in at_warmup else None,
                        "at_end_mb": round(at_end[pid], 1) if pid in at_end else None,
                        "series_mb": [[round(t, 2), round(rss, 1)] for t, rss in series],
                    }
                    for pid, series in self.memory_mb.items()
                },
                "growth_mb": round(growth, 1) if growth is not None else None,
                "peak_mb": {str(pid): round(peak, 1) for pid, peak in self.peak_mb.items()},
                "peak_total_mb": _rounded(self.peak_total_mb),
                "sampled_peak_total_mb": _rounded(self.sampled_peak_total_mb()),
                "peak_since": self.peak_since,
            },
        }


def _rounded(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


# -- the run ----------------------------------------------------------------------------------


def _target(url: str) -> tuple[str, int, str]:
    """host, port, path of an http:// URL; a bare server URL targets /predict."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError(f"the load test needs an http://host:port URL, got {url!r}")
    path = parts.path if parts.path not in ("", "/") else "/predict"
    return parts.hostname, parts.port or 80, path


class _RequestBudget:
    """At most ``limit`` requests across all threads (None: no limit)."""

    def __init__(self, limit: int | None) -> None:
        self._left = limit
        self._lock = threading.Lock()

    def take(self) -> bool:
        if self._left is None:
            return True
        with self._lock:
            if self._left <= 0:
                return False
            self._left -= 1
            return True


@dataclass(frozen=True)
class _Client:
    """What every client thread sends, where, and how."""

    target: tuple[str, int, str]
    body: bytes
    timeout_s: float
    keep_alive: bool


def _send_until(client: _Client, clock: _Clock, budget: _RequestBudget, records: list[RequestRecord]) -> None:
    """One client thread: requests back to back until time or budget run out.

    With ``keep_alive`` one connection serves them all (a new one after the server closes it);
    without, each request has its own connection and says ``Connection: close``.
    """
    host, port, path = client.target
    headers = SEED_HEADERS if client.keep_alive else {**SEED_HEADERS, "Connection": "close"}
    connection: http.client.HTTPConnection | None = None
    while clock.sending() and budget.take():
        if connection is None:
            connection = http.client.HTTPConnection(host, port, timeout=client.timeout_s)
        started = clock.now()
        status, error, reusable = _post(connection, path, client.body, headers)
        records.append(RequestRecord(started, clock.now(), status, error))  # list.append is atomic
        if not (reusable and client.keep_alive):
            connection.close()
            connection = None
        if status == 0:
            time.sleep(ERROR_BACKOFF_S)
    if connection is not None:
        connection.close()


def _post(
    connection: http.client.HTTPConnection, path: str, body: bytes, headers: Mapping[str, str]
) -> tuple[int, str | None, bool]:
    """One request -> (HTTP status or 0 for none, error kind or None, whether the connection stays usable)."""
    try:
        connection.request("POST", path, body=body, headers=dict(headers))
        response = connection.getresponse()
        response.read()
    except (OSError, http.client.HTTPException) as exc:
        return 0, "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__, False
    error = None if response.status == 200 else f"HTTP {response.status}"
    return response.status, error, not response.will_close


class _Clock:
    """Seconds since the run started, and when sending stops: at ``stop_s``, or once ``stop`` is set."""

    def __init__(self, stop_s: float, stop: threading.Event | None = None) -> None:
        self.started_at_s = time.monotonic()
        self.stop_s = stop_s
        self._stop = stop

    def now(self) -> float:
        return time.monotonic() - self.started_at_s

    def sending(self) -> bool:
        return self.now() < self.stop_s and not (self._stop is not None and self._stop.is_set())


class _MemorySampler:
    """Samples the workers' RSS every ``every_s`` seconds; restarts their peaks when the warm-up ends."""

    def __init__(self, pids: Sequence[int], clock: _Clock, every_s: float, warmup_s: float) -> None:
        self.pids = list(pids)
        self.series: dict[int, list[tuple[float, float]]] = {pid: [] for pid in self.pids}
        self.peak_since = "worker start"
        self._clock, self._every_s, self._warmup_s = clock, every_s, warmup_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-memory", daemon=True)

    def start(self) -> None:
        if self._warmup_s <= 0:
            self._reset_peaks()
        self._thread.start()

    def stop(self) -> dict[int, float]:
        """Stop, take one last sample after the last reply, and return each worker's peak."""
        self._done.set()
        self._thread.join(timeout=5)
        self._sample()
        peaks = {pid: peak_rss_mb(pid) for pid in self.pids}
        return {pid: peak for pid, peak in peaks.items() if peak is not None}

    def _reset_peaks(self) -> None:
        if self.pids and all([reset_peak_rss(pid) for pid in self.pids]):
            self.peak_since = "warm-up"

    def _sample(self) -> None:
        t = self._clock.now()
        for pid in self.pids:
            rss = rss_mb(pid)
            if rss is not None:
                self.series[pid].append((t, rss))

    def _run(self) -> None:
        warming = self._warmup_s > 0
        while True:
            if warming and self._clock.now() >= self._warmup_s:
                self._reset_peaks()
                warming = False
            self._sample()
            wait_s = self._every_s
            if warming:  # wake up when the warm-up ends, to restart the peaks then
                wait_s = min(wait_s, max(0.01, self._warmup_s - self._clock.now()))
            if self._done.wait(wait_s):
                return


def run_load(
    url: str,
    body: bytes,
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float = 0.0,
    max_requests: int | None = None,
    worker_pids: Sequence[int] | None = None,
    sample_every_s: float = 1.0,
    timeout_s: float = 60.0,
    keep_alive: bool = True,
    stop: threading.Event | None = None,
) -> LoadReport:
    """POST ``body`` to ``url`` from ``concurrency`` threads for ``duration_s`` seconds.

    url:          http://host:port (targets /predict) or a full URL with a path.
    worker_pids:  processes whose RSS is sampled every ``sample_every_s`` seconds (and once at the
                  end) and whose peak RSS is read at the end.
    timeout_s:    per-request socket timeout; a request running past it counts as an error.
    keep_alive:   each thread keeps one connection; False opens one per request (fault tests: a
                  request then fails only if the process that accepted it fails).
    stop:         sending also stops once this is set (before ``duration_s``).
    Ends after at most ``duration_s + timeout_s`` seconds, however the server behaves.
    """
    if concurrency < 1:
        raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
    if duration_s <= 0 or not 0 <= warmup_s < duration_s:
        raise ConfigError(f"need 0 <= warmup < duration, got warmup {warmup_s} s and duration {duration_s} s")
    client = _Client(_target(url), body, timeout_s, keep_alive)
    clock = _Clock(duration_s, stop)
    budget = _RequestBudget(max_requests)
    records: list[RequestRecord] = []
    sampler = _MemorySampler(worker_pids or (), clock, sample_every_s, warmup_s)
    clients = [
        threading.Thread(target=_send_until, args=(client, clock, budget, records), name=f"load-{i}", daemon=True)
        for i in range(concurrency)
    ]
    sampler.start()
    for thread in clients:
        thread.start()
    join_by = time.monotonic() + duration_s + timeout_s + 5
    for thread in clients:
        thread.join(max(0.0, join_by - time.monotonic()))
    sent_s = min(clock.now(), duration_s) if max_requests is not None or stop is not None else duration_s
    peaks = sampler.stop()
    return LoadReport(
        url=url,
        concurrency=concurrency,
        duration_s=sent_s,
        warmup_s=warmup_s,
        records=tuple(sorted(records, key=lambda r: r.finished_s)),
        memory_mb={pid: tuple(s) for pid, s in sampler.series.items()},
        peak_mb=peaks,
        peak_since=sampler.peak_since,
        started_at_s=clock.started_at_s,
    )


# -- against a server started here, with the yardstick ------------------------------------------


def run_load_benchmark(
    settings: Settings,
    image_bytes: bytes,
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    max_requests: int | None = None,
    slice_mode: str = "off",
    timeout_s: float = 60.0,
) -> dict[str, Any]:
    """Start ``specks serve`` (``settings.workers``, slicing off), load it, then time bare session.run.

    Slicing is off by default so the request runs the model once on the whole image: "auto" would
    cut a 2000x1500 photo into a dozen tiles, a different workload from the bare yardstick.
    ``slice_mode`` "auto" or "on" measures sliced requests instead (memory under large photos).
    """
    server = ServerProcess(settings, workers=settings.workers or None, env={"SPECKS_SLICE": slice_mode})
    try:
        server.wait_until_all_workers_ready()
        workers = child_pids(server.pid)
        report = run_load(
            server.url,
            predict_body(image_bytes),
            concurrency=concurrency,
            duration_s=duration_s,
            warmup_s=warmup_s,
            max_requests=max_requests,
            worker_pids=workers,
            timeout_s=timeout_s,
        )
    finally:
        server.stop()
    # After the server has stopped, so the two never share the cores.
    bare = BareModel(settings, image_bytes, settings.threads_for(1))
    bare_per_s = bare_rate_per_s(bare, 0.0, min_calls=BARE_RUNS, warmup=BARE_WARMUP)
    return {
        **report.to_dict(),
        "model": settings.model or "embedded default",
        "workers": len(workers),
        "slice": slice_mode,
        "image_bytes": len(image_bytes),
        "bare_session_run_per_s": round(bare_per_s, 3),
        "throughput_over_bare": round(report.throughput_per_s / bare_per_s, 3),
    }

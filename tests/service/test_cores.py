"""CoreShare: whether other requests are in progress, in one process and across a server's workers."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from specks.config import RuntimeOptions, Settings
from specks.service import cores
from specks.service.cores import CORE_SHARE_DIR_ENV, CoreShare


def test_other_requests_count_only_while_they_are_in_progress() -> None:
    share = CoreShare()
    assert not share.others_busy()  # a direct call, outside any request
    with share.busy():
        assert not share.others_busy()  # the caller's own request is not another
        with share.busy():
            assert share.others_busy()
        assert not share.others_busy()


def test_requests_of_concurrent_threads_are_counted() -> None:
    share, inside, release = CoreShare(), threading.Event(), threading.Event()

    def hold() -> None:
        with share.busy():
            inside.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    inside.wait(10)
    with share.busy():
        assert share.others_busy()
    release.set()
    holder.join(10)
    with share.busy():
        assert not share.others_busy()


def _hold_a_run(directory: str, started: Any) -> None:
    with CoreShare(Path(directory)).busy():
        started.set()
        signal.pause()  # until killed


@pytest.fixture
def sibling(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A forked process (a stand-in for another worker) holding a run in ``tmp_path``."""
    context = multiprocessing.get_context("fork")
    started = context.Event()
    process = context.Process(target=_hold_a_run, args=(str(tmp_path), started), daemon=True)
    process.start()
    assert started.wait(30)
    yield process
    if process.is_alive():
        os.kill(process.pid, signal.SIGKILL)
    process.join(10)


def test_a_request_in_another_worker_process_is_seen(tmp_path: Path, sibling) -> None:  # type: ignore[no-untyped-def]
    share = CoreShare(tmp_path)
    with share.busy():
        assert share.others_busy()
    assert (tmp_path / f"{sibling.pid}.running").exists()


def test_a_killed_worker_leaves_no_lock_behind(tmp_path: Path, sibling) -> None:  # type: ignore[no-untyped-def]
    os.kill(sibling.pid, signal.SIGKILL)
    sibling.join(10)
    share = CoreShare(tmp_path)
    with share.busy():
        assert not share.others_busy()  # the kernel dropped its lock: the others are not left narrow
    assert not (tmp_path / f"{sibling.pid}.running").exists()  # and its file is cleaned up


def test_this_process_advertises_its_requests_only_while_they_are_in_progress(tmp_path: Path) -> None:
    mine, other = CoreShare(tmp_path), CoreShare(tmp_path)
    with mine.busy():
        assert cores._is_locked(tmp_path / f"{os.getpid()}.running")
        assert not other.others_busy()  # its own process's file never counts as another worker
    assert not cores._is_locked(tmp_path / f"{os.getpid()}.running")


def test_a_vanished_directory_falls_back_to_this_process_only(tmp_path: Path) -> None:
    share = CoreShare(tmp_path / "gone")
    with share.busy():
        assert not share.others_busy()
    assert share.directory is None


def test_the_process_share_uses_the_directory_the_master_made(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CORE_SHARE_DIR_ENV, raising=False)
    directory = cores.prepare_core_share_dir()
    try:
        assert os.environ[CORE_SHARE_DIR_ENV] == str(directory)
        monkeypatch.setattr(cores, "_process_share", None)
        assert cores.process_core_share().directory == directory
        assert cores.process_core_share() is cores.process_core_share()
    finally:
        os.environ.pop(CORE_SHARE_DIR_ENV, None)
        directory.rmdir()


@pytest.mark.parametrize(
    ("workers", "threads", "adaptive", "wide"),
    [(2, 0, True, 2), (1, 0, True, None), (2, 1, True, None), (2, 0, False, None)],
    ids=["two-workers", "one-worker-has-every-core", "threads-fixed", "off"],
)
def test_wide_threads_exist_only_when_workers_share_the_cores(
    monkeypatch: pytest.MonkeyPatch, workers: int, threads: int, adaptive: bool, wide: int | None
) -> None:
    monkeypatch.setattr("specks.config.cpu_count", lambda: 2)
    settings = Settings(workers=workers, runtime=RuntimeOptions(intra_op_threads=threads, adaptive_threads=adaptive))
    assert settings.wide_threads() == wide
    if wide is not None:
        assert settings.threads_description() == "1 inference thread (2 while no other request is in progress)"


def test_adaptive_threads_are_read_from_the_environment() -> None:
    assert Settings.from_env({"SPECKS_ADAPTIVE_THREADS": "off"}).runtime.adaptive_threads is False
    assert Settings.from_env({}).runtime.adaptive_threads is True

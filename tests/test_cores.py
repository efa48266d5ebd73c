"""CoreShare: whether a run is alone, in one process and across a server's worker processes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from specks import cores
from specks.config import RuntimeOptions, Settings
from specks.cores import CORE_SHARE_DIR_ENV, CoreShare


def test_a_run_is_alone_only_while_no_other_run_of_this_process_is_in_progress() -> None:
    share = CoreShare()
    with share.run() as first, share.run() as second:
        assert (first, second) == (True, False)
    with share.run() as later:
        assert later  # both ended


def test_runs_of_concurrent_threads_are_counted() -> None:
    share, inside, release = CoreShare(), threading.Event(), threading.Event()

    def hold() -> None:
        with share.run():
            inside.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    inside.wait(10)
    with share.run() as alone:
        assert not alone
    release.set()
    holder.join(10)
    with share.run() as alone:
        assert alone


def _hold_a_run(directory: str, started: Any) -> None:
    with CoreShare(Path(directory)).run():
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


def test_a_run_in_another_worker_process_makes_this_one_narrow(tmp_path: Path, sibling) -> None:  # type: ignore[no-untyped-def]
    share = CoreShare(tmp_path)
    with share.run() as alone:
        assert not alone
    assert (tmp_path / f"{sibling.pid}.running").exists()


def test_a_killed_worker_leaves_no_lock_behind(tmp_path: Path, sibling) -> None:  # type: ignore[no-untyped-def]
    os.kill(sibling.pid, signal.SIGKILL)
    sibling.join(10)
    share = CoreShare(tmp_path)
    with share.run() as alone:
        assert alone  # the kernel dropped its lock: the others are not left narrow for ever
    assert not (tmp_path / f"{sibling.pid}.running").exists()  # and its file is cleaned up


def test_this_process_advertises_its_runs_only_while_they_are_in_progress(tmp_path: Path) -> None:
    mine, other = CoreShare(tmp_path), CoreShare(tmp_path)
    with mine.run():
        assert cores._is_locked(tmp_path / f"{os.getpid()}.running")
    assert not cores._is_locked(tmp_path / f"{os.getpid()}.running")
    with other.run() as alone:
        assert alone  # its own process's file never counts as another worker


def test_a_vanished_directory_falls_back_to_this_process_only(tmp_path: Path) -> None:
    share = CoreShare(tmp_path / "gone")
    with share.run() as alone:
        assert alone
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
        assert settings.threads_description() == "1 inference thread (2 while no other inference runs)"


def test_adaptive_threads_are_read_from_the_environment() -> None:
    assert Settings.from_env({"SPECKS_ADAPTIVE_THREADS": "off"}).runtime.adaptive_threads is False
    assert Settings.from_env({}).runtime.adaptive_threads is True

"""A request's deadline: checked at each stage, it stops the work with the right error."""

from __future__ import annotations

import time

import pytest

from conftest import jpeg_bytes
from specks.core.deadline import Deadline
from specks.core.pipeline import Detector, StageTimer
from specks.errors import ClientGoneError, DeadlineExceededError


def test_a_check_passes_before_the_deadline_and_fails_after_it_naming_the_stage() -> None:
    deadline = Deadline.after(0.05)
    deadline.check("decode")
    time.sleep(0.06)
    with pytest.raises(DeadlineExceededError, match=r"limit of 0.05 s .* before inference") as refused:
        deadline.check("inference")
    assert "SPECKS_REQUEST_TIMEOUT_S" in refused.value.message
    assert deadline.remaining_s() < 0


def test_the_client_probe_is_asked_at_most_every_interval() -> None:
    asked: list[float] = []

    def gone() -> bool:
        asked.append(time.monotonic())
        return False

    deadline = Deadline.after(10, client_gone=gone)
    for _ in range(100):
        deadline.check("tile")
    assert len(asked) == 1  # one socket peek, not one per tile


def test_a_gone_client_stops_the_work() -> None:
    deadline = Deadline.after(10, client_gone=lambda: True)
    with pytest.raises(ClientGoneError, match="before merge"):
        deadline.check("merge")


def test_the_stage_timer_checks_the_deadline_as_each_stage_starts() -> None:
    timer = StageTimer(Deadline.after(0.02))
    with timer.stage("decode"):
        time.sleep(0.03)
    with pytest.raises(DeadlineExceededError, match="before preprocess"), timer.stage("preprocess"):
        raise AssertionError("a stage past the deadline must not start")
    assert "preprocess" not in timer.timings_ms


def test_a_detector_stops_a_sliced_request_between_tiles(default_detector: Detector) -> None:
    from specks.core.options import DetectOptions
    from specks.core.slicing import SliceMode

    detector = default_detector
    data = jpeg_bytes(4000, 4000)  # four tiles and a full pass
    stages: list[str] = []

    class Counting(Deadline):
        def check(self, stage: str) -> None:
            stages.append(stage)
            if stages.count("inference") == 2:
                raise DeadlineExceededError("stopped")

    with pytest.raises(DeadlineExceededError):
        detector.predict_bytes(data, DetectOptions(slice=SliceMode.ON), deadline=Counting.after(60))
    assert stages.count("inference") == 2  # the second tile's run never started

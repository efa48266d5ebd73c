"""The benchmark harness's bookkeeping (no timing is asserted: the machine's speed varies)."""

from __future__ import annotations

import numpy as np

from conftest import MODELS, require
from specks.config import Settings
from specks.core.options import DetectOptions
from specks.tools.benchmark import Interleaved, interleave
from specks.tools.yardstick import BareModel, synthetic_photo_jpeg


def test_interleave_alternates_request_and_bare_call() -> None:
    calls: list[str] = []

    def request() -> dict[str, float]:
        calls.append("request")
        return {"inference": 1.0}

    result = interleave(request, lambda: calls.append("bare"), runs=3, warmup=1)
    assert calls == ["request", "bare"] * 4
    assert len(result.end_to_end_ms) == len(result.bare_ms) == len(result.stage_ms) == 3


def test_summary_ratio_is_the_median_of_the_pairs() -> None:
    result = Interleaved((20.0, 30.0, 44.0), (10.0, 20.0, 40.0), ({"decode": 1.0}, {"decode": 3.0}, {"decode": 2.0}))
    summary = result.summary()
    assert summary["ratio"] == 1.5  # pair ratios 1.1, 1.5, 2.0
    assert summary["ratio_quartiles"] == [1.3, 1.75]
    assert summary["end_to_end_ms"] == 30.0
    assert summary["server_stage_median_ms"] == {"decode": 2.0}


def test_the_passes_of_a_small_object_request_are_the_tensors_the_model_ran() -> None:
    settings = Settings(model=str(require(MODELS / "yolov5n_dynamic.onnx")))
    photo = synthetic_photo_jpeg(2000, 1500)
    passes = BareModel(settings, photo, threads=1, options=DetectOptions())
    assert passes.tensors, "the request ran the model"
    assert all(t.ndim == 4 and t.shape[1] == 3 for t in passes.tensors)
    out = passes.session.run(None, {passes.info.input_name: passes.tensors[0]})[0]
    assert out.shape[0] == passes.tensors[0].shape[0]
    passes()  # every pass, in turn, on the plain session


def test_the_full_image_yardstick_runs_the_input_a_full_image_request_prepares() -> None:
    settings = Settings(model=str(require(MODELS / "yolov5n_dynamic.onnx")))
    photo = synthetic_photo_jpeg(2000, 1500)
    bare = BareModel(settings, photo, threads=1)
    recorded = BareModel(settings, photo, threads=1, options=DetectOptions(slice=False)).tensors
    assert len(recorded) == 1
    np.testing.assert_allclose(bare.tensors[0], recorded[0], atol=1e-6)

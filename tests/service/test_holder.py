"""The model registry: models loaded by name, readiness, and why a load failed."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import MODELS, require
from specks.config import ModelSpec, Settings
from specks.errors import ModelNotReadyError
from specks.models import DEFAULT_MODEL_NAME
from specks.service.holder import ModelHolder


def test_names_are_known_before_loading_and_models_are_got_by_name(tmp_path: Path) -> None:
    settings = Settings(
        models=(ModelSpec("v5", str(require(MODELS / "yolov5n.onnx"))),), cache_dir=tmp_path, workers=1
    )
    holder = ModelHolder(settings)
    assert holder.names == ["v5", DEFAULT_MODEL_NAME] and holder.default_name == "v5"
    with pytest.raises(ModelNotReadyError, match="still loading"):
        holder.get("v5")
    holder.start_loading(background=False)
    assert holder.ready
    assert holder.get().model.info.name == "v5"  # served and reported under its own name
    assert holder.get(DEFAULT_MODEL_NAME).model.info.name == DEFAULT_MODEL_NAME
    assert list(holder.detectors()) == ["v5", DEFAULT_MODEL_NAME]


def test_a_model_that_fails_to_load_is_named_in_the_reason(tmp_path: Path) -> None:
    settings = Settings(models=(ModelSpec("broken", str(tmp_path / "missing.onnx")),), cache_dir=tmp_path)
    holder = ModelHolder(settings)
    holder.start_loading(background=False)
    assert not holder.ready
    assert holder.load_failure is not None
    assert holder.load_failure.startswith("a model failed to load: broken: model file not found")
    assert str(tmp_path) in holder.load_failure  # operators get the whole reason
    assert holder.not_ready_reason == "a model failed to load: 'broken'; the server log says why"
    with pytest.raises(ModelNotReadyError) as refused:
        holder.get()
    assert str(tmp_path) not in refused.value.message  # clients never see a path


def test_a_prediction_slot_counts_as_a_request_in_progress(tmp_path: Path) -> None:
    holder = ModelHolder(Settings(cache_dir=tmp_path, predictions_per_worker=2))
    with holder.prediction_slot():
        assert not holder.core_share.others_busy()  # the holder of the slot itself
        with holder.prediction_slot():
            assert holder.core_share.others_busy()  # a second request: no run may take every core
        assert not holder.core_share.others_busy()

"""A broken model file after a swap: the worker that reloads serves the last file that loaded instead."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from conftest import MODELS, require
from specks.config import ModelSpec, Settings
from specks.service import last_good
from specks.service.holder import ModelHolder


def _holder(path: Path, cache_dir: Path) -> ModelHolder:
    holder = ModelHolder(Settings(models=(ModelSpec("cam", str(path)),), cache_dir=cache_dir, workers=1))
    holder.start_loading(background=False)
    return holder


def test_a_broken_swap_keeps_the_last_file_that_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(last_good.LAST_GOOD_DIR_ENV, str(tmp_path / "kept"))
    (tmp_path / "kept").mkdir()
    served = tmp_path / "cam.onnx"
    shutil.copyfile(require(MODELS / "yolov5n.onnx"), served)
    good_sha = hashlib.sha256(served.read_bytes()).hexdigest()
    assert _holder(served, tmp_path).model_file("cam").sha256 == good_sha
    assert last_good.kept_copy("cam") is not None

    served.write_bytes(b"not a model")  # the swap went wrong
    reloaded = _holder(served, tmp_path)
    assert reloaded.ready and reloaded.load_failure is None
    assert reloaded.model_file("cam").sha256 == good_sha  # GET /models shows the swap did not take
    assert reloaded.get("cam").model.info.names[0] == "person"

    shutil.copyfile(require(MODELS / "yolov5n_dynamic.onnx"), served)  # a good swap takes
    new_sha = hashlib.sha256(served.read_bytes()).hexdigest()
    assert _holder(served, tmp_path).model_file("cam").sha256 == new_sha
    assert hashlib.sha256(last_good.kept_copy("cam").read_bytes()).hexdigest() == new_sha  # type: ignore[union-attr]


def test_outside_specks_serve_nothing_is_kept_and_a_broken_file_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(last_good.LAST_GOOD_DIR_ENV, raising=False)
    served = tmp_path / "cam.onnx"
    served.write_bytes(b"not a model")
    holder = _holder(served, tmp_path)
    assert not holder.ready and holder.load_failure is not None
    assert last_good.kept_copy("cam") is None

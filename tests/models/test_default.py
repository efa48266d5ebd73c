"""The embedded default model: the vendored YOLOX-Nano file, its hash checked, its license beside it."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import MODELS, REPO_ROOT
from specks.config import RuntimeOptions
from specks.core.pipeline import Detector
from specks.core.postprocess import OutputLayout
from specks.core.preprocess import BGR_RAW_TOP_LEFT
from specks.errors import ModelLoadError
from specks.models import default, load_model, prepare_model
from specks.models.default import EMBEDDED_DEFAULT_SHA256, embedded_default_path, verify_sha256

RELEASE_SHA256 = "c789161ed43c8269fcd4e67c67eeeb4e80c622da2eb296a20bc6007bd18a0b7d"  # YOLOX 0.1.1rc0 asset
DATA_FILES = (
    "yolox_nano.onnx", "LICENSE-YOLOX-Apache-2.0.txt", "README.md",
    "yolox_nano_thermal.onnx", "LICENSE-HIT-UAV-CC-BY-4.0.txt", "yolox_nano_thermal.MODEL_CARD.md",
)  # fmt: skip


def test_the_vendored_file_is_the_yolox_release_file() -> None:
    path = embedded_default_path()

    assert path.parent == Path(default.__file__).resolve().parent / "data"
    assert EMBEDDED_DEFAULT_SHA256 == RELEASE_SHA256
    assert hashlib.sha256(path.read_bytes()).hexdigest() == RELEASE_SHA256
    assert path.stat().st_size == 3_659_407
    shared = MODELS / "yolox_nano.onnx"
    if shared.is_file():
        assert shared.read_bytes() == path.read_bytes()


def test_its_license_and_provenance_ship_beside_it() -> None:
    folder = embedded_default_path().parent
    notice = (folder / "README.md").read_text()

    assert "Apache License" in (folder / "LICENSE-YOLOX-Apache-2.0.txt").read_text()
    assert RELEASE_SHA256 in notice
    assert "0.1.1rc0" in notice and "Megvii-BaseDetection/YOLOX" in notice


def test_a_file_with_another_hash_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tampered = tmp_path / "yolox_nano.onnx"
    data = bytearray(embedded_default_path().read_bytes())
    data[-1] ^= 0xFF
    tampered.write_bytes(bytes(data))
    monkeypatch.setattr(default, "EMBEDDED_DEFAULT_FILE", tampered)

    with pytest.raises(ModelLoadError, match="sha256 .* not the expected c789161e.*reinstall"):
        prepare_model(None, tmp_path)
    with pytest.raises(ModelLoadError, match="damaged or was replaced"):
        load_model("default", runtime=RuntimeOptions(), threads=1, cache_dir=tmp_path)


def test_verify_sha256_accepts_the_right_hash(tmp_path: Path) -> None:
    path = tmp_path / "file.bin"
    path.write_bytes(b"specks")

    verify_sha256(path, hashlib.sha256(b"specks").hexdigest())
    with pytest.raises(ModelLoadError, match="sha256"):
        verify_sha256(path, hashlib.sha256(b"other").hexdigest())


def test_a_missing_file_says_how_to_fix_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(default, "EMBEDDED_DEFAULT_FILE", tmp_path / "absent.onnx")

    with pytest.raises(ModelLoadError, match="missing.*make install.*--model"):
        prepare_model(None, tmp_path)


@pytest.mark.parametrize("spec", [None, "", "default", "YOLOX-Nano", " yolox-nano "])
def test_every_name_of_the_default_finds_the_vendored_file(spec: str | None, tmp_path: Path) -> None:
    prepared = prepare_model(spec, tmp_path)

    assert (prepared.kind, prepared.onnx_path) == ("default", embedded_default_path())
    assert prepared.name == "yolox-nano"


def test_default_model_info(default_detector: Detector) -> None:
    info = default_detector.model.info

    assert info.layout is OutputLayout.YOLOX
    assert info.preprocessing == BGR_RAW_TOP_LEFT
    assert info.input_hw == (640, 640)  # declared 416; full-image requests measured better at 640
    assert info.dynamic_hw is True and info.dynamic_batch is False
    assert info.num_classes == 80
    assert info.names[0] == "person" and info.names[2] == "car" and info.names[62] == "tv"
    assert info.source_format == "default"


@pytest.mark.slow
def test_the_wheel_ships_the_model_its_license_and_notice(tmp_path: Path) -> None:
    """What a regular (non-editable) install gets: setuptools packs the package data. Built from a
    copy of the project so no build/ folder is left in the checkout."""
    project = tmp_path / "project"
    shutil.copytree(REPO_ROOT / "src", project / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, project / name)
    offline = ["--quiet", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", *offline, "-w", str(tmp_path), "."],
        cwd=project,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("specks-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert {f"specks/models/data/{name}" for name in DATA_FILES} <= names
        packed = archive.read("specks/models/data/yolox_nano.onnx")
    assert hashlib.sha256(packed).hexdigest() == RELEASE_SHA256

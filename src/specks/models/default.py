"""The vendored models, package data: the embedded default YOLOX-Nano (COCO, Apache-2.0) and the
named model ``yolox-nano-thermal`` (fine-tuned from it by ``specks train`` on HIT-UAV thermal drone
frames, CC BY 4.0).

``data/README.md`` says what each file is and where it came from; the license texts and the
thermal model's card ship beside them. A file's sha256 is checked before every load, so a damaged
or replaced file fails with a clear message instead of detecting nonsense.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import ModelLoadError
from .overrides import ModelOverrides

DEFAULT_MODEL_NAME = "yolox-nano"
EMBEDDED_DEFAULT_FILE = Path(__file__).resolve().parent / "data" / "yolox_nano.onnx"
EMBEDDED_DEFAULT_SHA256 = "c789161ed43c8269fcd4e67c67eeeb4e80c622da2eb296a20bc6007bd18a0b7d"
# What Specks declares about the embedded default beyond its graph: full-image requests run at
# 640, not the declared 416 (measured on COCO tiny50 at conf 0.001: AP 0.343 against 0.333,
# AP_small 0.192 against 0.100). Small-object mode sizes its tiles itself.
EMBEDDED_DEFAULT_OVERRIDES = ModelOverrides(input_hw=(640, 640))

THERMAL_MODEL_NAME = "yolox-nano-thermal"
THERMAL_MODEL_FILE = Path(__file__).resolve().parent / "data" / "yolox_nano_thermal.onnx"
THERMAL_MODEL_SHA256 = "1dd5ac4b6c7df43a3dfb7ab9378c895107fbc76f07e384912862e9e1fc25c08b"


def embedded_default_path() -> Path:
    """The vendored yolox_nano.onnx, once its sha256 is checked."""
    return _checked(
        EMBEDDED_DEFAULT_FILE, EMBEDDED_DEFAULT_SHA256, "the embedded default model", "--model / SPECKS_MODEL"
    )


def thermal_model_path() -> Path:
    """The vendored yolox_nano_thermal.onnx, once its sha256 is checked."""
    return _checked(
        THERMAL_MODEL_FILE, THERMAL_MODEL_SHA256, f"the named model {THERMAL_MODEL_NAME!r}", "another model"
    )


def _checked(path: Path, sha256: str, what: str, instead: str) -> Path:
    if not path.is_file():
        raise ModelLoadError(
            f"{what} is missing: {path} is not in the installed package; "
            f"reinstall Specks (`make install`), or pass {instead}"
        )
    verify_sha256(path, sha256)
    return path


def verify_sha256(path: Path, expected: str) -> None:
    """Raise ModelLoadError unless the file's sha256 is ``expected`` (hex)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != expected:
        raise ModelLoadError(
            f"{path} has sha256 {digest}, not the expected {expected}: the file is damaged or was replaced; "
            "reinstall Specks (`make install`) to restore it"
        )

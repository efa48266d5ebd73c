"""Model formats and loading. Only this package imports onnxruntime (and onnx, for conversion).

onnxruntime is imported by ``load_model`` (and ``onnx_model``), not here: ``specks serve``
prepares the model in the gunicorn master, which must never import it (see ``specks.web.server``).

``load_model`` takes what a user names (nothing for the embedded default YOLOX-Nano, the named
models ``yolox-nano-thermal`` and ``yolov3-tiny``, an ``.onnx`` file, or a Darknet
``.cfg``/``.weights`` pair) and returns a ready ``OnnxModel``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import RuntimeOptions
from ..errors import ModelLoadError
from .default import (
    DEFAULT_MODEL_NAME,
    EMBEDDED_DEFAULT_OVERRIDES,
    THERMAL_MODEL_NAME,
    embedded_default_path,
    thermal_model_path,
)
from .overrides import NO_OVERRIDES, ModelOverrides
from .yolov3_tiny import YOLOV3_TINY, YOLOV3_TINY_MODEL_NAME, corrected_tiny_cfg, yolov3_tiny_files

if TYPE_CHECKING:
    from .onnx_model import OnnxModel

__all__ = [
    "DEFAULT_MODEL_NAME",
    "NAMED_MODELS",
    "ModelOverrides",
    "PreparedModel",
    "load_model",
    "prepare_model",
    "resolve_model_files",
]

DEFAULT_ALIASES = {"", "default", "yolox-nano"}
NAMED_MODELS = (THERMAL_MODEL_NAME, YOLOV3_TINY)  # models named rather than given as files


def resolve_model_files(spec: str | None) -> tuple[str, Path, Path | None]:
    """Return (kind, main path, weights path) for a model spec; kind is default | yolox-nano-thermal |
    yolov3-tiny | onnx | darknet.

    The vendored models' sha256 is checked here.
    """
    key = "" if spec is None else spec.strip().lower()
    if key in DEFAULT_ALIASES:
        return "default", embedded_default_path(), None
    if key == THERMAL_MODEL_NAME:
        return THERMAL_MODEL_NAME, thermal_model_path(), None
    if key == YOLOV3_TINY:
        files = yolov3_tiny_files()
        return YOLOV3_TINY, files.cfg, files.weights
    assert spec is not None
    path = Path(spec).expanduser()
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx", path, None
    if suffix in (".cfg", ".weights"):
        cfg, weights = path.with_suffix(".cfg"), path.with_suffix(".weights")
        for needed in (cfg, weights):
            if not needed.is_file():
                raise ModelLoadError(
                    f"a Darknet model needs {cfg.name} and {weights.name} side by side; {needed} is missing"
                )
        return "darknet", cfg, weights
    raise ModelLoadError(
        f"unsupported model file {spec!r}: give an .onnx file, a Darknet .cfg (with its .weights), "
        f"or a named model ({', '.join(NAMED_MODELS)})"
    )


@dataclass(frozen=True)
class PreparedModel:
    """A model ready for ONNX Runtime: how the user named it, the file named, and the ONNX file to load."""

    kind: str
    source: Path
    onnx_path: Path

    @property
    def name(self) -> str:
        named = {"default": DEFAULT_MODEL_NAME, THERMAL_MODEL_NAME: THERMAL_MODEL_NAME}
        return named.get(self.kind, YOLOV3_TINY_MODEL_NAME if self.kind == YOLOV3_TINY else self.source.name)

    @property
    def source_format(self) -> str:
        """default (the embedded model), onnx or darknet."""
        return {YOLOV3_TINY: "darknet", THERMAL_MODEL_NAME: "onnx"}.get(self.kind, self.kind)

    @property
    def overrides(self) -> ModelOverrides:
        """What Specks itself declares about this model (only the embedded default has anything)."""
        return EMBEDDED_DEFAULT_OVERRIDES if self.kind == "default" else NO_OVERRIDES


def prepare_model(spec: str | None, cache_dir: Path) -> PreparedModel:
    """Check a model spec and convert Darknet files once (cached), without opening a session.

    The server calls this before forking workers, so a bad path fails fast and the
    conversion runs once.
    """
    kind, path, weights = resolve_model_files(spec)
    if kind in ("default", THERMAL_MODEL_NAME, "onnx"):
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        return PreparedModel(kind, path, path)
    from .darknet import convert_darknet_cached  # imports onnx; only needed for Darknet models

    assert weights is not None
    fix_cfg = corrected_tiny_cfg if kind == YOLOV3_TINY else None
    return PreparedModel(kind, path, convert_darknet_cached(path, weights, cache_dir, fix_cfg=fix_cfg))


def load_model(
    spec: str | None,
    *,
    runtime: RuntimeOptions,
    threads: int,
    cache_dir: Path,
    overrides: ModelOverrides | None = None,
    name: str | None = None,
) -> OnnxModel:
    """Load the model ``spec`` names (None: the embedded default), converting Darknet files once.

    ``overrides`` (a model profile's) replace, field by field, what Specks declares about the model itself.
    name: what the model is served and reported as (``--model NAME=PATH``); None: ``model_name(spec)``.
    """
    from .onnx_model import OnnxModel

    prepared = prepare_model(spec, cache_dir)
    return OnnxModel.load(
        prepared.onnx_path,
        runtime=runtime,
        threads=threads,
        source_format=prepared.source_format,
        path=prepared.source,
        name=name or prepared.name,
        overrides=prepared.overrides if overrides is None else prepared.overrides.replaced_by(overrides),
    )


def model_name(spec: str | None) -> str:
    """The name a model spec is served under when none is given: its file name, or the embedded default's.

    Cheap (no conversion, no hashing of weights); the same name ``load_model`` reports.
    """
    kind, path, _ = resolve_model_files(spec)
    return PreparedModel(kind, path, path).name

"""Model formats and loading. Only this package imports onnxruntime (and onnx, for conversion).

onnxruntime is imported by ``load_model`` (and ``onnx_model``), not here: ``specks serve``
prepares the model in the gunicorn master, which must never import it (see ``specks.web.server``).

``load_model`` takes what a user names (nothing for the embedded default, an ``.onnx`` file,
or a Darknet ``.cfg``/``.weights`` pair) and returns a ready ``OnnxModel``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import RuntimeOptions
from ..errors import ModelLoadError
from .default import DEFAULT_MODEL_NAME, corrected_tiny_cfg, embedded_default_files

if TYPE_CHECKING:
    from .onnx_model import OnnxModel

__all__ = [
    "DEFAULT_MODEL_NAME",
    "PreparedModel",
    "load_model",
    "prepare_model",
    "resolve_model_files",
]

DEFAULT_ALIASES = {"", "default", "yolov3-tiny"}


def resolve_model_files(spec: str | None) -> tuple[str, Path, Path | None]:
    """Return (format, main path, weights path) for a model spec; format is onnx | darknet | default."""
    if spec is None or spec.strip().lower() in DEFAULT_ALIASES:
        files = embedded_default_files()
        return "default", files.cfg, files.weights
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
    raise ModelLoadError(f"unsupported model file {spec!r}: give an .onnx file or a Darknet .cfg (with its .weights)")


@dataclass(frozen=True)
class PreparedModel:
    """A model ready for ONNX Runtime: its kind, the file the user named, and the ONNX file to load."""

    kind: str
    source: Path
    onnx_path: Path

    @property
    def name(self) -> str:
        return DEFAULT_MODEL_NAME if self.kind == "default" else self.source.name


def prepare_model(spec: str | None, cache_dir: Path) -> PreparedModel:
    """Check a model spec and convert Darknet files once (cached), without opening a session.

    The server calls this before forking workers, so a bad path fails fast and the
    conversion runs once.
    """
    kind, path, weights = resolve_model_files(spec)
    if kind == "onnx":
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        return PreparedModel(kind, path, path)
    from .darknet import convert_darknet_cached  # imports onnx; only needed for Darknet models

    assert weights is not None
    fix_cfg = corrected_tiny_cfg if kind == "default" else None
    return PreparedModel(kind, path, convert_darknet_cached(path, weights, cache_dir, fix_cfg=fix_cfg))


def load_model(
    spec: str | None, *, runtime: RuntimeOptions, threads: int, cache_dir: Path, name: str | None = None
) -> OnnxModel:
    """Load the model ``spec`` names (None: the embedded default), converting Darknet files once.

    name: what the model is served and reported as (``--model NAME=PATH``); None: ``model_name(spec)``.
    """
    from .onnx_model import OnnxModel

    prepared = prepare_model(spec, cache_dir)
    return OnnxModel.load(
        prepared.onnx_path,
        runtime=runtime,
        threads=threads,
        source_format=prepared.kind,
        path=prepared.source,
        name=name or prepared.name,
    )


def model_name(spec: str | None) -> str:
    """The name a model spec is served under when none is given: its file name, or the embedded default's.

    Cheap (no conversion, no hashing of weights); the same name ``load_model`` reports.
    """
    kind, path, _ = resolve_model_files(spec)
    return PreparedModel(kind, path, path).name

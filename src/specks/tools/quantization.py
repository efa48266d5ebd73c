"""`specks quantize`: a static INT8 copy of a served model, calibrated and checked on the user's images.

A COCO-format folder is split, by seed, into a calibration part and a held-out part. The
calibration images go through the serving pipeline with the server's defaults, and the model
inputs it makes (the full-image input, or the tiles of the small-object path, letterboxed as
served) are what the quantizer calibrates on. Both models are then scored on the held-out part
with ``specks eval``'s code; the INT8 file and its card are written only if AP50 holds within the
threshold (or the caller forces it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import __version__
from ..config import Settings
from ..core.options import DetectOptions, parse_detect_options
from ..core.pipeline import Detector
from ..errors import AccuracyDropError, ConfigError
from ..models.letterboxer import ort_detector
from ..models.onnx_model import OnnxModel
from ..models.profiles import ModelProfile, save_profile, sidecar_path
from ..models.quantize import DEFAULT_RECIPE, CalibrationFeed, QuantRecipe, float_graph, quantize_graph
from ..service.loading import load_detector
from .evaluation import CocoDataset, evaluate
from .tuning import split_dataset

# Scored as `specks eval` scores by default: every detection down to 0.001, up to 500 per image
# (VisDrone photos have hundreds of objects).
EVAL_CONF = 0.001
EVAL_MAX_DETS = 500
CARD_METRICS = ("AP", "AP50", "AP_small", "seconds_per_image")


@dataclass(frozen=True)
class QuantizeRequest:
    """What `specks quantize` was asked for.

    model:          the model spec (None: the embedded default), as ``--model`` takes it.
    calibration:    a COCO-format folder (images/ + annotations.coco.json).
    output:         the INT8 .onnx file to write (None: ``default_output``).
    held_out_ratio: share of the folder's images held out to score both models.
    max_ap50_drop:  most AP50 the INT8 copy may lose on the held-out images.
    force:          write even past ``max_ap50_drop``.
    """

    model: str | None
    calibration: Path
    output: Path | None = None
    held_out_ratio: float = 0.3
    max_ap50_drop: float = 0.01
    force: bool = False
    seed: int = 0
    recipe: QuantRecipe = DEFAULT_RECIPE

    def __post_init__(self) -> None:
        if not 0.05 <= self.held_out_ratio <= 0.9:
            raise ConfigError(f"--held-out must be within 0.05..0.9, got {self.held_out_ratio}")
        if not self.calibration.is_dir():
            raise ConfigError(f"--calibration {self.calibration}: no such folder (give a COCO-format folder)")


def default_output(detector: Detector) -> Path:
    """``<model file stem>.int8.onnx`` beside a model file; ``./<name>.int8.onnx`` for named models."""
    info = detector.model.info
    if info.source_format == "onnx" and info.name == Path(info.path).name:
        return Path(info.path).with_name(f"{Path(info.path).stem}.int8.onnx")
    return Path(f"{Path(info.name).stem}.int8.onnx")


class _RecordingModel(OnnxModel):
    """The served model, also keeping every input the pipeline runs (calibration's view of serving)."""

    def __init__(self, model: OnnxModel) -> None:
        super().__init__(model.session, model.info, model.threads, model.graph)
        self.inputs: list[npt.NDArray[np.float32]] = []

    def run(self, tensor: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        self.inputs.append(tensor)
        return super().run(tensor)


def calibration_sources(
    detector: Detector, dataset: CocoDataset, options: DetectOptions
) -> list[Callable[[], list[CalibrationFeed]]]:
    """One callable per image: the model inputs a request with ``options`` runs on it, as served."""
    recorder = _RecordingModel(detector.model)
    recording = ort_detector(recorder, detector.limits, detector.slicing)  # its slicing has the profile applied
    input_name = detector.model.info.input_name

    def source(path: Path) -> Callable[[], list[CalibrationFeed]]:
        def feeds() -> list[CalibrationFeed]:
            recording.predict_bytes(path.read_bytes(), options)
            made, recorder.inputs = recorder.inputs, []
            return [{input_name: tensor} for tensor in made]

        return feeds

    return [source(dataset.image_path(image)) for image in dataset.images]


def served_metadata(detector: Detector) -> dict[str, str]:
    """What the INT8 file says of itself, so it serves as its source does: nominal size, stride, names."""
    info = detector.model.info
    return {
        "imgsz": json.dumps(list(info.input_hw)),
        "stride": str(info.stride),
        "names": json.dumps(dict(enumerate(info.names))),
        "specks_quantized_from": info.name,
    }


def score(detector: Detector, dataset: CocoDataset, options: DetectOptions) -> dict[str, Any]:
    return evaluate(detector, dataset, options, max_dets=EVAL_MAX_DETS, progress=False)


def quantize_model(request: QuantizeRequest, settings: Settings, *, threads: int | None = None) -> dict[str, Any]:
    """Calibrate, quantize, score both models on the held-out images; write the INT8 file and its card.

    Returns the card (also written as ``<output stem>.card.json`` and ``.card.md``). Raises
    AccuracyDropError, writing nothing, when AP50 drops by more than ``max_ap50_drop`` unless forced.
    """
    dataset = CocoDataset.load(request.calibration)
    calibration, held_out = split_dataset(dataset, request.held_out_ratio, request.seed)
    settings = dataclasses.replace(settings, model=request.model)
    detector = load_detector(settings, threads=threads)
    output = request.output or default_output(detector)
    options = parse_detect_options({"conf": EVAL_CONF, "max_det": EVAL_MAX_DETS})
    graph = detector.model.graph if detector.model.graph is not None else Path(detector.model.info.path)
    folder = output.resolve().parent
    folder.mkdir(parents=True, exist_ok=True)
    handle, staged_name = tempfile.mkstemp(prefix=f".{output.stem}-", suffix=".onnx", dir=folder)
    os.close(handle)
    staged = Path(staged_name)
    try:
        quantize_graph(
            float_graph(graph, symbolic_hw=detector.model.info.dynamic_hw),
            calibration_sources(detector, calibration, options),
            staged,
            recipe=request.recipe,
            metadata=served_metadata(detector),
        )
        quantized = load_detector(dataclasses.replace(settings, model=str(staged)), threads=threads, use_profile=False)
        # Served as the source is: the same limits, slicing defaults and profile.
        quantized = ort_detector(quantized.model, settings.limits, settings.slicing, profile=detector.profile)
        before, after = score(detector, held_out, options), score(quantized, held_out, options)
        card = build_card(request, detector, output, calibration, held_out, before, after)
        check_drop(card, request)
        staged.replace(output)
    finally:
        staged.unlink(missing_ok=True)
    sidecar = sidecar_path(str(output))
    if isinstance(detector.profile, ModelProfile) and sidecar is not None:  # its profile serves its copy too
        save_profile(detector.profile, sidecar)
    write_card(card, output)
    return card


def check_drop(card: dict[str, Any], request: QuantizeRequest) -> None:
    drop = card["ap50_drop"]
    if drop > request.max_ap50_drop and not request.force:
        before, after = card["scores"]["float"]["AP50"], card["scores"]["int8"]["AP50"]
        raise AccuracyDropError(
            f"the INT8 copy scores AP50 {after:.3f} against {before:.3f} on the {card['images']['held_out']} "
            f"held-out images: a drop of {drop:.3f}, more than --max-ap50-drop {request.max_ap50_drop:g}; "
            "nothing was written (calibrate on more images like those served, or pass --force to write it anyway)"
        )


def build_card(
    request: QuantizeRequest,
    detector: Detector,
    output: Path,
    calibration: CocoDataset,
    held_out: CocoDataset,
    before: dict[str, Any],
    after: dict[str, Any],
) -> dict[str, Any]:
    """The card's facts: what was quantized how, on what, and what it scores and costs before and after."""
    return {
        "model": output.name,
        "output": str(output),
        "source_model": detector.model.info.name,
        "made_by": f"specks quantize (Specks {__version__})",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "recipe": request.recipe.describe(),
        "calibration_folder": str(request.calibration),
        "images": {"calibration": len(calibration.images), "held_out": len(held_out.images)},
        "seed": request.seed,
        "scores": {
            "float": {name: before[name] for name in CARD_METRICS},
            "int8": {name: after[name] for name in CARD_METRICS},
        },
        "ap50_drop": round(before["AP50"] - after["AP50"], 4),
        "max_ap50_drop": request.max_ap50_drop,
        "forced": request.force and before["AP50"] - after["AP50"] > request.max_ap50_drop,
        "speedup": round(before["seconds_per_image"] / max(after["seconds_per_image"], 1e-9), 3),
    }


def card_paths(output: Path) -> tuple[Path, Path]:
    """(JSON card, Markdown card) beside the INT8 file."""
    return output.with_name(f"{output.stem}.card.json"), output.with_name(f"{output.stem}.card.md")


def write_card(card: dict[str, Any], output: Path) -> None:
    json_path, markdown_path = card_paths(output)
    json_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    markdown_path.write_text(card_markdown(card), encoding="utf-8")


def card_markdown(card: dict[str, Any]) -> str:
    """The card a person reads: the recipe, the data, and a before/after table on the held-out images."""
    float_scores, int8_scores = card["scores"]["float"], card["scores"]["int8"]
    rows = [
        f"| {name.replace('_', ' ')} | {float_scores[name]:.4f} | {int8_scores[name]:.4f} |" for name in CARD_METRICS
    ]
    recipe = ", ".join(f"{key}={value}" for key, value in card["recipe"].items())
    forced = "\n**Written with --force past the AP50 threshold.**\n" if card["forced"] else ""
    return "\n".join(
        [
            f"# {card['model']}",
            "",
            f"Static INT8 copy of `{card['source_model']}`, made by {card['made_by']} on {card['created']}.",
            "",
            f"- **Recipe**: {recipe}.",
            f"- **Calibration**: {card['images']['calibration']} images of `{card['calibration_folder']}` "
            f"(seed {card['seed']}), through the serving pipeline with the server's defaults.",
            f"- **Held out**: {card['images']['held_out']} images, scored as `specks eval` scores "
            f"(conf {EVAL_CONF}, maxDets {EVAL_MAX_DETS}).",
            f"- **AP50 drop**: {card['ap50_drop']:.4f} (allowed {card['max_ap50_drop']:g}); "
            f"speed-up x{card['speedup']:.2f} (one pass each on this machine: timings are indicative).",
            forced,
            "| metric | float | int8 |",
            "|---|---|---|",
            *rows,
            "",
        ]
    )

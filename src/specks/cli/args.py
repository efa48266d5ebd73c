"""The flags several commands share, and what they become.

- model flags (``--model``, ``--threads``, ``--providers``, ``--profile``): ``settings_from_args`` reads
  them over the SPECKS_* environment into ``Settings``;
- detection flags of predict and eval (``--conf``, ``--iou``, ``--multi-label``, ``--max-det``, ``--imgsz``)
  and the slicing flags (``--slice`` ... ``--soft-nms``): ``detect_fields`` turns them into DetectOptions
  fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any, TypeAlias

from ..config import ModelSpec, Settings, parse_model_arg
from ..core.knobs import DEFAULT_CONF, DEFAULT_IOU, DEFAULT_MAX_DET, DEFAULT_SLICED_IOU, OVERLAP, TILE_PX
from ..errors import ConfigError, SpecksError

# The ``sub`` of ``build_parser``: every command module adds its commands' parsers to it.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


# -- the model: --model, --threads, --providers, --profile -> Settings ----------------------------------
def add_model_args(parser: argparse.ArgumentParser, *, several: bool = False) -> None:
    """--model (repeatable with ``several``: serve), --threads, --providers and --profile."""
    if several:
        parser.add_argument(
            "--model",
            action="append",
            help="an .onnx file, a Darknet .cfg or the named model yolov3-tiny (served under its file name, the "
            "default for requests), or "
            "NAME=PATH to serve it as NAME; repeatable. The embedded default is always served too "
            "(GET /models lists the names)",
        )
    else:
        parser.add_argument(
            "--model",
            help="an .onnx file, a Darknet .cfg, the named model yolov3-tiny, or NAME=PATH "
            "(default: the embedded YOLOX-Nano)",
        )
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: cores / workers)")
    parser.add_argument("--providers", help="execution providers in order, e.g. cuda,cpu (default: cpu)")
    add_profile_arg(parser)


def add_profile_arg(parser: argparse.ArgumentParser) -> None:
    """--profile: a model profile file."""
    parser.add_argument(
        "--profile",
        help="a model profile (JSON, e.g. from `specks tune`; default: SPECKS_PROFILE, else "
        "<model file>.specks.json beside the model)",
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Environment first (SPECKS_*), then the flags that were given."""
    settings = Settings.from_env()
    overrides: dict[str, Any] = {}
    for name in ("host", "port", "workers", "max_requests", "max_requests_jitter", "profile"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    if getattr(args, "model", None):
        overrides.update(model_overrides(args.model if isinstance(args.model, list) else [args.model]))
    runtime: dict[str, Any] = {}
    if getattr(args, "threads", None) is not None:
        runtime["intra_op_threads"] = args.threads
    if getattr(args, "providers", None):
        runtime["providers"] = tuple(p.strip() for p in args.providers.split(",") if p.strip())
    if runtime:
        overrides["runtime"] = dataclasses.replace(settings.runtime, **runtime)
    return dataclasses.replace(settings, **overrides)


def model_overrides(values: list[str]) -> dict[str, Any]:
    """``--model`` values -> Settings fields: at most one bare path (``model``), any NAME=PATH (``models``).

    Given on the command line, they replace SPECKS_MODEL and SPECKS_MODELS both.
    """
    parsed = [parse_model_arg(value) for value in values]
    bare = [value for value in parsed if isinstance(value, str)]
    if len(bare) > 1:
        raise ConfigError(
            f"only one --model may be a bare path (got {', '.join(bare)}); name the others with NAME=PATH"
        )
    return {"model": bare[0] if bare else None, "models": tuple(v for v in parsed if isinstance(v, ModelSpec))}


# -- detection: --conf, --iou, --multi-label, --max-det, --imgsz -> DetectOptions fields ---------------
def conf_value(text: str) -> float | dict[str, Any]:
    """``--conf``: a number, or per-class thresholds as a JSON object, e.g. '{"person": 0.3, "*": 0.5}'."""
    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"not a JSON object of per-class thresholds: {exc.msg}") from exc
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError("per-class thresholds must be a JSON object")
        return value
    try:
        return float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"a number 0..1 or a JSON object, got {text!r}") from exc


CONF_HELP = 'minimum confidence 0..1, or per class as JSON: \'{"person": 0.3, "*": 0.5}\''


def add_detect_args(parser: argparse.ArgumentParser) -> None:
    """--conf, --iou, --multi-label, --max-det, --classes and --imgsz, with `specks predict`'s defaults."""
    parser.add_argument(
        "--conf", type=conf_value, help=f"{CONF_HELP} (default: the model profile's, else {DEFAULT_CONF:g})"
    )
    add_iou_args(parser)
    parser.add_argument(
        "--max-det", type=int, default=DEFAULT_MAX_DET, help=f"most detections per image (default {DEFAULT_MAX_DET})"
    )
    parser.add_argument("--classes", help="comma-separated class names or ids to keep, e.g. person,car")
    parser.add_argument("--imgsz", type=int, help="model input size (dynamic-shape models only)")


def add_iou_args(parser: argparse.ArgumentParser) -> None:
    """--iou and --multi-label; left out, the mode (full image or sliced) decides."""
    parser.add_argument(
        "--iou",
        type=float,
        help=f"NMS IoU threshold 0..1 (default {DEFAULT_IOU:g}; {DEFAULT_SLICED_IOU:g} when sliced)",
    )
    parser.add_argument(
        "--multi-label", choices=["on", "off"], help="one box may carry several classes (default: on only when sliced)"
    )


def iou_options(args: argparse.Namespace) -> dict[str, Any]:
    """--iou / --multi-label as DetectOptions fields; absent flags leave the mode's defaults."""
    options: dict[str, Any] = {}
    if args.iou is not None:
        options["iou"] = args.iou
    if args.multi_label is not None:
        options["multi_label"] = args.multi_label == "on"
    return options


def detect_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The DetectOptions fields that `specks predict` and `specks eval` flags share."""
    fields: dict[str, Any] = {"conf": args.conf, "max_det": args.max_det, **iou_options(args), **slice_options(args)}
    if args.imgsz is not None:
        fields["imgsz"] = args.imgsz
    return fields


# -- slicing: --slice ... --soft-nms -> DetectOptions fields -------------------------------------------
# --slice values -> DetectOptions.slice
SLICE_MODES: dict[str, str | bool] = {"auto": "auto", "on": True, "off": False}
SLICE_COMPARE = "compare"


def add_slice_args(parser: argparse.ArgumentParser, *, compare: bool = False) -> None:
    """Sliced-inference flags; each one left out keeps the server's setting (SPECKS_SLICE, ...)."""
    modes = [*SLICE_MODES, SLICE_COMPARE] if compare else list(SLICE_MODES)
    slice_help = "tiled inference for small objects: auto (image at least twice the model input), on, off"
    if compare:
        slice_help += ", or compare (off and on, side by side)"
    add = parser.add_argument
    add("--slice", choices=modes, help=slice_help)
    add(
        "--tile",
        type=int,
        help=f"tile side in image pixels, {TILE_PX.low:g}..{TILE_PX.high:g} (default: from the model)",
    )
    add("--tile-scale", type=float, help="model-input px per image px in a tile, dynamic models (default 1: native)")
    add(
        "--overlap",
        type=float,
        help=f"overlap of neighbouring tiles as a ratio of the tile, {OVERLAP.low:g}..{OVERLAP.high:g}",
    )
    add("--full-image", choices=["on", "off"], help="also run the whole image and merge it with the tiles")
    add("--merge", choices=["nms", "nmm", "wbf"], help="how tile and pass results merge: best box, merged, fused")
    add("--merge-metric", choices=["iou", "ios"], help="overlap measure for merging (ios: over the smaller)")
    add("--merge-threshold", type=float, help="overlap above which two tile detections merge, 0..1")
    add("--scales", help="input scale factors of fused passes, e.g. 1,1.5 (default 1: one pass)")
    add("--flip", choices=["on", "off"], help="also run every pass mirrored and fuse it (test-time augmentation)")
    add("--soft-nms", choices=["on", "off"], help="decay overlapping boxes' scores instead of dropping them")


def slice_options(args: argparse.Namespace) -> dict[str, Any]:
    """The slicing flags that were given, as DetectOptions fields (``--slice compare`` is the caller's)."""
    options: dict[str, Any] = {}
    if args.slice in SLICE_MODES:
        options["slice"] = SLICE_MODES[args.slice]
    for name in ("full_image", "flip", "soft_nms"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name) == "on"
    if args.scales is not None:
        try:
            options["scales"] = [float(part) for part in args.scales.split(",") if part.strip()]
        except ValueError as exc:
            raise SpecksError(f"--scales takes numbers like 1,1.5 (got {args.scales!r})") from exc
    for name in ("tile", "tile_scale", "overlap", "merge", "merge_metric", "merge_threshold"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    return options

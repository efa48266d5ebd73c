"""The ``specks`` command: thin sub-commands that parse, call the core and print."""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ..config import ModelSpec, Settings, parse_model_arg
from ..errors import ConfigError, SpecksError
from ..logs import LogFormat, configure_logging
from ..tools.mosaic import DEFAULT_SCALES, MosaicSpec, build_mosaics, mosaic_cache_dir

if TYPE_CHECKING:
    from ..core.options import DetectOptions
    from ..core.preprocess import Preprocessing
    from ..web.ray_config import RayDeployment


class Engine(enum.Enum):
    """What ``specks serve`` runs the app on."""

    GUNICORN = "gunicorn"
    RAY = "ray"


def _common_model_args(parser: argparse.ArgumentParser, *, several: bool = False) -> None:
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
        parser.add_argument("--model", help="an .onnx file, a Darknet .cfg, the named model yolov3-tiny, or NAME=PATH "
            "(default: the embedded YOLOX-Nano)",)
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: cores / workers)")
    parser.add_argument("--providers", help="execution providers in order, e.g. cuda,cpu (default: cpu)")
    _profile_arg(parser)


def _profile_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        help="a model profile (JSON, e.g. from `specks tune`; default: SPECKS_PROFILE, else "
        "<model file>.specks.json beside the model)",
    )


def _ray_args(parser: argparse.ArgumentParser) -> None:
    """Replicas, autoscaling and per-replica resources of the Ray Serve deployment."""
    ray = parser.add_argument_group("Ray Serve (--engine ray, ray-config)")
    add = ray.add_argument
    add("--replicas", type=int, help="replicas, each with its own model (default 1; not with --max-replicas)")
    add("--min-replicas", type=int, help="autoscaling: fewest replicas (default 1; needs --max-replicas)")
    add("--max-replicas", type=int, help="autoscaling: most replicas (turns autoscaling on)")
    add("--target-ongoing-requests", type=float, help="autoscaling: requests in flight per replica to aim for (2)")
    add("--replica-cpus", type=float, default=1.0, help="CPUs Ray reserves per replica; default inference threads")
    add("--max-ongoing-requests", type=int, help="requests one replica holds at once; more wait in Serve (4)")


def ray_deployment_from_args(args: argparse.Namespace, settings: Settings) -> RayDeployment:
    """The --replicas/--*-replicas/--replica-cpus flags as a RayDeployment (needs no Ray)."""
    from ..web.ray_config import DEFAULT_MAX_ONGOING_REQUESTS, RayDeployment, Scaling

    if args.replicas is not None and args.max_replicas is not None:
        raise SpecksError("give --replicas or --min-replicas/--max-replicas (autoscaling), not both")
    scaling = Scaling(
        replicas=args.replicas or 1,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        target_ongoing_requests=args.target_ongoing_requests or Scaling.target_ongoing_requests,
    )
    return RayDeployment(
        scaling=scaling,
        replica_cpus=args.replica_cpus,
        max_ongoing_requests=args.max_ongoing_requests or DEFAULT_MAX_ONGOING_REQUESTS,
        graceful_shutdown_timeout_s=settings.graceful_timeout_s,
    )


def ray_environ_from_args(args: argparse.Namespace) -> dict[str, str]:
    """The replicas' SPECKS_* variables: this environment's, with --model/--threads/--providers folded in."""
    from ..web.ray_config import replica_environ

    model = args.model
    if isinstance(model, list):  # `serve --model` repeats (NAME=PATH); replicas take several via SPECKS_MODELS
        if len(model) > 1 or "=" in model[0]:
            raise SpecksError("--engine ray takes one plain --model PATH; several: SPECKS_MODELS=a=/p.onnx,...")
        model = model[0]
    return replica_environ(
        os.environ, replica_cpus=args.replica_cpus, model=model, threads=args.threads, providers=args.providers
    )


def _iou_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--iou", type=float, help="NMS IoU threshold 0..1 (default 0.45; 0.6 when sliced)")
    parser.add_argument(
        "--multi-label", choices=["on", "off"], help="one box may carry several classes (default: on only when sliced)"
    )


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


def _detect_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conf", type=conf_value, default=0.25, help=f"{CONF_HELP} (default 0.25)")
    _iou_args(parser)
    parser.add_argument("--max-det", type=int, default=300, help="most detections per image (default 300)")
    parser.add_argument("--classes", help="comma-separated class names or ids to keep, e.g. person,car")
    parser.add_argument("--imgsz", type=int, help="model input size (dynamic-shape models only)")


# --slice values -> DetectOptions.slice
SLICE_MODES: dict[str, str | bool] = {"auto": "auto", "on": True, "off": False}
SLICE_COMPARE = "compare"


def _slice_args(parser: argparse.ArgumentParser, *, compare: bool = False) -> None:
    """Sliced-inference flags; each one left out keeps the server's setting (SPECKS_SLICE, ...)."""
    modes = [*SLICE_MODES, SLICE_COMPARE] if compare else list(SLICE_MODES)
    slice_help = "tiled inference for small objects: auto (image at least twice the model input), on, off"
    if compare:
        slice_help += ", or compare (off and on, side by side)"
    add = parser.add_argument
    add("--slice", choices=modes, help=slice_help)
    add("--tile", type=int, help="tile side in image pixels, 64..4096 (default: from the model)")
    add("--tile-scale", type=float, help="model-input px per image px in a tile, dynamic models (default 1: native)")
    add("--overlap", type=float, help="overlap of neighbouring tiles as a ratio of the tile, 0..0.75")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="specks", description="Small-object detection API and tools.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve",
        help="run the HTTP API (gunicorn, one model per worker; or Ray Serve replicas with --engine ray)",
    )
    serve.add_argument("--host", help="interface to bind (default 127.0.0.1; 0.0.0.0 for all)")
    serve.add_argument("--port", type=int, help="port (default 6060)")
    serve.add_argument(
        "--engine",
        choices=[engine.value for engine in Engine],
        default=Engine.GUNICORN.value,
        help="gunicorn (default) or ray: Ray Serve replicas (needs the ray extra: pip install 'specks[ray]')",
    )
    serve.add_argument("--workers", type=int, help="gunicorn worker processes (default: one per core)")
    serve.add_argument(
        "--address", help="--engine ray: join this running Ray cluster (auto, or HEAD_IP:6379) instead of a local Ray"
    )
    serve.add_argument(
        "--max-requests", type=int, help="replace each worker gracefully after about N requests (default 0: never)"
    )
    serve.add_argument(
        "--max-requests-jitter", type=int, help="add a random 0..N to each worker's --max-requests (default 0)"
    )
    _common_model_args(serve, several=True)
    _ray_args(serve)

    ray_config = sub.add_parser(
        "ray-config",
        help="print a Ray Serve config (YAML) for serve deploy or a KubeRay RayService",
        description="Prints a Serve config file that runs specks.web.ray_serve:app with these replicas and "
        "resources; the SPECKS_* variables of this environment (and the model flags) become the "
        "application's runtime_env env_vars. SPECKS_API_KEYS is never written: give keys to the Ray "
        "pods' environment or mount a file for SPECKS_API_KEYS_FILE.",
    )
    ray_config.add_argument("--host", default="0.0.0.0", help="where Serve's proxies listen (default 0.0.0.0)")
    ray_config.add_argument("--port", type=int, help="the proxies' port (default SPECKS_PORT, 6060)")
    _common_model_args(ray_config)
    _ray_args(ray_config)

    predict = sub.add_parser(
        "predict", help="detect objects in image files or folders; prints the API's JSON, one line each"
    )
    predict.add_argument("images", nargs="+", type=Path, help="image files, or folders of them (not recursive)")
    predict.add_argument("--pretty", action="store_true", help="indent the JSON")
    predict.add_argument(
        "--jsonl",
        "--output",
        type=Path,
        help="write JSON Lines to this file instead of stdout: one answer per image, with its 'file'",
    )
    predict.add_argument(
        "--save-dir", type=Path, help="write each annotated picture (NAME.jpg) and its answer (NAME.json) here"
    )
    predict.add_argument(
        "--progress", choices=["auto", "on", "off"], default="auto", help="progress bar on stderr (auto: on a terminal)"
    )
    _common_model_args(predict)
    _detect_args(predict)
    _slice_args(predict)

    evaluate = sub.add_parser("eval", help="score the pipeline on a COCO-format dataset: AP, AR, seconds")
    evaluate.add_argument("dataset", type=Path, help="a folder with images/ and annotations.coco.json")
    evaluate.add_argument("--conf", type=conf_value, default=0.001, help=f"{CONF_HELP} (default 0.001)")
    _iou_args(evaluate)
    evaluate.add_argument("--max-det", type=int, default=500, help="most detections per image (default 500)")
    evaluate.add_argument("--imgsz", type=int, help="model input size (dynamic-shape models only)")
    evaluate.add_argument("--limit", type=int, help="score only the first N images")
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    _common_model_args(evaluate)
    _slice_args(evaluate, compare=True)

    models = sub.add_parser("models", help="show the default model, or what a model file contains")
    models.add_argument("path", nargs="?", help="a model file or name (default: the embedded default)")
    models.add_argument("--json", action="store_true", help="print JSON")
    _profile_arg(models)

    tune = sub.add_parser(
        "tune",
        help="fit the small-object settings to your own labelled images and write a model profile",
        description="Splits a COCO-format folder into a tuning part and a held-out part, searches slicing, "
        "scales, flip, merging and thresholds on the tuning part (greedy, one setting at a time), keeps the "
        "best AP50 within --budget-ms (milliseconds per image measured on this machine), and writes it as a "
        "model profile only if it also beats the defaults on the held-out part (else the defaults).",
    )
    tune.add_argument("dataset", type=Path, help="a folder with images/ and annotations.coco.json")
    tune.add_argument("--model", help="an .onnx file, a Darknet .cfg, or yolov3-tiny (default: embedded YOLOX-Nano)")
    tune.add_argument("--budget-ms", type=float, help="most milliseconds per image a setting may cost (default: none)")
    tune.add_argument(
        "--output", type=Path, help="profile to write (default: <model file>.specks.json, or ./specks-profile.json)"
    )
    tune.add_argument("--holdout", type=float, default=0.3, help="share of images held out to check (default 0.3)")
    tune.add_argument("--seed", type=int, default=0, help="seed of the tuning/held-out split (default 0)")
    tune.add_argument("--conf", type=float, default=0.01, help="minimum confidence scored (default 0.01)")
    tune.add_argument("--max-det", type=int, default=500, help="most detections per image (default 500)")
    tune.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: every core)")
    tune.add_argument("--json", action="store_true", help="also print the report as JSON")

    bench = sub.add_parser("bench", help="end-to-end POST /predict latency vs bare session.run")
    bench.add_argument("--image", type=Path, help="a JPEG (default: a synthetic 2000x1500 photo-like JPEG)")
    bench.add_argument("--runs", type=int, default=50, help="timed requests (default 50)")
    bench.add_argument("--warmup", type=int, default=5, help="untimed requests first (default 5)")
    bench.add_argument(
        "--default-config",
        action="store_true",
        help="serve with no flags: one client vs bare on every core, then concurrency 8 full-image and "
        "small-object load vs bare sequential (ignores --threads for the server)",
    )
    bench.add_argument("--rounds", type=int, default=4, help="--default-config: load rounds (default 4)")
    bench.add_argument("--round-seconds", type=float, default=10, help="--default-config: seconds a round (default 10)")
    bench.add_argument("--json", action="store_true", help="print JSON")
    _common_model_args(bench)

    load = sub.add_parser(
        "load",
        help="load test: throughput, latency percentiles, errors and worker memory at a fixed concurrency",
        description="Sends the seed-style request (a JSON body with the base64 image) back to back from "
        "--concurrency keep-alive connections. With --model (or neither option) it starts its own "
        "'specks serve' on 127.0.0.1 with the default workers and SPECKS_SLICE=off, so a large photo runs "
        "the model once on the whole image (slicing a 2000x1500 photo would be about 13 model runs per "
        "request, a different workload), samples the workers' memory, and afterwards times bare "
        "session.run on the same model for comparison.",
    )
    target = load.add_mutually_exclusive_group()
    target.add_argument("--url", help="load a server that is already running, e.g. http://127.0.0.1:6060")
    target.add_argument(
        "--model", help="start a server with this model (default: the embedded one); slicing off, see above"
    )
    load.add_argument("--image", type=Path, help="a JPEG (default: a synthetic photo-like JPEG, see --image-size)")
    load.add_argument(
        "--image-size", type=_size_wh, default=(2000, 1500), help="the synthetic photo's WxH (default 2000x1500)"
    )
    load.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    load.add_argument("--duration", type=float, default=60, help="seconds of sending (default 60)")
    load.add_argument("--requests", type=int, help="stop after this many requests (default: no limit)")
    load.add_argument("--warmup", type=float, default=5, help="first seconds left out of the figures (default 5)")
    load.add_argument("--timeout", type=float, default=60, help="seconds a request may take (default 60)")
    load.add_argument("--workers", type=int, help="workers of the server started here (default: one per core)")
    load.add_argument(
        "--slice",
        choices=list(SLICE_MODES),
        default="off",
        help="SPECKS_SLICE of the server started here (default off: one model run per request)",
    )
    load.add_argument("--json", action="store_true", help="print JSON")

    mosaic = sub.add_parser(
        "mosaic",
        help="make a small-object dev set: shrunk copies of a COCO folder's photos packed onto large canvases",
    )
    mosaic.add_argument("source", type=Path, help="a COCO-format folder (images/ + annotations.coco.json)")
    mosaic.add_argument("--output", type=Path, help="where to write it (default: the cache, see SPECKS_CACHE_DIR)")
    mosaic.add_argument(
        "--scales", default=",".join(str(s) for s in DEFAULT_SCALES), help="shrink factors, comma-separated"
    )
    mosaic.add_argument("--canvas", default="2000x1500", help="canvas WIDTHxHEIGHT in pixels (default 2000x1500)")
    mosaic.add_argument("--seed", type=int, default=0, help="shuffling seed (default 0)")

    _train_args(sub)
    _quantize_args(sub)
    sub.add_parser("config", help="show the effective configuration")
    return parser


def _quantize_args(sub: Any) -> None:
    quantize = sub.add_parser(
        "quantize",
        help="write a static INT8 copy of a model, calibrated and checked on your own labelled images",
        description="Splits a COCO-format folder into a calibration part and a held-out part, calibrates "
        "ONNX Runtime's static INT8 quantization on the model inputs serving makes of the calibration images "
        "(the full image, or the small-object path's tiles), scores both models on the held-out images as "
        "`specks eval` does, and writes the INT8 model and its card only if AP50 drops by no more than "
        "--max-ap50-drop (or --force).",
    )
    quantize.add_argument("model", help="the model to quantize: default (the embedded YOLOX-Nano), a named "
                          "model, or an .onnx file")  # fmt: skip
    quantize.add_argument("--calibration", type=Path, required=True,
                          help="a COCO-format folder (images/ + annotations.coco.json) like the images served")
    quantize.add_argument("--output", type=Path, help="the INT8 .onnx file (default: <model>.int8.onnx)")
    quantize.add_argument("--held-out", type=float, default=0.3,
                          help="share of the images held out to score both models (default 0.3)")
    quantize.add_argument("--max-ap50-drop", type=float, default=0.01,
                          help="refuse to write when held-out AP50 drops by more (default 0.01)")
    quantize.add_argument("--force", action="store_true", help="write the model even past --max-ap50-drop")
    quantize.add_argument("--seed", type=int, default=0, help="seed of the calibration/held-out split (default 0)")
    quantize.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: every core)")
    quantize.add_argument("--json", action="store_true", help="print the card as JSON")


def _train_args(sub: Any) -> None:
    train = sub.add_parser(
        "train",
        help="fine-tune a YOLOX-layout model on your own labelled images (needs: pip install 'specks[train]')",
        description="Fine-tunes the embedded YOLOX-Nano (or a YOLOX-layout .onnx file) on a COCO-format folder "
        "(images/ + annotations.coco.json) or a YOLO-layout export (data.yaml, images/, labels/), on native-"
        "resolution crops, the pixel scale the server runs. Each epoch is scored on the validation images with "
        "specks eval's code; the best epoch is written as DIR/model.onnx with a model card, the per-epoch log, "
        "a profile and the learning curve. Ctrl-C writes a checkpoint; --resume DIR continues.",
    )
    train.add_argument("dataset", nargs="?", type=Path, help="the training images (not needed with --resume)")
    train.add_argument("--model", help="the model to start from: a YOLOX-layout .onnx file (default: the embedded "
                       "YOLOX-Nano)")  # fmt: skip
    val = train.add_mutually_exclusive_group()
    val.add_argument("--val", type=Path, help="validation images (default: the dataset's val split, else --val-split)")
    val.add_argument("--val-split", type=float, default=0.2, help="share of the images held out to validate "
                     "when there is no val split (default 0.2)")  # fmt: skip
    length = train.add_mutually_exclusive_group()
    length.add_argument("--time-budget", type=float, metavar="MIN", help="train for this many minutes, validation "
                        "included, then stop cleanly and export")  # fmt: skip
    length.add_argument("--epochs", type=int, help="train for this many epochs (default 20 without --time-budget)")
    train.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cpu (default, every core) or cuda")
    train.add_argument("--output", type=Path, help="output folder (default: runs/train-<dataset name>)")
    train.add_argument("--resume", type=Path, metavar="DIR", help="continue the run in this output folder")
    train.add_argument("--batch", type=int, default=8, help="crops per step (default 8)")
    train.add_argument("--imgsz", type=int, default=640, help="crop side in pixels, a multiple of 32 (default 640)")
    train.add_argument("--lr", type=float, default=2e-4, help="AdamW learning rate (default 2e-4)")
    train.add_argument("--freeze-backbone", action="store_true",
                       help="train the neck and head only (forgets less of the base model's general skill)")
    train.add_argument("--mosaic", type=float, default=0.0, help="share of samples that are 2x2 mosaics (default 0)")
    train.add_argument("--general", type=Path, help="a COCO-format folder of general photos: the card reports "
                       "what fine-tuning cost there, on the classes the model shares with it")  # fmt: skip
    train.add_argument("--mix", type=Path, help="a labelled folder of general photos mixed into training (on "
                       "the dataset's classes; the rest is background): keeps more of the base model's skill")
    train.add_argument("--mix-ratio", type=float, default=0.25, help="share of samples drawn from --mix (default 0.25)")
    train.add_argument("--class-balance", type=float, default=0.3, help="draw images of classes found in fewer "
                       "than this share of the images more often (repeat-factor sampling; 0: off; default 0.3)")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    train.add_argument("--threads", type=int, help="CPU threads (default: every core)")
    train.add_argument(
        "--progress", choices=["auto", "on", "off"], default="auto", help="progress bar on stderr (auto: on a terminal)"
    )


def _size_wh(text: str) -> tuple[int, int]:
    """'6000x4000' -> (6000, 4000)."""
    width, sep, height = text.lower().partition("x")
    if not (sep and width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in pixels, e.g. 6000x4000, got {text!r}")
    return int(width), int(height)


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


def cmd_serve(args: argparse.Namespace) -> int:
    from ..models import prepare_model
    from ..models.profiles import find_profile
    from ..service.memory import check_worker_memory, estimate_worker_memory
    from ..service.served import served_models

    if Engine(args.engine) is Engine.RAY:
        return serve_on_ray(args)
    from ..web.server import serve

    settings = settings_from_args(args)
    # Fail fast, and convert Darknet models once, before forking.
    prepared = {spec.name: prepare_model(spec.path, settings.cache_dir) for spec in served_models(settings)}
    estimate = estimate_worker_memory(settings, {name: p.onnx_path.stat().st_size for name, p in prepared.items()})
    check_worker_memory(settings, estimate)
    profile = find_profile(settings.model, settings.profile)  # a bad profile fails here, not in each worker
    shown = f", profile {profile.source.name}" if profile and profile.source else ""
    print(
        f"specks: serving {', '.join(prepared)} on http://{settings.host}:{settings.port} with "
        f"{settings.resolved_workers()} worker(s), {settings.threads_description()} each; "
        f"estimated {estimate.describe()}{shown}",
        file=sys.stderr,
    )
    serve(settings)
    return 0


def serve_on_ray(args: argparse.Namespace) -> int:
    """``specks serve --engine ray``: a local Ray (or the cluster at --address) until SIGINT/SIGTERM."""
    from ..models import prepare_model
    from ..web.ray_config import HttpOptions

    if args.workers is not None:
        raise SpecksError("--workers is for gunicorn; with --engine ray give --replicas or --min/--max-replicas")
    environ = ray_environ_from_args(args)
    settings = settings_from_args(args)
    deployment = ray_deployment_from_args(args, settings)
    if args.address is None:  # on a cluster the model path is the nodes' business, not this machine's
        prepare_model(settings.model, settings.cache_dir)  # fail fast; converts a Darknet model once
    try:
        from ..web.ray_serve import bind, serve_until_stopped
    except ImportError as exc:
        raise SpecksError(f"--engine ray needs the ray extra: pip install 'specks[ray]' (or make ray): {exc}") from exc
    http = HttpOptions(host=settings.host, port=settings.port, request_timeout_s=settings.request_timeout_s)
    scaling = deployment.scaling
    replicas = f"{scaling.floor}..{scaling.max_replicas} (autoscaling)" if scaling.autoscaling else str(scaling.floor)
    print(
        f"specks: serving on http://{http.host}:{http.port} through Ray Serve with {replicas} replica(s), "
        f"{deployment.replica_cpus:g} CPU and {environ['SPECKS_THREADS']} inference thread(s) each",
        file=sys.stderr,
    )
    serve_until_stopped(bind(deployment, environ), deployment, http, args.address)
    return 0


def cmd_ray_config(args: argparse.Namespace) -> int:
    from ..web.ray_config import HttpOptions, serve_config

    try:
        import yaml
    except ImportError as exc:
        raise SpecksError(f"ray-config needs PyYAML, part of the ray extra: pip install 'specks[ray]': {exc}") from exc
    environ = ray_environ_from_args(args)
    settings = Settings.from_env(environ)
    http = HttpOptions(host=args.host, port=args.port or settings.port, request_timeout_s=settings.request_timeout_s)
    config = serve_config(ray_deployment_from_args(args, settings), environ, http)
    print("# Ray Serve config for Specks: serve deploy FILE, or a KubeRay RayService's serveConfigV2.")
    print("# Generated by: specks ray-config " + " ".join(sys.argv[2:]).strip())
    if "SPECKS_API_KEYS" in os.environ:
        print("# SPECKS_API_KEYS is set here but not written: put it in the Ray pods' environment (a Secret).")
    print(yaml.safe_dump(config, sort_keys=False), end="")
    return 0


def _iou_options(args: argparse.Namespace) -> dict[str, Any]:
    """--iou / --multi-label as DetectOptions fields; absent flags leave the mode's defaults."""
    options: dict[str, Any] = {}
    if args.iou is not None:
        options["iou"] = args.iou
    if args.multi_label is not None:
        options["multi_label"] = args.multi_label == "on"
    return options


def _detect_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The DetectOptions fields that `specks predict` and `specks eval` flags share."""
    fields: dict[str, Any] = {"conf": args.conf, "max_det": args.max_det, **_iou_options(args), **slice_options(args)}
    if args.imgsz is not None:
        fields["imgsz"] = args.imgsz
    return fields


IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".avif", ".gif", ".bmp", ".tif", ".tiff"})


def image_paths(paths: Sequence[Path]) -> list[Path]:
    """Files as given, and each folder's image files (by suffix, sorted by name; sub-folders are not searched)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            found.append(path)
    return found


def _read_image_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SpecksError(f"cannot read {path}: {exc.strerror}") from exc


def cmd_predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..core.options import parse_detect_options
    from ..service.batching import predict_in_windows, shared_run_pixels
    from ..service.loading import load_detector

    settings = settings_from_args(args)
    options = _detect_fields(args)
    if args.classes:
        options["classes"] = [int(c) if c.strip().isdigit() else c.strip() for c in args.classes.split(",")]
    detect_options = parse_detect_options(options)
    paths = image_paths(args.images)
    detector = load_detector(settings)
    disable = {"auto": None, "on": False, "off": True}[args.progress]
    with (
        tqdm(total=len(paths), unit="image", file=sys.stderr, disable=disable) as bar,
        PredictOutput(args, detector.model.info.names) as output,
    ):
        for path, result in predict_in_windows(
            detector,
            paths,
            _read_image_file,
            detect_options,
            window=settings.limits.max_batch_images,
            keep_image=args.save_dir is not None,
            max_batch_input_pixels=shared_run_pixels(settings.shared_runs, detector.model.info.providers),
            on_done=bar.update,
        ):
            output.write(path, result, detector)
    return 1 if output.failures else 0


class PredictOutput:
    """Where ``specks predict`` writes: stdout or a JSON Lines file, and the pictures of ``--save-dir``."""

    def __init__(self, args: argparse.Namespace, names: Sequence[str]) -> None:
        self.pretty = args.pretty
        self.jsonl_path: Path | None = args.jsonl
        self.save_dir: Path | None = args.save_dir
        self.names = names
        self.failures = 0
        self._used_stems: set[str] = set()
        self._jsonl: Any = None

    def __enter__(self) -> PredictOutput:
        if self.save_dir is not None:
            self.save_dir.mkdir(parents=True, exist_ok=True)
        if self.jsonl_path is not None:
            self._jsonl = self.jsonl_path.open("w", encoding="utf-8")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._jsonl is not None:
            self._jsonl.close()

    def write(self, path: Path, result: Any, detector: Any) -> None:
        from tqdm import tqdm

        from ..core.pipeline import Prediction
        from ..web.schemas import encode_prediction

        if not isinstance(result, Prediction):
            tqdm.write(f"specks: {path}: {result.message}", file=sys.stderr)  # above the progress bar
            self.failures += 1
            if self._jsonl is not None:
                error = {"code": result.code, "message": result.message}
                self._jsonl.write(orjson.dumps({"file": str(path), "error": error}).decode() + "\n")
            return
        payload = encode_prediction(result, detector.model.info)
        if self.save_dir is not None:
            self._save(path, result, payload)
        if self._jsonl is not None:
            self._jsonl.write(orjson.dumps({"file": str(path), **payload}).decode() + "\n")
        else:
            option = orjson.OPT_INDENT_2 if self.pretty else 0
            sys.stdout.write(orjson.dumps(payload, option=option).decode() + "\n")

    def _save(self, path: Path, prediction: Any, payload: dict[str, Any]) -> None:
        from ..core.visualize import draw_prediction, encode_jpeg

        assert self.save_dir is not None
        stem, number = path.stem, 1
        while stem in self._used_stems:  # two inputs of one name (a.jpg and a.png, or two folders)
            number += 1
            stem = f"{path.stem}-{number}"
        self._used_stems.add(stem)
        (self.save_dir / f"{stem}.jpg").write_bytes(encode_jpeg(draw_prediction(prediction, self.names)))
        (self.save_dir / f"{stem}.json").write_bytes(orjson.dumps({"file": str(path), **payload}))


def _eval_configs(args: argparse.Namespace) -> dict[str, DetectOptions]:
    """Column label -> DetectOptions: one run, or full image and sliced for ``--slice compare``."""
    from ..core.options import parse_detect_options

    base = _detect_fields(args)
    if args.slice == SLICE_COMPARE:
        return {
            "full image": parse_detect_options({**base, "slice": False}),
            "sliced": parse_detect_options({**base, "slice": True}),
        }
    label = {"on": "sliced", "off": "full image"}.get(args.slice or "auto", "slice auto")
    return {label: parse_detect_options(base)}


def cmd_eval(args: argparse.Namespace) -> int:
    from ..service.loading import load_detector
    from ..tools.evaluation import CocoDataset, evaluate, metrics_table

    settings = settings_from_args(args)
    configs = _eval_configs(args)  # validate the flags before loading anything
    dataset = CocoDataset.load(args.dataset)
    detector = load_detector(settings)
    runs = {
        label: evaluate(detector, dataset, options, max_dets=args.max_det, limit=args.limit)
        for label, options in configs.items()
    }
    if args.json:
        report = {
            "dataset": str(args.dataset),
            "model": detector.model.info.name,
            "max_dets": args.max_det,
            "runs": {label: {**run, "options": configs[label].model_dump()} for label, run in runs.items()},
        }
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return 0
    first = next(iter(runs.values()))
    print(f"{args.dataset}: {first['images']} image(s), model {detector.model.info.name}, maxDets {args.max_det}")
    if first["categories_scored"] < first["categories"]:
        print(f"scored on the {first['categories_scored']} of {first['categories']} categories the model has")
    print(metrics_table(runs))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from ..service.loading import load_detector

    settings = Settings.from_env()
    if args.path:
        settings = dataclasses.replace(settings, model=args.path)
    if args.profile:
        settings = dataclasses.replace(settings, profile=args.profile)
    detector = load_detector(settings)
    info = detector.model.info
    profile = detector.profile.describe() if detector.profile else None
    if args.json:
        print(orjson.dumps({**info.to_dict(), "profile": profile}, option=orjson.OPT_INDENT_2).decode())
        return 0
    is_default = settings.model is None
    print(f"model:        {info.name}{'  (the embedded default)' if is_default else ''}")
    print(f"source:       {info.path} ({info.source_format})")
    dynamic = " (dynamic: any multiple of the stride)" if info.dynamic_hw else ""
    print(f"input size:   {info.input_hw[1]}x{info.input_hw[0]}{dynamic}")
    print(f"batch:        {'dynamic' if info.dynamic_batch else 'fixed 1'}")
    print(f"stride:       {info.stride}")
    print(f"output:       {info.layout.value}")
    print(f"preprocessing: {describe_preprocessing(info.preprocessing)}")
    print(f"providers:    {', '.join(info.providers)}")
    print(f"classes ({info.num_classes}): {', '.join(info.names)}")
    print(f"profile:      {describe_profile(profile)}")
    return 0


def describe_profile(profile: dict[str, Any] | None) -> str:
    """One line per part of the profile in force, e.g. 'tuned.specks.json: mode=on, flip=True'."""
    if profile is None:
        return "none (the server's small-object settings)"
    settings = ", ".join(f"{k}={v}" for k, v in profile["slicing"].items()) or "no slicing settings"
    lines = [f"{profile['file']}: {settings}"]
    for name in ("layout", "preprocessing", "input_hw"):
        if name in profile:
            lines.append(f"  {name}: {profile[name]}")
    held_out = profile["metadata"].get("held_out")
    if held_out:
        lines.append(f"  measured by tune on held-out images: {held_out}")
    return "\n".join(lines)


def describe_preprocessing(preprocessing: Preprocessing) -> str:
    """e.g. 'BGR, 0..255, pad 114, top_left' for YOLOX."""
    value_range = "0..1" if preprocessing.value_scale == 1 / 255 else f"0..{255 * preprocessing.value_scale:g}"
    return (
        f"{preprocessing.channel_order.value.upper()}, {value_range}, "
        f"pad {preprocessing.pad_value}, {preprocessing.placement.value}"
    )


def cmd_bench(args: argparse.Namespace) -> int:
    from ..tools.benchmark import (
        format_default_config_report,
        format_latency_report,
        run_default_config_benchmark,
        run_latency_benchmark,
    )

    settings = settings_from_args(args)
    if args.default_config:
        report = run_default_config_benchmark(
            settings,
            image_path=args.image,
            runs=args.runs,
            warmup=args.warmup,
            rounds=args.rounds,
            round_s=args.round_seconds,
        )
        text = format_default_config_report(report)
    else:
        report = run_latency_benchmark(settings, image_path=args.image, runs=args.runs, warmup=args.warmup)
        text = format_latency_report(report)
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() if args.json else text)
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from ..tools.benchmark import image_or_synthetic
    from ..tools.loadtest import predict_body, run_load, run_load_benchmark

    image_bytes = image_or_synthetic(args.image, size_wh=args.image_size)
    shape: dict[str, Any] = {
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "max_requests": args.requests,
        "timeout_s": args.timeout,
    }
    if args.url:
        report = run_load(args.url, predict_body(image_bytes), **shape).to_dict()
    else:
        report = run_load_benchmark(settings_from_args(args), image_bytes, slice_mode=args.slice, **shape)
    if args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        print(format_load_report(report))
    return 0 if report["errors"] == 0 else 1


def format_load_report(report: dict[str, Any]) -> str:
    window = report["window_s"]
    target = f"target:        {report['url']}"
    if "model" in report:  # a server started here
        target += f"  (model {report['model']}, {report['workers']} workers, slice {report['slice']})"
    lines = [target]
    lines.append(
        f"load:          concurrency {report['concurrency']}, {report['duration_s']:.0f} s, "
        f"measured {window[0]:.0f}..{window[1]:.0f} s after a {report['warmup_s']:.0f} s warm-up"
    )
    errors = f"{report['errors']}" + (f" {report['error_kinds']}" if report["errors"] else "")
    lines.append(f"requests:      {report['requests']} ({report['measured_requests']} measured), errors {errors}")
    lines.append(f"throughput:    {report['throughput_per_s']:.2f} req/s")
    latency = report["latency_ms"]
    if latency:
        lines.append("latency:       " + ", ".join(f"{k} {v:.1f} ms" for k, v in latency.items()))
    memory = report["memory"]
    for pid, worker in memory["workers"].items():
        start, end = worker["at_warmup_mb"], worker["at_end_mb"]
        shown = f"{start} MiB after warm-up, {end} MiB at end"
        if start is not None and end is not None:
            shown += f" ({end - start:+.1f})"
        lines.append(f"worker {pid}:  {shown}, {len(worker['series_mb'])} samples")
    if memory["growth_mb"] is not None:
        lines.append(f"memory growth: {memory['growth_mb']:+.1f} MiB (largest of any worker)")
    if memory.get("peak_total_mb") is not None:
        peaks = ", ".join(f"{peak:.0f}" for peak in memory["peak_mb"].values())
        lines.append(
            f"peak RSS:      {memory['peak_total_mb']:.0f} MiB, the workers' peaks ({peaks} MiB, VmHWM, "
            f"since {memory['peak_since']}) added up; {memory['sampled_peak_total_mb']:.0f} MiB at most at one sample"
        )
    elif not memory["workers"]:
        lines.append("memory:        not sampled (the server was not started here)")
    if "bare_session_run_per_s" in report:
        lines.append(f"bare session.run: {report['bare_session_run_per_s']:.2f} calls/s (sequential, all cores)")
        lines.append(f"throughput / bare: {report['throughput_over_bare']:.3f}")
    return "\n".join(lines)


def cmd_mosaic(args: argparse.Namespace) -> int:
    try:
        scales = tuple(float(part) for part in args.scales.split(","))
        canvas_wh = tuple(int(part) for part in args.canvas.lower().split("x"))
    except ValueError as exc:
        raise SpecksError(f"--scales takes numbers like 0.5,0.25 and --canvas WIDTHxHEIGHT ({exc})") from exc
    if len(canvas_wh) != 2:
        raise SpecksError(f"--canvas takes WIDTHxHEIGHT, got {args.canvas!r}")
    spec = MosaicSpec(scales=scales, canvas_wh=(canvas_wh[0], canvas_wh[1]), seed=args.seed)
    output = args.output or mosaic_cache_dir(Settings.from_env().cache_dir, args.source, spec)
    dataset = build_mosaics(args.source, output, spec)
    annotations = [a for a in dataset.annotations["annotations"] if not a.get("iscrowd")]
    small = sum(a["area"] < 32 * 32 for a in annotations)
    print(f"{len(dataset.images)} mosaics, {len(annotations)} boxes ({small} small) in {output}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from ..models.profiles import save_profile, sidecar_path
    from ..service.loading import load_detector
    from ..tools.evaluation import CocoDataset
    from ..tools.tuning import TuneConfig, tune

    settings = settings_from_args(args)
    config = TuneConfig(
        budget_ms=args.budget_ms, holdout_ratio=args.holdout, seed=args.seed, conf=args.conf, max_dets=args.max_det
    )
    output = args.output or sidecar_path(settings.model) or Path("specks-profile.json")
    dataset = CocoDataset.load(args.dataset)
    detector = load_detector(settings)  # a profile in force lends its layout / preprocessing, not its settings
    report = tune(detector, dataset, settings.slicing, config)
    save_profile(report.profile, output)
    print(format_tune_report(report, args.budget_ms, output))
    if args.json:
        print(orjson.dumps(report.profile.to_json(), option=orjson.OPT_INDENT_2).decode())
    return 0


def format_tune_report(report: Any, budget_ms: float | None, output: Path) -> str:
    from ..tools.evaluation import format_table
    from ..tools.tuning import trial_rows

    meta = report.profile.metadata
    lines = [
        f"model {meta['model']}, {meta['dataset']}: tuned on {report.tuning_images} image(s), "
        f"{report.held_out_images} held out (seed {meta['seed']}); {len(report.trials)} settings tried",
        "ms/image: decode + every pass, measured on this machine (timings compare only within one run)",
        "",
        format_table(
            ["setting (changes from the defaults)", "AP50", "AP_small", "ms/image", ""],
            list(trial_rows(report, budget_ms)),
        ),
        "",
    ]
    defaults = report.held_out_defaults
    lines.append(
        f"held out, defaults:  AP50 {defaults.ap50:.3f}  AP_small {defaults.ap_small:.3f}  "
        f"{defaults.ms_per_image:.0f} ms/image"
    )
    if report.chosen is None:
        lines.append(f"no setting ran within {budget_ms} ms/image: the defaults are written")
    elif report.held_out_chosen is None:
        lines.append("the defaults scored best on the tuning part: the defaults are written")
    else:
        chosen = report.held_out_chosen
        lines.append(
            f"held out, best tuned: AP50 {chosen.ap50:.3f}  AP_small {chosen.ap_small:.3f}  "
            f"{chosen.ms_per_image:.0f} ms/image  ({report.chosen.label})"
        )
        if not report.kept_tuned:
            lines.append("it does not beat the defaults on the held-out images: the defaults are written")
    lines.append(f"profile written to {output}")
    return "\n".join(lines)


TRAIN_EXTRA_MESSAGE = (
    "specks train needs PyTorch, an optional extra: pip install 'specks[train]' (make dev installs it)"
)


def cmd_train(args: argparse.Namespace) -> int:
    _check_train_args(args)
    try:
        import torch  # noqa: F401  (the train extra; serving never imports it)
    except ImportError as exc:
        raise ConfigError(TRAIN_EXTRA_MESSAGE) from exc
    from ..tools.training.checkpoints import load_checkpoint
    from ..tools.training.run import TrainRequest, run_training

    if args.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: PyTorch sees no CUDA device here; train on the CPU (--device cpu)")
    if args.resume is not None:
        checkpoint = load_checkpoint(args.resume)
        request = TrainRequest.resumed(checkpoint, args.resume, _resumed_config(args, checkpoint.config))
    else:
        checkpoint = None
        output = args.output or Path("runs") / f"train-{args.dataset.resolve().name}"
        request = TrainRequest(
            dataset=args.dataset, output=output, model=args.model, val=args.val, val_split=args.val_split,
            general=args.general, mix=args.mix, config=_train_config(args),
        )  # fmt: skip
    progress = {"auto": None, "on": True, "off": False}[args.progress]
    card = run_training(request, checkpoint=checkpoint, progress=progress)
    before, after = card["scores"]["before"], card["scores"]["after"]
    print(
        f"validation AP50 {before['AP50']:.3f} -> {after['AP50']:.3f}, AP_small {before['AP_small']:.3f} -> "
        f"{after['AP_small']:.3f} ({card['training']['epochs']} epochs, {card['training']['minutes']} min, "
        f"stopped by {card['training']['stopped_by']})"
    )
    print(f"model written to {request.output / 'model.onnx'}; serve it with: specks serve --model "
          f"{request.output / 'model.onnx'}")  # fmt: skip
    return 0


def _check_train_args(args: argparse.Namespace) -> None:
    """Refuse impossible flags before anything is loaded."""
    if args.resume is None and args.dataset is None:
        raise ConfigError("specks train needs a DATASET folder (or --resume DIR to continue a run)")
    checks = [
        (args.epochs is not None and args.epochs < 1, f"--epochs must be at least 1, got {args.epochs}"),
        (args.time_budget is not None and args.time_budget <= 0,
         f"--time-budget must be positive minutes, got {args.time_budget}"),
        (not 0 < args.val_split < 1, f"--val-split must be between 0 and 1, got {args.val_split}"),
        (args.batch < 1, f"--batch must be at least 1, got {args.batch}"),
        (args.imgsz < 64 or args.imgsz % 32, f"--imgsz must be a multiple of 32 from 64, got {args.imgsz}"),
        (not 0 < args.lr < 1, f"--lr must be between 0 and 1, got {args.lr}"),
        (not 0 <= args.mosaic <= 1, f"--mosaic must be between 0 and 1, got {args.mosaic}"),
        (not 0 < args.mix_ratio < 1, f"--mix-ratio must be between 0 and 1, got {args.mix_ratio}"),
        (not 0 <= args.class_balance <= 1, f"--class-balance must be between 0 and 1, got {args.class_balance}"),
        (args.threads is not None and args.threads < 1, f"--threads must be at least 1, got {args.threads}"),
    ]  # fmt: skip
    for failed, message in checks:
        if failed:
            raise ConfigError(message)


def _train_config(args: argparse.Namespace) -> Any:
    from ..tools.training.batches import Augmentation
    from ..tools.training.trainer import TrainConfig

    return TrainConfig(
        epochs=args.epochs, time_budget_s=None if args.time_budget is None else args.time_budget * 60,
        batch_size=args.batch, learning_rate=args.lr, freeze_backbone=args.freeze_backbone, seed=args.seed,
        mix_ratio=args.mix_ratio, rare_class_threshold=args.class_balance,
        device=args.device, threads=args.threads,
        augmentation=Augmentation(crop_hw=(args.imgsz, args.imgsz), mosaic_ratio=args.mosaic),
    )  # fmt: skip


def _resumed_config(args: argparse.Namespace, saved: dict[str, Any]) -> Any:
    """The checkpoint's configuration; --epochs or --time-budget given again replace its length."""
    from ..tools.training.trainer import TrainConfig

    config = TrainConfig.from_json(saved)
    if args.epochs is not None:
        config = dataclasses.replace(config, epochs=args.epochs, time_budget_s=None)
    if args.time_budget is not None:
        config = dataclasses.replace(config, time_budget_s=args.time_budget * 60, epochs=None)
    return config


def cmd_quantize(args: argparse.Namespace) -> int:
    from ..tools.quantization import QuantizeRequest, card_paths, quantize_model

    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    request = QuantizeRequest(
        model=args.model, calibration=args.calibration, output=args.output, held_out_ratio=args.held_out,
        max_ap50_drop=args.max_ap50_drop, force=args.force, seed=args.seed,
    )  # fmt: skip
    card = quantize_model(request, Settings.from_env(), threads=args.threads)
    if args.json:
        print(orjson.dumps(card, option=orjson.OPT_INDENT_2).decode())
        return 0
    before, after = card["scores"]["float"], card["scores"]["int8"]
    output = Path(card["output"])
    print(
        f"held out ({card['images']['held_out']} images): AP50 {before['AP50']:.3f} -> {after['AP50']:.3f}, "
        f"AP_small {before['AP_small']:.3f} -> {after['AP_small']:.3f}, seconds per image "
        f"{before['seconds_per_image']:.3f} -> {after['seconds_per_image']:.3f}"
    )
    print(f"model written to {output} (card: {card_paths(output)[1]}); serve it with: specks serve --model {output}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    shown = dataclasses.asdict(settings)
    shown["security"] = settings.security.describe()  # never print the keys
    shown["resolved"] = {"workers": settings.resolved_workers(), "threads_per_worker": settings.resolved_threads()}
    print(orjson.dumps(shown, option=orjson.OPT_INDENT_2, default=str).decode())
    return 0


COMMANDS = {
    "serve": cmd_serve,
    "ray-config": cmd_ray_config,
    "predict": cmd_predict,
    "eval": cmd_eval,
    "models": cmd_models,
    "bench": cmd_bench,
    "load": cmd_load,
    "mosaic": cmd_mosaic,
    "tune": cmd_tune,
    "train": cmd_train,
    "quantize": cmd_quantize,
    "config": cmd_config,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(LogFormat.TEXT, "debug" if args.verbose else "info")
    try:
        return COMMANDS[args.command](args)
    except SpecksError as exc:
        print(f"specks: error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130

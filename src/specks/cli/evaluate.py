"""``specks eval``, ``specks tune`` and ``specks mosaic``: scoring on labelled images, and their reports.

``eval`` prints COCO metrics (one column per run; two for ``--slice compare``), ``tune`` searches the
small-object settings and writes a model profile, ``mosaic`` builds the small-object dev set they
are scored on.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ..config import Settings
from ..errors import SpecksError
from ..tools.mosaic import DEFAULT_SCALES, MosaicSpec, build_mosaics, mosaic_cache_dir
from .args import (
    CONF_HELP,
    SLICE_COMPARE,
    Subparsers,
    add_iou_args,
    add_model_args,
    add_slice_args,
    conf_value,
    detect_fields,
    settings_from_args,
)

if TYPE_CHECKING:
    from ..core.options import DetectOptions


def add_eval_parser(sub: Subparsers) -> None:
    """``specks eval``: COCO scores of the pipeline on a dataset."""
    evaluate = sub.add_parser("eval", help="score the pipeline on a COCO-format dataset: AP, AR, seconds")
    evaluate.add_argument("dataset", type=Path, help="a folder with images/ and annotations.coco.json")
    evaluate.add_argument("--conf", type=conf_value, default=0.001, help=f"{CONF_HELP} (default 0.001)")
    add_iou_args(evaluate)
    evaluate.add_argument("--max-det", type=int, default=500, help="most detections per image (default 500)")
    evaluate.add_argument("--imgsz", type=int, help="model input size (dynamic-shape models only)")
    evaluate.add_argument("--limit", type=int, help="score only the first N images")
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    add_model_args(evaluate)
    add_slice_args(evaluate, compare=True)


def cmd_eval(args: argparse.Namespace) -> int:
    """Score each configuration on the dataset and print the metrics table (or JSON)."""

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


def _eval_configs(args: argparse.Namespace) -> dict[str, DetectOptions]:
    """Column label -> DetectOptions: one run, or full image and sliced for ``--slice compare``."""
    from ..core.options import parse_detect_options

    base = detect_fields(args)
    if args.slice == SLICE_COMPARE:
        return {
            "full image": parse_detect_options({**base, "slice": False}),
            "sliced": parse_detect_options({**base, "slice": True}),
        }
    label = {"on": "sliced", "off": "full image"}.get(args.slice or "auto", "slice auto")
    return {label: parse_detect_options(base)}


def add_tune_parser(sub: Subparsers) -> None:
    """``specks tune``: fit the small-object settings and write a profile."""
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


def cmd_tune(args: argparse.Namespace) -> int:
    """Tune the settings on the dataset, write the profile and print the report."""

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
    """The table of settings tried, the held-out scores and where the profile went."""

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


def add_mosaic_parser(sub: Subparsers) -> None:
    """``specks mosaic``: a small-object dev set from a COCO folder."""
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


def cmd_mosaic(args: argparse.Namespace) -> int:
    """Write the mosaic dataset (to --output or the cache) and say how many boxes it holds."""

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

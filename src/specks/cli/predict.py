"""``specks predict`` and ``specks models``: detections in image files, and what a model file holds.

``PredictOutput`` is where predict writes: the API's JSON on stdout or in a JSON Lines file, and the
annotated pictures of ``--save-dir``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ..config import Settings
from ..errors import SpecksError
from .args import (
    Subparsers,
    add_detect_args,
    add_model_args,
    add_profile_arg,
    add_slice_args,
    detect_fields,
    settings_from_args,
)

if TYPE_CHECKING:
    from ..core.preprocess import Preprocessing


def add_predict_parser(sub: Subparsers) -> None:
    """``specks predict``: detect objects in image files."""
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
    add_model_args(predict)
    add_detect_args(predict)
    add_slice_args(predict)


def cmd_predict(args: argparse.Namespace) -> int:
    """Print (or write) the API's answer for each image; exit status 1 when any image failed."""

    from tqdm import tqdm

    from ..core.options import parse_detect_options
    from ..service.batching import predict_in_windows, shared_run_pixels
    from ..service.loading import load_detector

    settings = settings_from_args(args)
    options = detect_fields(args)
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
            output.write(path, result)
    return 1 if output.failures else 0


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
    """The file's bytes; a file that cannot be read is the command's error."""

    try:
        return path.read_bytes()
    except OSError as exc:
        raise SpecksError(f"cannot read {path}: {exc.strerror}") from exc


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

    def write(self, path: Path, result: Any) -> None:
        """One image's answer: a Prediction, or the error it failed with (counted in ``failures``)."""
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
        payload = encode_prediction(result)  # the Prediction names the model that answered
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


def add_models_parser(sub: Subparsers) -> None:
    """``specks models``: what a model file contains."""
    models = sub.add_parser("models", help="show the default model, or what a model file contains")
    models.add_argument("path", nargs="?", help="a model file or name (default: the embedded default)")
    models.add_argument("--json", action="store_true", help="print JSON")
    add_profile_arg(models)


def cmd_models(args: argparse.Namespace) -> int:
    """Describe a model: input, layout, preprocessing, classes and the profile in force."""

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

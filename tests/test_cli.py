"""The `specks` commands: eval and predict run through specks.cli.main; serve and load flags parsed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import COCO_TINY, MODELS, require
from specks.cli import build_parser, format_load_report, main, settings_from_args, slice_options
from specks.evaluation import METRIC_NAMES


@pytest.fixture()
def yolov5n(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SPECKS_CACHE_DIR", str(cache_dir))
    return str(require(MODELS / "yolov5n.onnx"))


@pytest.fixture(scope="module")
def photo() -> Path:
    return sorted((require(COCO_TINY) / "images").iterdir())[0]


# -- eval ----------------------------------------------------------------------------------------


def test_eval_json_reports_the_metrics_and_time(yolov5n: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["eval", str(require(COCO_TINY)), "--model", yolov5n, "--limit", "5", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["max_dets"] == 500
    (run,) = report["runs"].values()
    assert set(METRIC_NAMES) <= set(run)
    assert run["images"] == 5
    assert run["seconds_per_image"] > 0
    assert run["AP50"] > 0.3
    assert run["options"]["conf"] == 0.001


def test_eval_compare_prints_full_image_and_sliced_side_by_side(
    yolov5n: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["eval", str(require(COCO_TINY)), "--model", yolov5n, "--limit", "2", "--slice", "compare"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    header = next(i for i, line in enumerate(lines) if line.startswith("metric"))
    assert lines[header].split() == ["metric", "full", "image", "sliced"]
    rows = [line.split()[0] for line in lines[header + 1 :]]
    assert rows == ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR", "AR_small", "seconds"]
    assert all(len(line.split()) >= 3 for line in lines[header + 1 :])


def test_eval_of_a_folder_without_annotations_fails_with_a_message(
    yolov5n: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["eval", str(tmp_path), "--model", yolov5n])
    assert code == 2
    assert "annotations.coco.json" in capsys.readouterr().err


# -- predict -------------------------------------------------------------------------------------


def test_predict_prints_the_api_json(yolov5n: str, photo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["predict", str(photo), "--model", yolov5n, "--slice", "off"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 0
    assert set(payload) == {"detections", "image", "model", "timing_ms"}
    assert payload["detections"]
    assert {"box", "class_id", "label", "confidence"} <= set(payload["detections"][0])


def test_predict_of_a_missing_file_fails_with_a_message(
    yolov5n: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.jpg"
    code = main(["predict", str(missing), "--model", yolov5n])
    captured = capsys.readouterr()
    assert code != 0
    assert str(missing) in captured.err
    assert captured.out == ""


@pytest.mark.parametrize("command", ["bench", "load"])
def test_bench_and_load_of_a_missing_image_fail_with_a_message(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.jpg"
    code = main([command, "--image", str(missing)])  # refused before any server starts
    captured = capsys.readouterr()
    assert code != 0
    assert f"cannot read {missing}" in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize(
    ("flags", "field"),
    [(["--conf", "2.0"], "conf"), (["--tile", "10"], "tile"), (["--overlap", "0.9"], "overlap")],
)
def test_predict_rejects_out_of_range_options_naming_them(
    yolov5n: str, photo: Path, capsys: pytest.CaptureFixture[str], flags: list[str], field: str
) -> None:
    code = main(["predict", str(photo), "--model", yolov5n, *flags])
    captured = capsys.readouterr()
    assert code == 2
    assert f"'{field}'" in captured.err
    assert captured.out == ""


# -- slicing flags -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], {}),
        (["--slice", "on"], {"slice": True}),
        (["--slice", "off"], {"slice": False}),
        (["--slice", "auto"], {"slice": "auto"}),
        (["--full-image", "off"], {"full_image": False}),
        (["--tile-scale", "1.5"], {"tile_scale": 1.5}),
        (
            [
                "--tile",
                "512",
                "--overlap",
                "0.25",
                "--full-image",
                "on",
                "--merge",
                "nms",
                "--merge-metric",
                "iou",
                "--merge-threshold",
                "0.6",
            ],
            {
                "tile": 512,
                "overlap": 0.25,
                "full_image": True,
                "merge": "nms",
                "merge_metric": "iou",
                "merge_threshold": 0.6,
            },
        ),
    ],
)
def test_slice_flags_map_to_detect_options(flags: list[str], expected: dict[str, Any]) -> None:
    assert slice_options(build_parser().parse_args(["predict", "x.jpg", *flags])) == expected


def test_compare_is_an_eval_mode_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert slice_options(build_parser().parse_args(["eval", "data", "--slice", "compare"])) == {}
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["predict", "x.jpg", "--slice", "compare"])
    assert exit_info.value.code == 2
    assert "--slice" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], {}),
        (["--iou", "0.6"], {"iou": 0.6}),
        (["--multi-label", "on"], {"multi_label": True}),
        (["--multi-label", "off", "--iou", "0.3"], {"multi_label": False, "iou": 0.3}),
    ],
)
def test_iou_flags_leave_the_mode_defaults_when_absent(flags: list[str], expected: dict[str, Any]) -> None:
    from specks.cli import _iou_options

    assert _iou_options(build_parser().parse_args(["predict", "x.jpg", *flags])) == expected


# -- serve and load flags ------------------------------------------------------------------------


def test_serve_recycling_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPECKS_MAX_REQUESTS", "100")
    args = build_parser().parse_args(["serve", "--max-requests", "2000", "--max-requests-jitter", "100"])
    settings = settings_from_args(args)
    assert (settings.max_requests, settings.max_requests_jitter) == (2000, 100)
    assert settings_from_args(build_parser().parse_args(["serve"])).max_requests == 100


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], ((2000, 1500), None, "off", None)),
        (
            ["--image-size", "6000x4000", "--requests", "12", "--slice", "auto", "--workers", "2"],
            ((6000, 4000), 12, "auto", 2),
        ),
    ],
)
def test_load_flags(flags: list[str], expected: tuple[Any, ...]) -> None:
    args = build_parser().parse_args(["load", *flags])
    assert (args.image_size, args.requests, args.slice, args.workers) == expected


@pytest.mark.parametrize("size", ["6000", "6000x", "x4000", "0x10", "6000*4000", "1x-5"])
def test_load_refuses_a_bad_image_size(size: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["load", "--image-size", size])
    assert "WIDTHxHEIGHT" in capsys.readouterr().err


def test_load_report_shows_the_peak_memory() -> None:
    report = {
        "url": "http://127.0.0.1:1",
        "model": "m.onnx",
        "workers": 2,
        "slice": "auto",
        "concurrency": 12,
        "duration_s": 40.0,
        "warmup_s": 0.0,
        "window_s": [0.0, 40.0],
        "requests": 12,
        "measured_requests": 12,
        "errors": 0,
        "error_kinds": {},
        "throughput_per_s": 0.3,
        "latency_ms": {"p50": 20000.0},
        "memory": {
            "workers": {"7": {"at_warmup_mb": 150.0, "at_end_mb": 400.0, "series_mb": [[0, 150.0]]}},
            "growth_mb": 250.0,
            "peak_mb": {"7": 722.4, "8": 706.0},
            "peak_total_mb": 1428.4,
            "sampled_peak_total_mb": 1398.0,
            "peak_since": "warm-up",
        },
    }
    text = format_load_report(report)
    assert "(model m.onnx, 2 workers, slice auto)" in text
    assert "peak RSS:      1428 MiB, the workers' peaks (722, 706 MiB, VmHWM, since warm-up)" in text
    assert "1398 MiB at most at one sample" in text

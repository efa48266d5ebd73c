"""The `specks` commands: eval and predict run through specks.cli.main; serve and load flags parsed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import COCO_TINY, MODELS, require
from specks.cli import build_parser, format_load_report, main, settings_from_args, slice_options
from specks.tools.evaluation import METRIC_NAMES


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
    assert set(payload) == {"detections", "image", "model", "timing_ms", "tiles"}
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


def test_predict_of_a_folder_writes_json_lines_and_pictures_in_order(
    yolov5n: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    photos = sorted((require(COCO_TINY) / "images").iterdir())[:3]
    for source in photos:
        (folder / source.name).write_bytes(source.read_bytes())
    (folder / "broken.jpg").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("not an image file: skipped by suffix")
    out, pictures = tmp_path / "out.jsonl", tmp_path / "pictures"
    flags = ["--jsonl", str(out), "--save-dir", str(pictures), "--progress", "on"]
    code = main(["predict", str(folder), "--model", yolov5n, *flags])
    captured = capsys.readouterr()
    assert code == 1  # one image failed
    assert captured.out == ""  # the answers went to the file
    assert "broken.jpg" in captured.err and "100%" in captured.err  # the message, and the finished bar
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [Path(line["file"]).name for line in lines] == sorted([p.name for p in photos] + ["broken.jpg"])
    broken = next(line for line in lines if line["file"].endswith("broken.jpg"))
    assert broken["error"]["code"] == "invalid_image"
    from PIL import Image

    for line in lines:
        if "error" in line:
            continue
        stem = Path(line["file"]).stem
        assert json.loads((pictures / f"{stem}.json").read_text()) == line
        with Image.open(pictures / f"{stem}.jpg") as picture:
            assert picture.size == (line["image"]["width"], line["image"]["height"])
    assert not (pictures / "broken.jpg").exists()


def test_predict_names_its_model(yolov5n: str, photo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(photo), "--model", f"mine={yolov5n}", "--slice", "off"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["name"] == "mine"


def test_serve_refuses_a_configuration_over_the_memory_limit(
    yolov5n: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import specks.web.server

    monkeypatch.setattr(specks.web.server, "serve", lambda settings: pytest.fail("the server started"))
    monkeypatch.setenv("SPECKS_MAX_WORKER_MEMORY_MB", "1000")
    monkeypatch.setenv("SPECKS_ADAPTIVE_THREADS", "off")  # no wide session in the figures below
    code = main(["serve", "--model", f"a={yolov5n}", "--model", f"b={yolov5n}"])
    err = capsys.readouterr().err
    assert code == 2
    assert "more than SPECKS_MAX_WORKER_MEMORY_MB (1000)" in err
    assert "models (a 513, b 513, " in err  # 34 + 2.5 x 7.6 + 460 each


def test_serve_takes_several_models_and_one_bare_path_at_most() -> None:
    from specks.cli import settings_from_args
    from specks.config import ModelSpec
    from specks.errors import ConfigError

    args = build_parser().parse_args(["serve", "--model", "/m/x.onnx", "--model", "a=/m/a.onnx"])
    settings = settings_from_args(args)
    assert settings.model == "/m/x.onnx" and settings.models == (ModelSpec("a", "/m/a.onnx"),)
    with pytest.raises(ConfigError, match="only one --model may be a bare path"):
        settings_from_args(build_parser().parse_args(["serve", "--model", "/m/x.onnx", "--model", "/m/y.onnx"]))


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
        (["--scales", "1,1.5"], {"scales": [1.0, 1.5]}),
        (["--flip", "on", "--soft-nms", "off"], {"flip": True, "soft_nms": False}),
        (["--merge", "wbf"], {"merge": "wbf"}),
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
    from specks.cli.args import iou_options

    assert iou_options(build_parser().parse_args(["predict", "x.jpg", *flags])) == expected


# -- serve --engine ray and ray-config ----------------------------------------------------------


def test_serve_runs_gunicorn_unless_told_otherwise() -> None:
    assert build_parser().parse_args(["serve"]).engine == "gunicorn"
    assert build_parser().parse_args(["serve", "--engine", "ray"]).engine == "ray"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--workers", "2"], "--workers is for gunicorn"),
        (["--replicas", "2", "--max-replicas", "3"], "not both"),
        (["--min-replicas", "2"], "needs max_replicas"),
        (["--replica-cpus", "0"], "replica_cpus must be > 0"),
    ],
)
def test_serve_on_ray_refuses_contradictory_flags_before_starting_anything(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["serve", "--engine", "ray", *flags])
    captured = capsys.readouterr()
    assert code == 2
    assert message in captured.err


def test_ray_config_prints_a_serve_config_with_the_flags_and_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    yaml = pytest.importorskip("yaml")
    monkeypatch.setenv("SPECKS_MAX_TILES", "40")
    monkeypatch.setenv("SPECKS_API_KEYS", "very-secret-key")
    flags = ["--model", "/models/yolov5n.onnx", "--min-replicas", "2", "--max-replicas", "6", "--replica-cpus", "2"]
    code = main(["ray-config", *flags, "--port", "8000"])
    output = capsys.readouterr().out
    assert code == 0
    assert "very-secret-key" not in output
    assert output.startswith("# Ray Serve config for Specks")
    config = yaml.safe_load(output)
    (application,) = config["applications"]
    assert application["import_path"] == "specks.web.ray_serve:app"
    assert application["runtime_env"]["env_vars"] == {
        "SPECKS_MAX_TILES": "40",
        "SPECKS_MODEL": "/models/yolov5n.onnx",
        "SPECKS_THREADS": "2",
    }
    (deployment,) = application["deployments"]
    assert deployment["autoscaling_config"] == {"min_replicas": 2, "max_replicas": 6, "target_ongoing_requests": 2.0}
    assert deployment["ray_actor_options"] == {"num_cpus": 2.0}
    assert config["http_options"]["port"] == 8000 and config["http_options"]["host"] == "0.0.0.0"
    schema = pytest.importorskip("ray.serve.schema", reason="needs the ray extra")
    schema.ServeDeploySchema.model_validate(config)


def _descendants(pid: int) -> set[int]:
    from specks.tools.server_process import child_pids

    found: set[int] = set()
    todo = [pid]
    while todo:
        children = child_pids(todo.pop())
        found.update(children)
        todo.extend(children)
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[-1][0] != "Z"
    except OSError:
        return False


@pytest.mark.ray
@pytest.mark.slow
def test_serve_on_ray_serves_until_sigterm_then_shuts_ray_down(yolov5n: str, tmp_path: Path) -> None:
    """`specks serve --engine ray` starts a local Ray, serves, and on SIGTERM leaves no Ray process behind."""
    pytest.importorskip("ray.serve", reason="needs the ray extra")
    import base64
    import os
    import signal
    import subprocess
    import sys
    import time

    import requests

    from conftest import free_port, jpeg_bytes
    from specks.tools.server_process import wait_until_steadily_ready

    log_path = tmp_path / "serve.log"
    for _attempt in range(3):  # the free port may be taken by one of Ray's own processes meanwhile
        port = free_port()
        command = [sys.executable, "-m", "specks.cli", "serve", "--engine", "ray", "--port", str(port)]
        command += ["--model", yolov5n]
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
        if not _lost_its_port(process, port, log_path):
            break
    try:

        def check_alive() -> None:
            assert process.poll() is None, log_path.read_text()[-3000:]

        url = f"http://127.0.0.1:{port}"
        wait_until_steadily_ready(url, successes=1, timeout_s=120, check_alive=check_alive)
        payload = {"image": base64.b64encode(jpeg_bytes(320, 240)).decode()}
        response = requests.post(url + "/predict", json=payload, timeout=60)
        assert response.status_code == 200
        assert response.headers["X-Specks-Replica"]
        ray_processes = _descendants(process.pid)
        assert ray_processes  # the local Ray's GCS, raylet, proxy, replica...
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log_path.read_text()[-3000:]
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in ray_processes) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not [pid for pid in ray_processes if _alive(pid)], "Ray processes outlived specks serve"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    output = log_path.read_text()
    assert "through Ray Serve with 1 replica(s), 1 CPU and 1 inference thread(s) each" in output
    assert "SIGTERM received, shutting down" in output


def _lost_its_port(process: Any, port: int, log_path: Path, timeout_s: float = 120) -> bool:
    """Whether ``specks serve --engine ray`` exited because another process bound ``port`` first
    (it is then not running); False once it answers on the port or fails another way."""
    import time

    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
            return False
        except requests.RequestException:
            time.sleep(0.5)
    return process.poll() is not None and "Failed to bind to address" in log_path.read_text()


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


def test_conf_takes_a_number_or_per_class_thresholds_as_json() -> None:
    import argparse

    from specks.cli import conf_value

    assert conf_value("0.4") == 0.4
    assert conf_value(' {"person": 0.3, "*": 0.5}') == {"person": 0.3, "*": 0.5}
    for bad in ("{person: 0.3}", "[0.3]", "high"):
        with pytest.raises(argparse.ArgumentTypeError):
            conf_value(bad)

"""`specks train` on the command line: every refusal is one line on stderr and exit 2, never a traceback;
serving never imports torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MODELS, require
from factories import write_shapes_dataset
from specks.cli import main


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    write_shapes_dataset(root, images=8, seed=0)
    return root


def refusal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--time-budget", "-5"], "--time-budget must be positive"),
        (["--val-split", "1.5"], "--val-split must be between 0 and 1"),
        (["--batch", "0"], "--batch must be at least 1"),
        (["--imgsz", "100"], "--imgsz must be a multiple of 32"),
        (["--lr", "0"], "--lr must be between 0 and 1"),
        (["--mosaic", "2"], "--mosaic must be between 0 and 1"),
        (["--mix-ratio", "1"], "--mix-ratio must be between 0 and 1"),
        (["--class-balance", "-1"], "--class-balance must be between 0 and 1"),
        (["--threads", "0"], "--threads must be at least 1"),
    ],
)
def test_impossible_flags_are_refused_before_any_work(
    flags: list[str], message: str, shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert message in refusal(["train", str(shapes), "--output", str(tmp_path / "out"), *flags], capsys)
    assert not (tmp_path / "out").exists()


def test_time_budget_and_epochs_are_one_or_the_other(shapes: Path) -> None:
    with pytest.raises(SystemExit):
        main(["train", str(shapes), "--epochs", "2", "--time-budget", "5"])


def test_no_dataset_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert "needs a DATASET folder" in refusal(["train"], capsys)


def test_other_layouts_are_refused_with_the_layouts_it_trains(
    shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = str(require(MODELS / "yolov5n.onnx"))
    err = refusal(["train", str(shapes), "--model", model, "--output", str(tmp_path / "o")], capsys)
    assert "trains YOLOX-layout ONNX models" in err


def test_a_darknet_model_is_refused(shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.cfg").write_text("[net]\n")
    (tmp_path / "m.weights").write_bytes(b"\0" * 20)
    err = refusal(["train", str(shapes), "--model", str(tmp_path / "m.cfg")], capsys)
    assert "YOLOX-layout" in err and "Darknet" in err


def test_an_empty_dataset_is_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_shapes_dataset(tmp_path / "empty", images=0, seed=0)
    err = refusal(["train", str(tmp_path / "empty"), "--output", str(tmp_path / "out")], capsys)
    assert "empty" in err.lower() or "no " in err.lower()
    assert not (tmp_path / "out").exists()


def test_an_unknown_folder_layout_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "stuff").mkdir()
    assert "specks: error:" in refusal(["train", str(tmp_path / "stuff")], capsys)


def test_resume_of_a_folder_without_a_checkpoint_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "nothing to resume" in refusal(["train", "--resume", str(tmp_path)], capsys)


def test_cuda_without_a_cuda_device_is_refused(
    shapes: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "no CUDA device" in refusal(["train", str(shapes), "--device", "cuda"], capsys)


def test_without_torch_it_names_the_extra_to_install(
    shapes: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    assert "pip install 'specks[train]'" in refusal(["train", str(shapes)], capsys)


# What a server process runs: the CLI, the app factory, a prediction through the app, the worker.
SERVING_STEPS = """
import sys
from specks.cli import build_parser
from specks.config import Settings
from specks.web import create_app
from specks.web.server import SpecksWorker
build_parser().parse_args(["serve"])
app = create_app(Settings.from_env(), load_in_background=False)
client = app.test_client()
import base64, io
from PIL import Image
buffer = io.BytesIO(); Image.new("RGB", (64, 48), (90, 120, 150)).save(buffer, "JPEG")
answer = client.post("/predict", json={"image": base64.b64encode(buffer.getvalue()).decode()})
assert answer.status_code == 200, answer.get_data(as_text=True)
print("torch" in sys.modules, "specks.tools.training" in sys.modules)
import os; os._exit(0)  # ONNX Runtime's threads may abort a normal interpreter exit
"""


def test_serving_never_imports_torch() -> None:
    """PyTorch is the train extra's: a server must start and answer without it, and never pay its import."""
    pytest.importorskip("torch")  # meaningful only where torch is installed
    result = subprocess.run([sys.executable, "-c", SERVING_STEPS], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["False", "False"]

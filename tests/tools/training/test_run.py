"""A whole specks train run on generated shapes: the loss falls, the exported model finds the shapes and
serves with no special case; resume, time budget, Ctrl-C, retraining a trained model."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from factories import write_shapes_dataset  # noqa: E402
from specks.config import Settings  # noqa: E402
from specks.core.options import parse_detect_options  # noqa: E402
from specks.errors import DatasetError, TrainingError  # noqa: E402
from specks.service.loading import load_detector  # noqa: E402
from specks.tools.training import trainer as trainer_module  # noqa: E402
from specks.tools.training.batches import Augmentation  # noqa: E402
from specks.tools.training.checkpoints import load_checkpoint  # noqa: E402
from specks.tools.training.run import TrainRequest, run_training  # noqa: E402
from specks.tools.training.trainer import TrainConfig  # noqa: E402

# Small and quick: 128 px crops of 128x128 images, 8 steps of 8 per epoch, one thread.
FAST = TrainConfig(
    epochs=3, batch_size=8, learning_rate=2e-3, warmup_steps=5, min_samples_per_epoch=64, threads=1,
    augmentation=Augmentation(crop_hw=(128, 128), scale_range=(0.8, 1.25), whole_frame_ratio=0.5),
)  # fmt: skip


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    write_shapes_dataset(root / "train", images=48, seed=0)
    write_shapes_dataset(root / "val", images=12, seed=1)
    return root


@pytest.fixture(scope="module")
def trained(shapes: Path) -> tuple[Path, dict]:
    output = shapes / "run"
    card = run_training(TrainRequest(dataset=shapes / "train", val=shapes / "val", output=output, config=FAST))
    return output, card


def read_log(folder: Path) -> list[dict[str, str]]:
    with (folder / "metrics.csv").open(encoding="utf-8") as rows:
        return list(csv.DictReader(rows))


def test_the_loss_falls_and_validation_rises_from_nothing(trained) -> None:
    output, card = trained
    log = read_log(output)
    assert [int(row["epoch"]) for row in log] == [1, 2, 3]
    assert float(log[-1]["loss"]) < 0.7 * float(log[0]["loss"])
    assert card["scores"]["before"]["AP50"] == 0.0  # the COCO model knows no squares or discs
    assert card["scores"]["after"]["AP50"] >= 0.8
    assert card["training"]["best_epoch"] == max(range(1, 4), key=lambda e: float(log[e - 1]["val_ap50"]))


def test_the_exported_model_serves_with_no_other_flag_and_finds_the_shapes(trained, shapes: Path) -> None:
    output, _ = trained
    settings = dataclasses.replace(Settings.from_env(), model=str(output / "model.onnx"))
    detector = load_detector(settings, threads=1)
    assert detector.model.info.names == ("square", "disc")
    assert detector.profile is not None and detector.profile.source == output / "model.onnx.specks.json"
    annotations = json.loads((shapes / "val" / "annotations.coco.json").read_text())
    image = annotations["images"][0]
    truth = [a for a in annotations["annotations"] if a["image_id"] == image["id"]]
    found = detector.predict_bytes(
        (shapes / "val" / "images" / image["file_name"]).read_bytes(), parse_detect_options({"conf": 0.3})
    ).detections
    for gt in truth:
        x, y, w, h = gt["bbox"]
        ious = [_iou((x, y, x + w, y + h), box) for box in found.xyxy.tolist()]
        best = int(np.argmax(ious))
        assert ious[best] > 0.5 and found.class_id[best] == gt["category_id"] - 1


def _iou(a: tuple[float, ...], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union


def test_the_output_folder_holds_card_log_curve_profile_and_provenance(trained) -> None:
    output, card = trained
    for name in ("model.onnx", "model.onnx.specks.json", "MODEL_CARD.md", "model_card.json", "metrics.csv",
                 "learning_curve.png", "checkpoint.pt"):  # fmt: skip
        assert (output / name).is_file(), name
    assert not (output / "last.onnx").exists()
    metadata = {p.key: p.value for p in onnx.load(str(output / "model.onnx")).metadata_props}
    provenance = json.loads(metadata["specks_train"])
    assert provenance["base_model"].startswith("yolox-nano") and provenance["train_images"] == 48
    assert json.loads(metadata["names"]) == {"0": "square", "1": "disc"}
    text = (output / "MODEL_CARD.md").read_text()
    assert "square, disc" in text and f"{card['scores']['after']['AP50']:.3f}" in text
    assert (output / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_continues_the_run_where_it_stopped(trained, tmp_path: Path) -> None:
    output, _ = trained
    copy = tmp_path / "run"
    copy.mkdir()
    for file in output.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    checkpoint = load_checkpoint(copy)
    assert checkpoint.epoch == 3 and checkpoint.step == 24
    config = dataclasses.replace(TrainConfig.from_json(checkpoint.config), epochs=4)
    run_training(TrainRequest.resumed(checkpoint, copy, config), checkpoint=checkpoint)
    assert [int(row["epoch"]) for row in read_log(copy)] == [1, 2, 3, 4]
    assert load_checkpoint(copy).step == 32


def test_a_second_run_into_the_same_folder_is_refused(trained, shapes: Path) -> None:
    output, _ = trained
    with pytest.raises(DatasetError, match="--resume"):
        run_training(TrainRequest(dataset=shapes / "train", val=shapes / "val", output=output, config=FAST))


def test_a_model_made_by_specks_train_trains_again(trained, shapes: Path, tmp_path: Path) -> None:
    output, card = trained
    config = dataclasses.replace(FAST, epochs=1)
    again = run_training(TrainRequest(dataset=shapes / "train", val=shapes / "val", output=tmp_path / "again",
                                      model=str(output / "model.onnx"), config=config))  # fmt: skip
    assert again["classes_from_base"] == ["square", "disc"]
    assert again["scores"]["before"]["AP50"] == pytest.approx(card["scores"]["after"]["AP50"], abs=1e-6)


def test_a_time_budget_stops_cleanly_and_still_exports(shapes: Path, tmp_path: Path) -> None:
    config = dataclasses.replace(FAST, epochs=None, time_budget_s=4.0)
    card = run_training(TrainRequest(dataset=shapes / "train", val=shapes / "val", output=tmp_path, config=config))
    assert card["training"]["stopped_by"] == "time budget"
    assert card["training"]["minutes"] < 1.0
    assert (tmp_path / "model.onnx").is_file()


def test_ctrl_c_writes_a_checkpoint_and_the_best_model_so_far(shapes: Path, tmp_path: Path, monkeypatch) -> None:
    real_step = trainer_module.train_step

    def interrupted_in_epoch_two(state, *args):
        if state.step == 10:
            raise KeyboardInterrupt
        return real_step(state, *args)

    monkeypatch.setattr(trainer_module, "train_step", interrupted_in_epoch_two)
    card = run_training(TrainRequest(dataset=shapes / "train", val=shapes / "val", output=tmp_path, config=FAST))
    assert card["training"]["stopped_by"] == "interrupted"
    assert load_checkpoint(tmp_path).step == 10
    assert (tmp_path / "model.onnx").is_file()  # epoch 1's model


def test_an_interrupt_before_the_first_validation_says_no_model_was_written(
    shapes: Path, tmp_path: Path, monkeypatch
) -> None:
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module, "train_step", interrupted)
    with pytest.raises(TrainingError, match="no model was written"):
        run_training(TrainRequest(dataset=shapes / "train", val=shapes / "val", output=tmp_path, config=FAST))
    assert load_checkpoint(tmp_path).step == 0


def test_mixed_in_images_keep_the_training_classes_and_drop_the_rest(tmp_path: Path) -> None:
    from specks.tools.training.run import mixed_in_images

    write_shapes_dataset(tmp_path / "general", images=8, seed=3)
    images = mixed_in_images(tmp_path / "general", ("disc", "person"))
    assert len(images) == 8
    truth = json.loads((tmp_path / "general" / "annotations.coco.json").read_text())["annotations"]
    discs = sum(1 for annotation in truth if annotation["category_id"] == 2)
    assert all((image.class_index == 0).all() for image in images)  # every kept box is a disc
    assert sum(len(image.boxes_xyxy) for image in images) == discs < len(truth)  # the squares are gone
    assert mixed_in_images(None, ("disc",)) == ()


def test_mix_in_replaces_about_its_share_of_a_batch(shapes: Path) -> None:
    from specks.tools.training.datasets import read_dataset
    from specks.tools.training.trainer import mix_in

    own, general = read_dataset(shapes / "train").images, read_dataset(shapes / "val").images
    rng = np.random.default_rng(0)
    drawn = [image for _ in range(200) for image in mix_in(list(own[:8]), general, 0.25, rng)]
    share = sum(image in general for image in drawn) / len(drawn)
    assert 0.2 < share < 0.3
    assert mix_in(list(own[:8]), (), 0.25, rng) == list(own[:8])


def test_rare_classes_are_drawn_more_often(shapes: Path) -> None:
    """Repeat-factor sampling: an image with a class in few images is drawn more; common ones are untouched."""
    from specks.tools.training.datasets import read_dataset
    from specks.tools.training.trainer import repeat_factors, sample_order

    images = read_dataset(shapes / "train")
    rare = images.images[0]
    only_squares = tuple(
        dataclasses.replace(image, boxes_xyxy=image.boxes_xyxy[image.class_index == 0],
                            class_index=image.class_index[image.class_index == 0])
        for image in images.images[1:]
    )  # fmt: skip
    rare = dataclasses.replace(rare, boxes_xyxy=np.array([[1, 1, 20, 20]], np.float32), class_index=np.array([1]))
    skewed = dataclasses.replace(images, images=(rare, *only_squares))
    weights = repeat_factors(skewed, threshold=0.3)
    assert weights[0] == pytest.approx(np.sqrt(0.3 / (1 / 48)))  # one image of 48 holds a disc
    assert set(weights[1:].tolist()) == {1.0}
    order = sample_order(weights, 48 * 50, np.random.default_rng(0))
    assert (order == 0).mean() == pytest.approx(weights[0] / weights.sum(), rel=0.15)
    assert np.array_equal(np.sort(sample_order(np.ones(48), 48, np.random.default_rng(1))), np.arange(48))
    assert set(repeat_factors(skewed, threshold=0.0).tolist()) == {1.0}

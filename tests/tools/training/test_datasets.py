"""Reading COCO and YOLO datasets into a TrainingSet, with every kind of problem reported."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import SHARED, require
from specks.errors import DatasetError
from specks.tools.evaluation import CocoDataset
from specks.tools.training.augment import load_image_bgr
from specks.tools.training.datasets import LabelledImage, TrainingSet, dataset_splits, read_dataset

HIT_UAV_VAL = SHARED / "data" / "hit_uav_val"


def write_image(path: Path, size_wh: tuple[int, int] = (64, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size_wh, (90, 120, 150)).save(path)
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def problem_line(training_set: TrainingSet, kind: str) -> str:
    lines = [line for line in training_set.problems if kind in line]
    assert len(lines) == 1, training_set.problems
    return lines[0]


# -- COCO -------------------------------------------------------------------------------------


def coco_annotation(image_id: int, category_id: int, bbox: Any, iscrowd: int = 0) -> dict[str, Any]:
    return {"image_id": image_id, "category_id": category_id, "bbox": bbox, "iscrowd": iscrowd}


@pytest.fixture
def coco_folder(tmp_path: Path) -> Path:
    """a.jpg with one box of each problem kind, b.png a negative, c.jpg missing from disk."""
    write_image(tmp_path / "images" / "a.jpg")
    write_image(tmp_path / "images" / "b.png")
    coco = {
        "images": [
            {"id": 10, "file_name": "a.jpg", "width": 64, "height": 48},
            {"id": 11, "file_name": "b.png", "width": 64, "height": 48},
            {"id": 12, "file_name": "c.jpg", "width": 64, "height": 48},
        ],
        # Non-contiguous ids, listed out of order: class order is by id (car, bike, person).
        "categories": [{"id": 7, "name": "person"}, {"id": 3, "name": "car"}, {"id": 5, "name": "bike"}],
        "annotations": [
            coco_annotation(10, 7, [10, 10, 20, 10]),
            coco_annotation(10, 3, [50, 30, 30, 30]),  # past the right and bottom edges: clipped
            coco_annotation(10, 99, [1, 1, 5, 5]),  # unknown category
            coco_annotation(10, 3, [0, 0, 8, 8], iscrowd=1),  # an ignore region
            coco_annotation(10, 5, [100, 100, 5, 5]),  # entirely outside
            coco_annotation(10, 5, [5, 5, 0, 4]),  # zero width
            coco_annotation(10, 5, "oops"),  # malformed
            coco_annotation(999, 3, [1, 1, 5, 5]),  # no such image
            coco_annotation(12, 3, [1, 1, 5, 5]),  # its image file is missing
        ],
    }
    write_text(tmp_path / "annotations.coco.json", json.dumps(coco))
    return tmp_path


def test_coco_folder_is_read_with_classes_in_category_id_order(coco_folder: Path) -> None:
    training_set = read_dataset(coco_folder)

    assert training_set.class_names == ("car", "bike", "person")
    assert [image.path for image in training_set.images] == [coco_folder / "images" / n for n in ("a.jpg", "b.png")]
    labelled = training_set.images[0]
    assert (labelled.width, labelled.height) == (64, 48)
    np.testing.assert_array_equal(labelled.boxes_xyxy, [[10, 10, 30, 20], [50, 30, 64, 48]])
    assert labelled.boxes_xyxy.dtype == np.float32
    assert labelled.class_index.tolist() == [2, 0]
    np.testing.assert_array_equal(labelled.ignore_xyxy, [[0, 0, 8, 8]])
    negative = training_set.images[1]
    assert negative.boxes_xyxy.shape == (0, 4) and negative.class_index.shape == (0,)
    assert training_set.box_count() == 2


@pytest.mark.parametrize(
    ("kind", "expected_line"),
    [
        ("clipped", "1 boxes outside their image, clipped: images/a.jpg (1)"),
        ("entirely outside", "1 boxes entirely outside their image, dropped: images/a.jpg (1)"),
        ("unknown class", "1 boxes of an unknown class, dropped: images/a.jpg (1)"),
        ("zero or negative", "1 boxes of zero or negative size or not finite, dropped: images/a.jpg (1)"),
        ("malformed", "1 malformed annotations, dropped: images/a.jpg (1)"),
        ("not in the file", "1 annotations of an image not in the file, ignored: annotations.coco.json (1)"),
        ("missing", "1 image files missing, skipped: images/c.jpg (1)"),
    ],
)
def test_coco_problems_are_reported_one_line_per_kind(coco_folder: Path, kind: str, expected_line: str) -> None:
    assert problem_line(read_dataset(coco_folder), kind) == expected_line


def test_coco_folder_has_only_a_train_split(coco_folder: Path) -> None:
    assert dataset_splits(coco_folder) == ("train",)
    with pytest.raises(DatasetError, match="COCO folder, which has no 'val' split"):
        read_dataset(coco_folder, "val")


def test_coco_annotations_open_with_the_evaluation_coco_dataset(coco_folder: Path) -> None:
    training_set = read_dataset(coco_folder)
    coco = training_set.coco_annotations()
    dataset = CocoDataset(training_set.root, coco)

    assert [dataset.image_path(entry) for entry in dataset.images] == [image.path for image in training_set.images]
    assert coco["categories"] == [{"id": 1, "name": "car"}, {"id": 2, "name": "bike"}, {"id": 3, "name": "person"}]
    boxes = [(a["category_id"], a["bbox"], a["area"]) for a in coco["annotations"] if not a["iscrowd"]]
    assert boxes == [(3, [10.0, 10.0, 20.0, 10.0], 200.0), (1, [50.0, 30.0, 14.0, 18.0], 252.0)]
    crowd = [(a["category_id"], a["bbox"]) for a in coco["annotations"] if a["iscrowd"]]
    assert crowd == [(category, [0.0, 0.0, 8.0, 8.0]) for category in (1, 2, 3)]  # once per category
    assert len({a["id"] for a in coco["annotations"]}) == len(coco["annotations"])


def test_a_detection_of_any_class_inside_an_ignore_region_is_not_a_false_positive(tmp_path: Path) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    image = LabelledImage(
        tmp_path / "a.jpg",
        100,
        100,
        np.array([[0, 0, 20, 20], [50, 0, 70, 20]], np.float32),
        np.array([0, 1], np.int64),
        np.array([[0, 50, 40, 90]], np.float32),
    )
    training_set = TrainingSet(tmp_path, ("car", "person"), (image,))
    detections = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20], "score": 0.9},
        {"image_id": 1, "category_id": 2, "bbox": [50, 0, 20, 20], "score": 0.9},
        {"image_id": 1, "category_id": 2, "bbox": [5, 55, 20, 20], "score": 0.95},  # inside the ignore region
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO()
        ground_truth.dataset = training_set.coco_annotations()
        ground_truth.createIndex()
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(detections), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    assert evaluation.stats[1] == pytest.approx(1.0)  # AP50: the person in the ignore region costs nothing


# -- YOLO -------------------------------------------------------------------------------------


@pytest.fixture
def ultralytics_folder(tmp_path: Path) -> Path:
    write_text(
        tmp_path / "data.yaml",
        yaml.safe_dump({"path": ".", "train": "images/train", "val": "images/val", "names": {0: "person", 1: "car"}}),
    )
    write_image(tmp_path / "images" / "train" / "a.jpg", (100, 50))
    write_text(
        tmp_path / "labels" / "train" / "a.txt",
        "0 0.5 0.5 0.2 0.4\n"  # [40, 15, 60, 35]
        "1 0.95 0.5 0.2 0.2\n"  # [85, 20, 105, 30]: clipped at x = 100
        "x y z\n"  # malformed
        "5 0.5 0.5 0.1 0.1\n"  # unknown class
        "0 0.5 0.5 0 0.1\n"  # zero width
        "1 0.1 0.1 0.3 0.2 0.2 0.3\n",  # a polygon: its bounding box [10, 5, 30, 15]
    )
    write_image(tmp_path / "images" / "train" / "b.JPG", (100, 50))  # no label file: a negative
    write_image(tmp_path / "images" / "train" / "c.png", (100, 50))
    write_text(tmp_path / "labels" / "train" / "c.txt", "")  # empty: a negative
    write_text(tmp_path / "images" / "train" / "broken.jpg", "not a jpeg")
    write_image(tmp_path / "images" / "val" / "d.jpg", (40, 40))
    write_text(tmp_path / "labels" / "val" / "d.txt", "1 0.5 0.5 0.5 0.5\n")
    return tmp_path


def test_ultralytics_layout_reads_labels_next_to_images(ultralytics_folder: Path) -> None:
    training_set = read_dataset(ultralytics_folder)

    assert training_set.class_names == ("person", "car")
    assert [image.path.name for image in training_set.images] == ["a.jpg", "b.JPG", "c.png"]
    labelled = training_set.images[0]
    assert (labelled.width, labelled.height) == (100, 50)
    np.testing.assert_allclose(labelled.boxes_xyxy, [[40, 15, 60, 35], [85, 20, 100, 30], [10, 5, 30, 15]], atol=1e-4)
    assert labelled.class_index.tolist() == [0, 1, 1]
    assert [len(image.class_index) for image in training_set.images[1:]] == [0, 0]


@pytest.mark.parametrize(
    ("kind", "expected_line"),
    [
        ("clipped", "1 boxes outside their image, clipped: images/train/a.jpg (1)"),
        ("malformed", "1 malformed label lines, dropped: labels/train/a.txt (1)"),
        ("unknown class", "1 boxes of an unknown class, dropped: labels/train/a.txt (1)"),
        ("zero or negative", "1 boxes of zero or negative size or not finite, dropped: images/train/a.jpg (1)"),
        ("unreadable", "1 images unreadable or not a supported image, skipped: images/train/broken.jpg (1)"),
    ],
)
def test_yolo_problems_are_reported(ultralytics_folder: Path, kind: str, expected_line: str) -> None:
    assert problem_line(read_dataset(ultralytics_folder), kind) == expected_line


def test_ultralytics_val_split(ultralytics_folder: Path) -> None:
    assert dataset_splits(ultralytics_folder) == ("train", "val")
    val = read_dataset(ultralytics_folder, "val")
    assert [image.path.name for image in val.images] == ["d.jpg"]
    np.testing.assert_allclose(val.images[0].boxes_xyxy, [[10, 10, 30, 30]])


def test_roboflow_layout_with_parent_relative_yaml_paths(tmp_path: Path) -> None:
    write_text(
        tmp_path / "data.yaml",
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\nnc: 2\nnames: ['cat', 'dog']\n",
    )
    for split, name in (("train", "t"), ("valid", "v")):
        write_image(tmp_path / split / "images" / f"{name}.jpg", (20, 20))
        write_text(tmp_path / split / "labels" / f"{name}.txt", "1 0.5 0.5 0.5 0.5\n")

    assert dataset_splits(tmp_path) == ("train", "val")
    train, val = read_dataset(tmp_path, "train"), read_dataset(tmp_path / "data.yaml", "val")
    assert train.class_names == val.class_names == ("cat", "dog")
    assert [image.path for image in train.images] == [tmp_path / "train" / "images" / "t.jpg"]
    assert [image.path for image in val.images] == [tmp_path / "valid" / "images" / "v.jpg"]
    np.testing.assert_allclose(val.images[0].boxes_xyxy, [[5, 5, 15, 15]])
    assert val.images[0].class_index.tolist() == [1]


@pytest.mark.parametrize(
    ("images", "labels", "splits"),
    [
        ("images", "labels", ("train",)),  # flat
        ("images/train", "labels/train", ("train",)),  # Ultralytics
        ("train/images", "train/labels", ("train",)),  # Roboflow
    ],
)
def test_yolo_without_yaml_takes_classes_txt(tmp_path: Path, images: str, labels: str, splits: tuple[str]) -> None:
    write_text(tmp_path / "classes.txt", "boat\nbuoy\n")
    write_image(tmp_path / images / "x.png", (10, 10))
    write_text(tmp_path / labels / "x.txt", "1 0.5 0.5 0.2 0.2\n")

    training_set = read_dataset(tmp_path)
    assert dataset_splits(tmp_path) == splits
    assert training_set.class_names == ("boat", "buoy")
    np.testing.assert_allclose(training_set.images[0].boxes_xyxy, [[4, 4, 6, 6]], atol=1e-5)


def test_many_files_with_one_problem_are_named_then_counted(tmp_path: Path) -> None:
    write_text(tmp_path / "classes.txt", "thing\n")
    for i in range(7):
        write_text(tmp_path / "images" / f"bad{i}.jpg", "garbage")
    write_image(tmp_path / "images" / "good.jpg")
    write_text(tmp_path / "labels" / "good.txt", "0 0.5 0.5 0.5 0.5\n")

    line = problem_line(read_dataset(tmp_path), "unreadable")
    assert line.startswith("7 images unreadable or not a supported image, skipped: images/bad0.jpg (1), ")
    assert line.count("(1)") == 5 and line.endswith(" and 2 more")


# -- refusals ---------------------------------------------------------------------------------


def test_unknown_layout_says_what_was_expected(tmp_path: Path) -> None:
    write_text(tmp_path / "notes.txt", "nothing here")
    with pytest.raises(DatasetError, match="expected a COCO folder .* or a YOLO folder"):
        read_dataset(tmp_path)


def test_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        read_dataset(tmp_path / "nowhere")


def test_dataset_with_no_readable_image_is_refused(tmp_path: Path) -> None:
    write_text(tmp_path / "classes.txt", "thing\n")
    write_text(tmp_path / "images" / "bad.jpg", "garbage")
    with pytest.raises(DatasetError, match="no readable image; 1 images unreadable"):
        read_dataset(tmp_path)


def test_dataset_of_negatives_only_is_refused(tmp_path: Path) -> None:
    write_text(tmp_path / "classes.txt", "thing\n")
    write_image(tmp_path / "images" / "empty.jpg")
    with pytest.raises(DatasetError, match="no box at all"):
        read_dataset(tmp_path)


def test_yolo_images_without_class_names_are_refused(tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "x.jpg")
    with pytest.raises(DatasetError, match="data.yaml with 'names', or a classes.txt"):
        read_dataset(tmp_path)


def test_missing_split_and_unknown_split_are_refused(tmp_path: Path) -> None:
    write_text(tmp_path / "classes.txt", "thing\n")
    write_image(tmp_path / "images" / "x.jpg")
    with pytest.raises(DatasetError, match="has no 'val' split"):
        read_dataset(tmp_path, "val")
    with pytest.raises(DatasetError, match="unknown dataset split 'test'"):
        read_dataset(tmp_path, "test")


# -- split ------------------------------------------------------------------------------------


def in_memory_set(count: int) -> TrainingSet:
    boxes = np.array([[0, 0, 1, 1]], np.float32)
    images = tuple(
        LabelledImage(Path(f"/{i}.jpg"), 8, 8, boxes, np.zeros(1, np.int64), np.zeros((0, 4), np.float32))
        for i in range(count)
    )
    return TrainingSet(Path("/"), ("thing",), images, ("a note",))


def names(training_set: TrainingSet) -> list[str]:
    return [image.path.name for image in training_set.images]


def test_split_is_random_by_seed_disjoint_and_ordered() -> None:
    whole = in_memory_set(10)
    train, val = whole.split(0.2, seed=1)

    assert (len(train.images), len(val.images)) == (8, 2)
    assert sorted(names(train) + names(val)) == sorted(names(whole))
    assert names(val) == sorted(names(val), key=names(whole).index)
    assert [names(part) for part in whole.split(0.2, seed=1)] == [names(train), names(val)]
    assert len({tuple(names(whole.split(0.2, seed=seed)[1])) for seed in range(8)}) > 1
    assert train.problems == val.problems == ("a note",) and train.class_names == ("thing",)


def test_split_gives_val_at_least_one_image() -> None:
    assert len(in_memory_set(3).split(0.01, seed=0)[1].images) == 1


@pytest.mark.parametrize(("count", "ratio", "message"), [(1, 0.2, "too few"), (4, 0.9, "too few"), (5, 0.0, "between")])
def test_split_refuses_an_empty_side(count: int, ratio: float, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        in_memory_set(count).split(ratio, seed=0)


# -- a real dataset ---------------------------------------------------------------------------


def test_hit_uav_val_reads_with_its_classes_and_boxes_inside_images() -> None:
    training_set = read_dataset(require(HIT_UAV_VAL))

    assert training_set.class_names == ("person", "car", "bicycle", "other_vehicle")
    assert training_set.problems == ()
    assert training_set.box_count() > 1000
    for image in training_set.images:
        boxes = image.boxes_xyxy
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= image.width).all() and (boxes[:, 3] <= image.height).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all()
    for image in training_set.images[:3]:
        assert load_image_bgr(image).shape == (image.height, image.width, 3)

"""Labelled datasets on disk -> one in-memory ``TrainingSet`` (numpy + Pillow, no PyTorch).

Two layouts are read, and told apart automatically:

* COCO folder: ``annotations.coco.json`` + ``images/<file_name>``. Category ids need not be
  contiguous; ``iscrowd: 1`` annotations become ignore regions. It has no split: "train" is
  the whole folder.
* YOLO folder (Ultralytics and Roboflow exports): a ``data.yaml`` naming the classes and the
  ``train`` / ``val`` image folders, or, without one, ``images/`` + ``labels/`` + ``classes.txt``
  (flat, ``images/train`` ``images/val``, or ``train/images`` ``valid/images``). Each image's
  labels are in ``labels/.../<stem>.txt``: one ``class cx cy w h`` line per box, normalised 0..1.

Whatever is wrong inside the data (a broken image, a box outside its image, an unknown class, a
malformed line) is fixed or skipped and reported in ``TrainingSet.problems``; only a dataset with
nothing to learn from, or of no layout known here, raises ``DatasetError``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from specks.core.imaging import read_image_size
from specks.core.types import ImageSize
from specks.errors import DatasetError, SpecksError

__all__ = [
    "COCO_ANNOTATIONS_FILE",
    "IMAGE_SUFFIXES",
    "SPLITS",
    "LabelledImage",
    "TrainingSet",
    "dataset_splits",
    "read_dataset",
]

COCO_ANNOTATIONS_FILE = "annotations.coco.json"  # the name specks.tools.evaluation reads too
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
SPLITS = ("train", "val")
# Folder names of each split: Roboflow writes "valid".
_SPLIT_FOLDERS: dict[str, tuple[str, ...]] = {"train": ("train",), "val": ("val", "valid", "validation")}
_YAML_NAMES = ("data.yaml", "data.yml")
# Overshoot of a box past its image that is clipped without a report (float rounding of exports).
_CLIP_TOLERANCE_PX = 1.0
_NAMED_FILES = 5  # files named per problem line, then "and N more"

_BROKEN_IMAGE = "images unreadable or not a supported image, skipped"
_MISSING_IMAGE = "image files missing, skipped"
_CLIPPED = "boxes outside their image, clipped"
_OUTSIDE = "boxes entirely outside their image, dropped"
_DEGENERATE = "boxes of zero or negative size or not finite, dropped"
_UNKNOWN_CLASS = "boxes of an unknown class, dropped"
_MALFORMED_LINE = "malformed label lines, dropped"
_MALFORMED_ANNOTATION = "malformed annotations, dropped"
_ORPHAN_ANNOTATION = "annotations of an image not in the file, ignored"

_EXPECTED_LAYOUTS = (
    f"expected a COCO folder ({COCO_ANNOTATIONS_FILE} + images/) or a YOLO folder "
    "(data.yaml, or images/ + labels/ + classes.txt; with train/ and valid/ or images/train and images/val "
    "subfolders for separate splits)"
)


# -- the in-memory form -----------------------------------------------------------------------


def _empty_boxes() -> npt.NDArray[np.float32]:
    return np.zeros((0, 4), np.float32)


@dataclass(frozen=True)
class LabelledImage:
    """One image file and its boxes.

    path:        absolute path of the image file.
    width:       displayed width (after EXIF orientation), pixels; height likewise.
    boxes_xyxy:  (N, 4) float32, x1 y1 x2 y2 in image pixels, clipped to the image, positive area.
    class_index: (N,) int64, index into ``TrainingSet.class_names``.
    ignore_xyxy: (M, 4) float32, iscrowd / ignore regions (no loss inside them), image pixels.
    """

    path: Path
    width: int
    height: int
    boxes_xyxy: npt.NDArray[np.float32] = field(default_factory=_empty_boxes)
    class_index: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    ignore_xyxy: npt.NDArray[np.float32] = field(default_factory=_empty_boxes)

    def __post_init__(self) -> None:
        if self.boxes_xyxy.shape != (len(self.class_index), 4) or self.boxes_xyxy.dtype != np.float32:
            raise ValueError(f"boxes_xyxy must be (N, 4) float32, got {self.boxes_xyxy.shape} {self.boxes_xyxy.dtype}")
        if self.class_index.dtype != np.int64:
            raise ValueError(f"class_index must be int64, got {self.class_index.dtype}")
        if self.ignore_xyxy.ndim != 2 or self.ignore_xyxy.shape[1] != 4 or self.ignore_xyxy.dtype != np.float32:
            raise ValueError(f"ignore_xyxy must be (M, 4) float32, got {self.ignore_xyxy.shape}")


@dataclass(frozen=True)
class TrainingSet:
    """Labelled images read from ``root``, with notes of what was skipped or fixed on the way.

    problems: one human-readable line per kind of problem met while reading, e.g.
              ``"2 boxes outside their image, clipped: a.jpg (1), b.jpg (1)"``. Both halves of
              ``split`` keep the problems of the reading they came from.
    """

    root: Path
    class_names: tuple[str, ...]
    images: tuple[LabelledImage, ...]
    problems: tuple[str, ...] = ()

    def box_count(self) -> int:
        return sum(len(image.class_index) for image in self.images)

    def split(self, val_ratio: float, seed: int) -> tuple[TrainingSet, TrainingSet]:
        """(train, val): ``round(val_ratio * n)`` (at least 1) images drawn at random by ``seed`` go to val.

        Both keep the original image order. Raises ``DatasetError`` when either side would be empty.
        """
        if not 0.0 < val_ratio < 1.0:
            raise DatasetError(f"the validation ratio must be between 0 and 1 (exclusive), got {val_ratio}")
        count = len(self.images)
        val_count = max(1, round(val_ratio * count))
        if val_count >= count:
            raise DatasetError(
                f"{self.root} has {count} image(s): too few to hold out {val_count} for validation "
                "and still train on some; add images or give a separate validation set"
            )
        is_val = np.zeros(count, bool)
        is_val[np.random.default_rng(seed).permutation(count)[:val_count]] = True
        train = tuple(image for image, held in zip(self.images, is_val, strict=True) if not held)
        val = tuple(image for image, held in zip(self.images, is_val, strict=True) if held)
        return replace(self, images=train), replace(self, images=val)

    def coco_annotations(self) -> dict[str, Any]:
        """These images and boxes as a COCO-format dict.

        ``file_name`` is the image's absolute path, so ``CocoDataset(root, this)`` finds every
        image whatever the layout (``root / "images" / absolute`` is the absolute path). Category
        ids are ``class_index + 1``. Each ignore region is written once per category as an
        ``iscrowd: 1`` box: COCOeval matches crowd boxes within a category only, and a detection
        of any class inside an ignore region must count neither way.
        """
        categories = [{"id": i + 1, "name": name} for i, name in enumerate(self.class_names)]
        images = [
            {"id": i + 1, "file_name": str(image.path), "width": image.width, "height": image.height}
            for i, image in enumerate(self.images)
        ]
        annotations: list[dict[str, Any]] = []
        for image_id, image in enumerate(self.images, start=1):
            for box, class_index in zip(image.boxes_xyxy.tolist(), image.class_index.tolist(), strict=True):
                annotations.append(_coco_box(image_id, class_index + 1, box, iscrowd=0))
            for box in image.ignore_xyxy.tolist():
                annotations.extend(_coco_box(image_id, i + 1, box, iscrowd=1) for i in range(len(categories)))
        for annotation_id, annotation in enumerate(annotations, start=1):
            annotation["id"] = annotation_id
        return {"images": images, "annotations": annotations, "categories": categories}


def _coco_box(image_id: int, category_id: int, box_xyxy: list[float], *, iscrowd: int) -> dict[str, Any]:
    x1, y1, x2, y2 = box_xyxy
    width, height = x2 - x1, y2 - y1
    return {
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [x1, y1, width, height],
        "area": width * height,
        "iscrowd": iscrowd,
    }


# -- problems ---------------------------------------------------------------------------------


class _Problems:
    """What was skipped or fixed while reading one dataset: counts by kind, then by file."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._by_kind: dict[str, Counter[str]] = {}

    def add(self, kind: str, path: Path, count: int = 1) -> None:
        if count > 0:
            self._by_kind.setdefault(kind, Counter())[self._name(path)] += count

    def lines(self) -> tuple[str, ...]:
        return tuple(_problem_line(kind, files) for kind, files in self._by_kind.items())

    def _name(self, path: Path) -> str:
        return path.relative_to(self._root).as_posix() if path.is_relative_to(self._root) else path.name


def _problem_line(kind: str, files: Counter[str]) -> str:
    named = [f"{name} ({count})" for name, count in list(files.items())[:_NAMED_FILES]]
    more = len(files) - len(named)
    return f"{sum(files.values())} {kind}: {', '.join(named)}" + (f" and {more} more" if more else "")


# -- boxes ------------------------------------------------------------------------------------


def _fit_boxes(
    boxes_xyxy: npt.NDArray[np.float64], size: ImageSize, path: Path, problems: _Problems
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Clip (N, 4) float64 xyxy image-pixel boxes to the image -> (kept boxes (K, 4) float32, keep mask (N,)).

    Boxes not finite or of zero/negative size, and boxes with nothing left inside the image,
    are dropped; the others are clipped. Each kind is reported (clipping only past a pixel).
    """
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(boxes_xyxy).all(axis=1)
        valid &= (boxes_xyxy[:, 2] > boxes_xyxy[:, 0]) & (boxes_xyxy[:, 3] > boxes_xyxy[:, 1])
        limits = np.array([size.width, size.height, size.width, size.height], np.float64)
        clipped = np.clip(boxes_xyxy, 0.0, limits)
        inside = valid & (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
        moved = inside & (np.abs(clipped - boxes_xyxy) > _CLIP_TOLERANCE_PX).any(axis=1)
    problems.add(_DEGENERATE, path, int((~valid).sum()))
    problems.add(_OUTSIDE, path, int((valid & ~inside).sum()))
    problems.add(_CLIPPED, path, int(moved.sum()))
    return clipped[inside].astype(np.float32), inside


def _labelled_image(
    path: Path,
    size: ImageSize,
    boxes_xyxy: Sequence[Sequence[float]],
    class_index: Sequence[int],
    ignore_xyxy: Sequence[Sequence[float]],
    problems: _Problems,
) -> LabelledImage:
    """Build a ``LabelledImage`` from raw pixel boxes, clipping and dropping (and reporting) bad ones."""
    boxes, keep = _fit_boxes(np.array(boxes_xyxy, np.float64).reshape(-1, 4), size, path, problems)
    ignore, _ = _fit_boxes(np.array(ignore_xyxy, np.float64).reshape(-1, 4), size, path, problems)
    classes = np.array(class_index, np.int64).reshape(-1)[keep]
    return LabelledImage(path, size.width, size.height, boxes, classes, ignore)


# -- public entry points ----------------------------------------------------------------------


def read_dataset(path: Path, split: str = "train") -> TrainingSet:
    """Read the ``split`` ("train" or "val") of the dataset folder ``path`` (COCO or YOLO layout).

    Raises ``DatasetError`` for an unknown layout, a split the folder lacks, or a split with no
    readable image or no box at all.
    """
    if split not in SPLITS:
        raise DatasetError(f"unknown dataset split {split!r}; expected one of {', '.join(SPLITS)}")
    root = _dataset_root(path)
    if (root / COCO_ANNOTATIONS_FILE).is_file():
        training_set = _read_coco(root, split)
    else:
        training_set = _read_yolo(_yolo_layout(root), split)
    _refuse_empty(training_set, split)
    return training_set


def dataset_splits(path: Path) -> tuple[str, ...]:
    """The splits of ``SPLITS`` the folder has; a COCO folder is ``("train",)``: the whole folder."""
    root = _dataset_root(path)
    if (root / COCO_ANNOTATIONS_FILE).is_file():
        return ("train",)
    return tuple(split for split in SPLITS if split in _yolo_layout(root).sources)


def _dataset_root(path: Path) -> Path:
    """The absolute dataset folder: ``path`` itself, or the folder of a data.yaml given as ``path``."""
    resolved = Path(path).expanduser().resolve()
    if resolved.is_file() and resolved.suffix.lower() in (".yaml", ".yml"):
        return resolved.parent
    if not resolved.is_dir():
        raise DatasetError(f"dataset folder {path} does not exist or is not a folder; {_EXPECTED_LAYOUTS}")
    return resolved


def _refuse_empty(training_set: TrainingSet, split: str) -> None:
    notes = "".join(f"; {line}" for line in training_set.problems)
    if not training_set.images:
        raise DatasetError(f"the {split} images of {training_set.root} hold no readable image{notes}")
    if training_set.box_count() == 0:
        raise DatasetError(
            f"the {split} images of {training_set.root} hold no box at all (every image is a negative): "
            f"nothing to learn or score{notes}"
        )


# -- COCO folders -----------------------------------------------------------------------------


def _read_coco(root: Path, split: str) -> TrainingSet:
    if split != "train":
        raise DatasetError(
            f"{root} is a COCO folder, which has no {split!r} split: it is read whole as 'train'; "
            "give the validation set as a folder of its own, or hold out part of this one"
        )
    coco = _load_json(root / COCO_ANNOTATIONS_FILE)
    categories = sorted(coco.get("categories", []), key=lambda category: category["id"])
    class_of = {category["id"]: index for index, category in enumerate(categories)}
    problems = _Problems(root)
    grouped = _coco_annotations_by_image(coco, root, problems)
    images = []
    for entry in coco.get("images", []):
        image = _coco_image(root, entry, grouped.get(entry.get("id"), []), class_of, problems)
        if image is not None:
            images.append(image)
    names = tuple(str(category["name"]) for category in categories)
    return TrainingSet(root, names, tuple(images), problems.lines())


def _load_json(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    if not isinstance(loaded, dict) or not isinstance(loaded.get("images"), list):
        raise DatasetError(f"{path} is not a COCO annotations file: expected an object with an 'images' list")
    return loaded


def _coco_annotations_by_image(
    coco: Mapping[str, Any], root: Path, problems: _Problems
) -> dict[Any, list[dict[str, Any]]]:
    known_ids = {entry.get("id") for entry in coco["images"]}
    grouped: dict[Any, list[dict[str, Any]]] = {}
    for annotation in coco.get("annotations", []):
        if annotation.get("image_id") in known_ids:
            grouped.setdefault(annotation["image_id"], []).append(annotation)
        else:
            problems.add(_ORPHAN_ANNOTATION, root / COCO_ANNOTATIONS_FILE)
    return grouped


def _coco_image(
    root: Path,
    entry: Mapping[str, Any],
    annotations: Sequence[Mapping[str, Any]],
    class_of: Mapping[Any, int],
    problems: _Problems,
) -> LabelledImage | None:
    """One COCO ``images`` entry with its annotations -> a ``LabelledImage``; None when the file is missing."""
    path = root / "images" / str(entry.get("file_name", ""))
    if not path.is_file():
        problems.add(_MISSING_IMAGE, path)
        return None
    size = _coco_image_size(entry) or _header_size(path, problems)
    if size is None:
        return None
    boxes, classes, ignore = [], [], []
    for annotation in annotations:
        box = _coco_xyxy(annotation.get("bbox"))
        if box is None:
            problems.add(_MALFORMED_ANNOTATION, path)
        elif annotation.get("iscrowd", 0):
            ignore.append(box)
        elif annotation.get("category_id") not in class_of:
            problems.add(_UNKNOWN_CLASS, path)
        else:
            boxes.append(box)
            classes.append(class_of[annotation["category_id"]])
    return _labelled_image(path, size, boxes, classes, ignore, problems)


def _coco_image_size(entry: Mapping[str, Any]) -> ImageSize | None:
    width, height = entry.get("width"), entry.get("height")
    if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
        return ImageSize(width, height)
    return None


def _coco_xyxy(bbox: Any) -> list[float] | None:
    """COCO ``[x, y, w, h]`` -> ``[x1, y1, x2, y2]``; None when it is not four numbers."""
    if not isinstance(bbox, list) or len(bbox) != 4:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
        return None
    x, y, width, height = (float(v) for v in bbox)
    return [x, y, x + width, y + height]


def _header_size(path: Path, problems: _Problems) -> ImageSize | None:
    """The displayed size read from the image header; None (reported) for an unreadable or broken file."""
    try:
        size, _ = read_image_size(path.read_bytes())
    except (OSError, SpecksError):
        problems.add(_BROKEN_IMAGE, path)
        return None
    return size


# -- YOLO folders -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _YoloLayout:
    """A YOLO folder: class names, and per split the image folders or image-list .txt files."""

    root: Path
    class_names: tuple[str, ...]
    sources: Mapping[str, tuple[Path, ...]]


def _read_yolo(layout: _YoloLayout, split: str) -> TrainingSet:
    if split not in layout.sources:
        raise DatasetError(f"{layout.root} has no {split!r} split (it has: {', '.join(layout.sources)})")
    problems = _Problems(layout.root)
    images = []
    for path in _image_files(layout.sources[split]):
        image = _yolo_image(path, len(layout.class_names), problems)
        if image is not None:
            images.append(image)
    return TrainingSet(layout.root, layout.class_names, tuple(images), problems.lines())


def _yolo_layout(root: Path) -> _YoloLayout:
    data_yaml = _find_data_yaml(root)
    if data_yaml is not None:
        config = _load_yaml(data_yaml)
        sources = {**_folder_sources(root), **_yaml_sources(config, data_yaml.parent)}
        names = _yaml_class_names(config, data_yaml)
    else:
        sources = _folder_sources(root)
        names = _classes_txt_names(root) if sources else ()
    if not sources:
        raise DatasetError(f"no dataset found in {root}: {_EXPECTED_LAYOUTS}")
    return _YoloLayout(root, names, sources)


def _find_data_yaml(root: Path) -> Path | None:
    named = [root / name for name in _YAML_NAMES if (root / name).is_file()]
    others = sorted(p for p in root.iterdir() if p.suffix.lower() in (".yaml", ".yml") and p.is_file())
    return next((c for c in named + others if {"names", "nc"} & _load_yaml(c).keys()), None)


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    return loaded if isinstance(loaded, dict) else {}


def _yaml_class_names(config: Mapping[str, Any], data_yaml: Path) -> tuple[str, ...]:
    """``names`` as a list or a {id: name} dict (gaps get the id as name), else ``nc`` numbered names."""
    names = config.get("names")
    if isinstance(names, list):
        return tuple(str(name) for name in names)
    if isinstance(names, dict) and names and all(isinstance(key, int) and key >= 0 for key in names):
        return tuple(str(names.get(i, i)) for i in range(max(names) + 1))
    if names is None and isinstance(config.get("nc"), int):
        return tuple(str(i) for i in range(config["nc"]))
    raise DatasetError(f"{data_yaml}: 'names' must be a list of class names or a {{0: name}} mapping")


def _yaml_sources(config: Mapping[str, Any], yaml_dir: Path) -> dict[str, tuple[Path, ...]]:
    """Split -> existing image folders / list files named in the yaml (``val`` or Roboflow's ``valid``)."""
    base = _yaml_base(config, yaml_dir)
    sources = {}
    for split, keys in _SPLIT_FOLDERS.items():
        entry = next((config[key] for key in keys if config.get(key)), None)
        entries = entry if isinstance(entry, list) else [entry] if entry else []
        found = tuple(path for path in (_resolve_entry(str(e), yaml_dir, base) for e in entries) if path)
        if found:
            sources[split] = found
    return sources


def _yaml_base(config: Mapping[str, Any], yaml_dir: Path) -> Path:
    """The yaml's ``path`` (relative to the yaml's folder), or that folder when absent or missing."""
    base = config.get("path")
    if not base:
        return yaml_dir
    candidate = (yaml_dir / str(base)).resolve()
    return candidate if candidate.is_dir() else yaml_dir


def _resolve_entry(entry: str, yaml_dir: Path, base: Path) -> Path | None:
    """A yaml ``train``/``val`` entry -> the existing path it means, trying the usual readings.

    Relative to the yaml's folder, to its ``path``, and with leading ``../`` stripped (Roboflow
    writes ``../train/images`` for a folder beside the yaml).
    """
    stripped = entry
    while stripped.startswith(("../", "./")):
        stripped = stripped.split("/", 1)[1]
    candidates = [yaml_dir / entry, base / entry, yaml_dir / stripped, base / stripped]
    return next((c.resolve() for c in candidates if c.exists()), None)


def _folder_sources(root: Path) -> dict[str, tuple[Path, ...]]:
    """Split -> image folder, found by name: ``train/images``, ``images/train``, or flat ``images/``."""
    sources: dict[str, tuple[Path, ...]] = {}
    for split, names in _SPLIT_FOLDERS.items():
        candidates = [folder for name in names for folder in (root / name / "images", root / "images" / name)]
        found = next((folder for folder in candidates if folder.is_dir()), None)
        if found is not None:
            sources[split] = (found,)
    if not sources and (root / "images").is_dir():
        sources["train"] = (root / "images",)
    return sources


def _classes_txt_names(root: Path) -> tuple[str, ...]:
    for path in (root / "classes.txt", root / "labels" / "classes.txt"):
        if path.is_file():
            names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
            if names:
                return names
    raise DatasetError(f"{root} has images but no class names: add a data.yaml with 'names', or a classes.txt")


def _image_files(sources: Iterable[Path]) -> Iterator[Path]:
    """Image files of each source: a folder (searched recursively, sorted) or a .txt list of paths."""
    for source in sources:
        if source.is_dir():
            yield from sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif source.is_file():
            lines = source.read_text(encoding="utf-8").splitlines()
            yield from (source.parent / line.strip() for line in lines if line.strip())


def _label_path(image_path: Path) -> Path:
    """The Ultralytics rule: the last ``images`` folder in the path becomes ``labels``, the suffix ``.txt``."""
    parts = list(image_path.parts)
    folders = [i for i, part in enumerate(parts[:-1]) if part == "images"]
    if folders:
        parts[folders[-1]] = "labels"
    return Path(*parts).with_suffix(".txt")


def _yolo_image(path: Path, class_count: int, problems: _Problems) -> LabelledImage | None:
    size = _header_size(path, problems)
    if size is None:
        return None
    boxes, classes = _read_label_file(_label_path(path), size, class_count, problems)
    return _labelled_image(path, size, boxes, classes, [], problems)


def _read_label_file(
    path: Path, size: ImageSize, class_count: int, problems: _Problems
) -> tuple[list[list[float]], list[int]]:
    """Boxes (xyxy, image pixels, unclipped) and class indices of a YOLO label file; none when absent."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return [], []
    except (OSError, UnicodeDecodeError):
        problems.add(_MALFORMED_LINE, path)
        return [], []
    boxes, classes = [], []
    for line in filter(str.strip, lines):
        parsed = _parse_label_line(line, size)
        if parsed is None:
            problems.add(_MALFORMED_LINE, path)
        elif not 0 <= parsed[0] < class_count:
            problems.add(_UNKNOWN_CLASS, path)
        else:
            classes.append(parsed[0])
            boxes.append(parsed[1])
    return boxes, classes


def _parse_label_line(line: str, size: ImageSize) -> tuple[int, list[float]] | None:
    """``class cx cy w h`` (or ``class x1 y1 x2 y2 x3 y3 ...``, a polygon) normalised -> (class, xyxy pixels)."""
    try:
        values = [float(token) for token in line.split()]
    except ValueError:
        return None
    if len(values) < 5 or not values[0].is_integer() or (len(values) > 5 and len(values) % 2 == 0):
        return None
    scale = np.array([size.width, size.height])
    if len(values) == 5:
        centre, extent = np.array(values[1:3]) * scale, np.array(values[3:5]) * scale
        corners = np.concatenate([centre - extent / 2, centre + extent / 2])
    else:
        points = np.array(values[1:]).reshape(-1, 2) * scale
        corners = np.concatenate([points.min(axis=0), points.max(axis=0)])
    return int(values[0]), corners.tolist()

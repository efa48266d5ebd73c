"""Class names: reading them from metadata or files, and one COCO vocabulary for clients."""

from __future__ import annotations

import ast
import json
from collections.abc import Sequence
from pathlib import Path

from ..errors import ModelLoadError

COCO80_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

# Darknet / VOC spellings of COCO classes -> the official COCO names.
COCO_ALIASES: dict[str, str] = {
    "motorbike": "motorcycle",
    "aeroplane": "airplane",
    "sofa": "couch",
    "pottedplant": "potted plant",
    "diningtable": "dining table",
    "tvmonitor": "tv",
}


def canonical_names(names: list[str]) -> list[str]:
    """Report COCO classes by their official names whatever spelling the model ships."""
    return [COCO_ALIASES.get(name.strip().lower(), name.strip()) for name in names]


def literal_or_none(text: str | None) -> object:
    """A metadata value parsed as a Python literal, or None when absent or unreadable."""
    if not text:
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):  # TypeError: {[1]: 'a'}
        return None


def parse_names_metadata(text: str) -> list[str] | None:
    """Parse an ONNX ``names`` metadata value: a dict {0: 'person', ...} (Python or JSON) or a list.

    Returns None when the value is unreadable, or holds placeholder names ('0', '1', ...)
    that an exporter writes when it knew no names.
    """
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        value = literal_or_none(text)
    if isinstance(value, dict):
        try:
            items = sorted((int(k), str(v)) for k, v in value.items())
        except (TypeError, ValueError):
            return None
        if [k for k, _ in items] != list(range(len(items))):
            return None
        names = [v for _, v in items]
    elif isinstance(value, list):
        names = [str(v) for v in value]
    else:
        return None
    if not names or names == [str(i) for i in range(len(names))]:
        return None
    return names


def read_names_file(path: Path) -> list[str]:
    """One class name per line (Darknet ``.names`` / ``classes.txt``); blank lines skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"cannot read the class names file {path}: {exc}") from exc
    return [line.strip() for line in text.splitlines() if line.strip()]


def find_names_file(model_path: Path) -> Path | None:
    """A names file beside the model: ``<stem>.names``, ``coco.names``, ``classes.txt`` or ``names.txt``."""
    for candidate in (model_path.with_suffix(".names"), *(model_path.parent / n for n in _NAMES_FILES)):
        if candidate.is_file():
            return candidate
    return None


_NAMES_FILES = ("coco.names", "classes.names", "classes.txt", "names.txt")


def resolve_names(metadata_names: str | None, model_path: Path, num_classes: int) -> list[str]:
    """Metadata names, else a names file beside the model, else COCO-80 for 80 classes, else 'class_<i>'."""
    names = parse_names_metadata(metadata_names) if metadata_names else None
    if names is None:
        names_file = find_names_file(model_path)
        names = read_names_file(names_file) if names_file else None
    if names is None and num_classes == len(COCO80_NAMES):
        names = list(COCO80_NAMES)
    if names is None:
        names = []
    names = canonical_names(names)
    # A file or metadata shorter than the head: name the rest by index, never crash on lookup.
    return names[:num_classes] + [f"class_{i}" for i in range(len(names), num_classes)]


def label_of(names: Sequence[str], class_id: int) -> str:
    """A class id's name, or the id itself as text for a class the model's names do not cover."""
    return names[class_id] if 0 <= class_id < len(names) else str(class_id)

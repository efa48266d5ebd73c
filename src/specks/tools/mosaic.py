"""A small-object development set that is not one drone flight: mosaics of shrunk COCO photos.

``build_mosaics`` takes a COCO-format folder, shrinks every photo by several factors, packs the
shrunk copies row by row onto large canvases, and writes a COCO-format folder of the canvases
with every box and area scaled exactly (each copy's scale is its integer output size over its
input size, per axis). Most objects become small: a 60 px person at 1/4 is 15 px. The result is
reproducible from the seed and the source, so it is written to a cache folder and never committed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import InvalidRequestError
from .evaluation import ANNOTATIONS_FILE, CocoDataset

# Letterbox grey, so canvas gaps look like padding to the models.
CANVAS_GREY = (114, 114, 114)
DEFAULT_SCALES = (0.5, 0.33, 0.25, 0.2)
DEFAULT_CANVAS_WH = (2000, 1500)
GAP_PX = 4


@dataclass(frozen=True)
class MosaicSpec:
    """How mosaics are made: shrink factors, canvas size in pixels, shuffling seed, JPEG quality."""

    scales: tuple[float, ...] = DEFAULT_SCALES
    canvas_wh: tuple[int, int] = DEFAULT_CANVAS_WH
    seed: int = 0
    jpeg_quality: int = 92

    def __post_init__(self) -> None:
        if not self.scales or not all(0.05 <= s <= 1.0 for s in self.scales):
            raise InvalidRequestError(f"mosaic scales must each be within 0.05..1, got {self.scales}")
        if min(self.canvas_wh) < 64:
            raise InvalidRequestError(f"the mosaic canvas must be at least 64x64, got {self.canvas_wh}")


@dataclass(frozen=True)
class Placement:
    """One shrunk copy of a source image on a canvas: its size and top-left corner in canvas pixels."""

    image: dict[str, Any]
    size_wh: tuple[int, int]
    offset_xy: tuple[int, int]


def shrunk_size(width: int, height: int, scale: float) -> tuple[int, int]:
    return max(1, round(width * scale)), max(1, round(height * scale))


def pack_rows(
    items: Sequence[tuple[dict[str, Any], tuple[int, int]]], canvas_wh: tuple[int, int]
) -> list[list[Placement]]:
    """Shelf packing: left to right in rows, a new canvas when a row no longer fits; order kept.

    Items larger than the canvas are skipped (they cannot be placed without cropping boxes).
    """
    canvas_w, canvas_h = canvas_wh
    canvases: list[list[Placement]] = []
    current: list[Placement] = []
    x = y = row_h = 0
    for image, (w, h) in items:
        if w > canvas_w or h > canvas_h:
            continue
        if x + w > canvas_w:  # next row
            x, y, row_h = 0, y + row_h + GAP_PX, 0
        if y + h > canvas_h:  # next canvas
            canvases.append(current)
            current, x, y, row_h = [], 0, 0, 0
        current.append(Placement(image, (w, h), (x, y)))
        x += w + GAP_PX
        row_h = max(row_h, h)
    if current:
        canvases.append(current)
    return canvases


def plan_mosaics(dataset: CocoDataset, spec: MosaicSpec) -> list[list[Placement]]:
    """Every source image at every scale, shuffled by the seed, packed onto canvases."""
    items = [
        (image, shrunk_size(image["width"], image["height"], scale))
        for image in dataset.images
        for scale in spec.scales
    ]
    random.Random(spec.seed).shuffle(items)
    return pack_rows(items, spec.canvas_wh)


def scaled_annotation(annotation: dict[str, Any], placement: Placement, new_id: int, image_id: int) -> dict[str, Any]:
    """A source annotation in canvas pixels: bbox scaled per axis and shifted, area scaled by both."""
    source_w, source_h = placement.image["width"], placement.image["height"]
    scale_x, scale_y = placement.size_wh[0] / source_w, placement.size_wh[1] / source_h
    x, y, w, h = annotation["bbox"]
    dx, dy = placement.offset_xy
    return {
        "id": new_id,
        "image_id": image_id,
        "category_id": annotation["category_id"],
        "bbox": [x * scale_x + dx, y * scale_y + dy, w * scale_x, h * scale_y],
        "area": annotation.get("area", w * h) * scale_x * scale_y,
        "iscrowd": annotation.get("iscrowd", 0),
    }


def mosaic_cache_dir(cache_dir: Path, source: Path, spec: MosaicSpec) -> Path:
    """The default output folder: named for the source, the scales, the canvas and the seed."""
    scales = "-".join(f"{s:g}" for s in spec.scales)
    width, height = spec.canvas_wh
    return cache_dir / "mosaics" / f"{source.resolve().name}_x{scales}_{width}x{height}_seed{spec.seed}"


def build_mosaics(source: Path, output: Path, spec: MosaicSpec = MosaicSpec()) -> CocoDataset:
    """Write ``output/images/mosaic_NNNN.jpg`` and ``output/annotations.coco.json``; return the set."""
    dataset = CocoDataset.load(source)
    by_image: dict[int, list[dict[str, Any]]] = {}
    for annotation in dataset.annotations["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    (output / "images").mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for index, placements in enumerate(plan_mosaics(dataset, spec), start=1):
        file_name = f"mosaic_{index:04d}.jpg"
        canvas = Image.new("RGB", spec.canvas_wh, CANVAS_GREY)
        for placement in placements:
            with Image.open(dataset.image_path(placement.image)) as photo:
                shrunk = photo.convert("RGB").resize(placement.size_wh, Image.Resampling.LANCZOS)
            canvas.paste(shrunk, placement.offset_xy)
            for annotation in by_image.get(placement.image["id"], []):
                annotations.append(scaled_annotation(annotation, placement, len(annotations) + 1, index))
        canvas.save(output / "images" / file_name, "JPEG", quality=spec.jpeg_quality)
        images.append({"id": index, "file_name": file_name, "width": spec.canvas_wh[0], "height": spec.canvas_wh[1]})
    document = {
        "info": {"description": f"Specks mosaics of {source.name}", "scales": list(spec.scales), "seed": spec.seed},
        "images": images,
        "annotations": annotations,
        "categories": dataset.annotations["categories"],
    }
    (output / ANNOTATIONS_FILE).write_text(json.dumps(document), encoding="utf-8")
    return CocoDataset(output, document)

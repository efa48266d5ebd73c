"""Specks' sliced inference against SAHI's, on one COCO-format dataset and one YOLOv5 ONNX model, in one run.

(a) SAHI: ``sahi.predict.get_sliced_prediction`` (640 px slices, 0.2 overlap, plus the full-image pass,
    NMS/IoU 0.5 merging) with a small SAHI model wrapper around the same ONNX file on ONNX Runtime.
    Only that call is timed, on the already decoded RGB pixels.
(b) Specks end to end: ``POST /predict`` to a real ``specks serve`` process (one worker), JPEG as
    base64 in the JSON body, so HTTP, base64 and JPEG decoding are all inside the time. Slicing
    options given on this command line (--slice, --tile, ...) go into the request body.
(c) Specks with ``"slice": false`` (one full-image pass), for reference.
All three are scored with ``specks.tools.evaluation.score_coco`` at the same maxDets.

Run from the repository root, with the ``bench`` extra installed (``pip install -e '.[bench]'``):

    python benchmarks/compare_sahi.py --dataset ../shared/data/visdrone_dev10 \\
        --model ../shared/models/yolov5n_dynamic.onnx --conf 0.01 --max-det 500 --runs-per-image 1

``--specks-model default`` serves the embedded YOLOX-Nano instead, against SAHI on ``--model``.

A script, not part of the package: neither ``specks`` nor the tests import it.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import http.client
import importlib.metadata
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import orjson
from PIL import Image, ImageOps

# Importing SAHI is harmless, but reading images through it sets Pillow's Image.MAX_IMAGE_PIXELS = None
# (no decompression-bomb guard) for the whole process. That is acceptable here: this process only
# reads the benchmark's own files, and Specks is measured in its own server process, guard intact.
from sahi.models.base import DetectionModel
from sahi.predict import get_sliced_prediction
from sahi.prediction import ObjectPrediction
from sahi.slicing import get_slice_bboxes
from sahi.utils.compatibility import fix_full_shape_list, fix_shift_amount_list
from tqdm import tqdm

from specks.cli.args import add_slice_args, slice_options
from specks.config import Settings, cpu_count
from specks.core.names import parse_names_metadata
from specks.core.types import Detections
from specks.errors import SpecksError
from specks.tools.benchmark import post_predict
from specks.tools.evaluation import (
    CocoDataset,
    detections_to_coco,
    format_table,
    format_value,
    model_to_dataset_categories,
    score_coco,
)
from specks.tools.server_process import ServerProcess

FloatArray = npt.NDArray[np.float32]
TABLE_COLUMNS = ("AP50", "AP", "AP_small", "AR_small", "seconds_per_image")
COLUMN_LABELS = {"seconds_per_image": "seconds per image"}


@dataclasses.dataclass(frozen=True)
class SahiSlicing:
    """The SAHI call under test (its documented small-object setup, NMS merging as Specks' default)."""

    slice_px: int = 640
    overlap_ratio: float = 0.2
    full_image_pass: bool = True
    postprocess_type: str = "NMS"
    match_metric: str = "IOU"
    match_threshold: float = 0.5


# -- a SAHI model wrapper around a YOLOv5 ONNX file --------------------------------------------------


def letterbox_rgb(rgb: npt.NDArray[np.uint8], input_hw: tuple[int, int]) -> tuple[FloatArray, float, tuple[int, int]]:
    """(H, W, 3) uint8 RGB -> (1, 3, h, w) float32 0..1 tensor, centred on grey 114, as YOLOv5's letterbox.

    Returns the tensor, the scale (input pixels per image pixel) and the (left, top) padding in input pixels.
    """
    import cv2

    height, width = rgb.shape[:2]
    scale = min(input_hw[0] / height, input_hw[1] / width)
    new_w, new_h = round(width * scale), round(height * scale)
    resized = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR) if scale != 1 else rgb
    left, top = (input_hw[1] - new_w) // 2, (input_hw[0] - new_h) // 2
    canvas = np.full((*input_hw, 3), 114, np.uint8)
    canvas[top : top + new_h, left : left + new_w] = resized
    tensor = canvas.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    return np.ascontiguousarray(tensor), scale, (left, top)


def nms_indices(xyxy: FloatArray, scores: FloatArray, iou_threshold: float) -> list[int]:
    """Greedy NMS over (N, 4) boxes: indices kept, best score first."""
    areas = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        top_left = np.maximum(xyxy[best, :2], xyxy[rest, :2])
        bottom_right = np.minimum(xyxy[best, 2:], xyxy[rest, 2:])
        inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
        iou = inter / (areas[best] + areas[rest] - inter + 1e-9)
        order = rest[iou <= iou_threshold]
    return keep


def decode_yolov5(raw: FloatArray, conf_threshold: float, iou_threshold: float, max_det: int) -> FloatArray:
    """(anchors, 5 + classes) rows of cx, cy, w, h, objectness, class scores (input pixels)
    -> (N, 6) rows of x1, y1, x2, y2, score, class id (input pixels), best first.

    As YOLOv5's AutoShape: score = objectness x best class score, one label per box, class-wise NMS.
    """
    raw = raw[raw[:, 4] > conf_threshold]
    class_scores = raw[:, 5:] * raw[:, 4:5]
    class_id = class_scores.argmax(axis=1)
    score = class_scores[np.arange(len(raw)), class_id]
    keep = score > conf_threshold
    raw, class_id, score = raw[keep], class_id[keep], score[keep]
    centre, half = raw[:, :2], raw[:, 2:4] / 2
    xyxy = np.concatenate([centre - half, centre + half], axis=1)
    offset = class_id[:, None].astype(np.float32) * 7680  # class-wise NMS in one pass
    kept = nms_indices(xyxy + offset, score, iou_threshold)[:max_det]
    return np.concatenate([xyxy[kept], score[kept, None], class_id[kept, None].astype(np.float32)], axis=1)


class OnnxYoloV5(DetectionModel):
    """SAHI ``DetectionModel`` for a YOLOv5 ONNX export run by ONNX Runtime on the CPU.

    Each call letterboxes to ``image_size`` (a stride-multiple rectangle on dynamic-shape models, as
    YOLOv5's AutoShape does), decodes, and keeps boxes above SAHI's ``confidence_threshold``.
    """

    def __init__(
        self,
        model_path: str,
        *,
        threads: int,
        confidence_threshold: float,
        image_size: int = 640,
        iou_threshold: float = 0.45,
        max_det: int = 1000,
    ) -> None:
        self.threads = threads
        self.iou_threshold = iou_threshold
        self.max_det = max_det
        self.names: list[str] = []
        self._image_hw: tuple[int, int] = (0, 0)
        super().__init__(
            model_path=model_path, device="cpu", confidence_threshold=confidence_threshold, image_size=image_size
        )

    def load_model(self) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(self.model_path), options, providers=["CPUExecutionProvider"])
        self.set_model(session)

    def set_model(self, model: Any, **kwargs: Any) -> None:
        names = parse_names_metadata(model.get_modelmeta().custom_metadata_map.get("names", ""))
        if not names:
            raise SystemExit(f"{self.model_path}: no class names in the ONNX metadata")
        self.model = model
        self.names = names
        self.category_mapping = {str(i): name for i, name in enumerate(names)}

    @property
    def num_categories(self) -> int:
        return len(self.names)

    @property
    def category_names(self) -> list[str]:
        return self.names

    @property
    def has_mask(self) -> bool:
        return False

    def input_hw(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """The model's fixed input, or the smallest stride-32 rectangle holding the image at image_size."""
        height, width = self.model.get_inputs()[0].shape[2:]
        if isinstance(height, int) and isinstance(width, int):
            return height, width
        assert self.image_size is not None
        scale = self.image_size / max(image_hw)
        return tuple(int(np.ceil(side * scale / 32) * 32) for side in image_hw)  # type: ignore[return-value]

    def perform_inference(self, image: np.ndarray) -> None:
        self._image_hw = image.shape[:2]
        tensor, scale, (left, top) = letterbox_rgb(image, self.input_hw(self._image_hw))
        raw = self.model.run(None, {self.model.get_inputs()[0].name: tensor})[0][0]
        found = decode_yolov5(raw, self.confidence_threshold, self.iou_threshold, self.max_det)
        found[:, [0, 2]] = np.clip((found[:, [0, 2]] - left) / scale, 0, self._image_hw[1])
        found[:, [1, 3]] = np.clip((found[:, [1, 3]] - top) / scale, 0, self._image_hw[0])
        self._original_predictions = found  # (N, 6) in pixels of the image (slice) given

    def _create_object_prediction_list_from_original_predictions(
        self,
        shift_amount_list: list[list[int | float]] | None = [[0, 0]],  # noqa: B006 (SAHI's signature)
        full_shape_list: list[list[int | float]] | None = None,
    ) -> None:
        shift_amount = fix_shift_amount_list(shift_amount_list)[0]
        full_shapes = fix_full_shape_list(full_shape_list)
        full_shape = full_shapes[0] if full_shapes else None
        predictions = []
        for x1, y1, x2, y2, score, class_id in self._original_predictions.tolist():
            if x2 <= x1 or y2 <= y1:
                continue
            predictions.append(
                ObjectPrediction(
                    bbox=[x1, y1, x2, y2],
                    category_id=int(class_id),
                    category_name=self.names[int(class_id)],
                    score=score,
                    shift_amount=list(shift_amount),
                    full_shape=full_shape,
                )
            )
        self._object_prediction_list_per_image = [predictions]


# -- the three runs ------------------------------------------------------------------------------


def read_rgb(path: Path) -> npt.NDArray[np.uint8]:
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def run_sahi(
    dataset: CocoDataset, model: OnnxYoloV5, slicing: SahiSlicing, runs_per_image: int
) -> tuple[dict[int, Detections], list[float], list[int]]:
    """Detections per image id, seconds per call, slices per image (full-image pass not counted)."""

    def predict(rgb: npt.NDArray[np.uint8]) -> Detections:
        result = get_sliced_prediction(
            rgb,
            model,
            slice_height=slicing.slice_px,
            slice_width=slicing.slice_px,
            overlap_height_ratio=slicing.overlap_ratio,
            overlap_width_ratio=slicing.overlap_ratio,
            perform_standard_pred=slicing.full_image_pass,
            postprocess_type=slicing.postprocess_type,
            postprocess_match_metric=slicing.match_metric,
            postprocess_match_threshold=slicing.match_threshold,
            verbose=0,
        )
        found = result.object_prediction_list
        return Detections.from_arrays(
            [p.bbox.to_xyxy() for p in found], [p.score.value for p in found], [p.category.id for p in found]
        )

    predict(read_rgb(dataset.image_path(dataset.images[0])))  # warm-up
    detections: dict[int, Detections] = {}
    seconds: list[float] = []
    slices: list[int] = []
    for image in tqdm(dataset.images, desc="SAHI", unit="image", file=sys.stderr):
        rgb = read_rgb(dataset.image_path(image))
        for _ in range(runs_per_image):
            start = time.perf_counter()
            detections[image["id"]] = predict(rgb)
            seconds.append(time.perf_counter() - start)
        slices.append(
            len(
                get_slice_bboxes(
                    rgb.shape[0],
                    rgb.shape[1],
                    slice_height=slicing.slice_px,
                    slice_width=slicing.slice_px,
                    overlap_height_ratio=slicing.overlap_ratio,
                    overlap_width_ratio=slicing.overlap_ratio,
                )
            )
        )
    return detections, seconds, slices


def response_detections(payload: dict[str, Any]) -> Detections:
    found = payload["detections"]
    return Detections.from_arrays(
        [[d["box"]["x1"], d["box"]["y1"], d["box"]["x2"], d["box"]["y2"]] for d in found],
        [d["confidence"] for d in found],
        [d["class_id"] for d in found],
    )


def run_specks(
    port: int, dataset: CocoDataset, options: dict[str, Any], label: str, runs_per_image: int
) -> tuple[dict[int, Detections], list[float], list[float]]:
    """Detections per image id, seconds per POST /predict, tiles per image (as the server reports)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

    def body_for(image: dict[str, Any]) -> bytes:
        image_b64 = base64.b64encode(dataset.image_path(image).read_bytes()).decode("ascii")
        return orjson.dumps({"image": image_b64, **options})

    post_predict(connection, body_for(dataset.images[0]))  # warm-up
    detections: dict[int, Detections] = {}
    seconds: list[float] = []
    tiles: list[float] = []
    for image in tqdm(dataset.images, desc=label, unit="image", file=sys.stderr):
        body = body_for(image)
        for _ in range(runs_per_image):
            start = time.perf_counter()
            payload = post_predict(connection, body)
            seconds.append(time.perf_counter() - start)
        detections[image["id"]] = response_detections(payload)
        tiles.append(payload["tiles"])
    connection.close()
    return detections, seconds, tiles


def score_run(
    dataset: CocoDataset, names: Sequence[str], detections: dict[int, Detections], seconds: list[float], max_dets: int
) -> dict[str, Any]:
    category_of = model_to_dataset_categories(dataset, tuple(names))
    results = [
        result for image_id, found in detections.items() for result in detections_to_coco(image_id, found, category_of)
    ]
    return {
        **score_coco(dataset.annotations, results, max_dets=max_dets),
        "seconds_per_image": round(statistics.fmean(seconds), 4),
        "detections": len(results),
    }


def measure_sahi(dataset: CocoDataset, args: argparse.Namespace, threads: int) -> dict[str, Any]:
    slicing = SahiSlicing()
    model = OnnxYoloV5(str(args.model), threads=threads, confidence_threshold=args.conf)
    found, seconds, slices = run_sahi(dataset, model, slicing, args.runs_per_image)
    return {
        **score_run(dataset, model.names, found, seconds, args.max_det),
        "tiles_per_image": statistics.fmean(slices),
        "options": dataclasses.asdict(slicing),
    }


def measure_specks(dataset: CocoDataset, args: argparse.Namespace, threads: int) -> dict[str, dict[str, Any]]:
    """Full image and sliced (with this command line's slicing flags) through one ``specks serve``."""
    configs = {
        "full image": {"conf": args.conf, "max_det": args.max_det, "slice": False},
        "Specks": {"conf": args.conf, "max_det": args.max_det, **slice_options(args)},
    }
    served = args.model if args.specks_model is None else args.specks_model
    settings = dataclasses.replace(Settings.from_env(), model=None if served == "default" else str(served))
    server = ServerProcess(settings, workers=1, threads=threads)
    runs = {}
    try:
        server.wait_ready()
        names = model_names(server.port)
        for label, options in configs.items():
            found, seconds, tiles = run_specks(server.port, dataset, options, label, args.runs_per_image)
            runs[label] = {
                **score_run(dataset, names, found, seconds, args.max_det),
                "tiles_per_image": statistics.fmean(tiles),
                "options": options,
            }
    finally:
        server.stop()
    return runs


def model_names(port: int) -> list[str]:
    """The served model's class names, from GET /model."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/model")
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    if response.status != 200:
        raise SpecksError(f"GET /model answered {response.status}: {payload[:300]!r}")
    names: list[str] = orjson.loads(payload)["names"]
    return names


def compare(args: argparse.Namespace) -> dict[str, Any]:
    """SAHI first (in this process), then Specks through its server; metrics and ratios as data."""
    dataset = CocoDataset.load(args.dataset)
    if args.limit:
        dataset = dataset.first(args.limit)
    threads = args.threads or cpu_count()
    runs = {"SAHI": measure_sahi(dataset, args, threads), **measure_specks(dataset, args, threads)}
    sahi, specks = runs["SAHI"], runs["Specks"]
    return {
        "dataset": str(args.dataset),
        "model": str(args.model),
        "specks_model": str(args.specks_model or args.model),
        "images": len(dataset.images),
        "max_dets": args.max_det,
        "conf": args.conf,
        "threads": threads,
        "runs_per_image": args.runs_per_image,
        "sahi_version": importlib.metadata.version("sahi"),
        "runs": {label: runs[label] for label in ("full image", "SAHI", "Specks")},
        "specks_over_sahi": {
            "AP50": round(specks["AP50"] / sahi["AP50"], 3) if sahi["AP50"] > 0 else None,
            "seconds_per_image": round(specks["seconds_per_image"] / sahi["seconds_per_image"], 3),
        },
    }


# -- command line --------------------------------------------------------------------------------


def format_report(report: dict[str, Any]) -> str:
    header = ["run", *(COLUMN_LABELS.get(c, c) for c in TABLE_COLUMNS)]
    rows = [[label, *(format_value(run[c]) for c in TABLE_COLUMNS)] for label, run in report["runs"].items()]
    ratios = report["specks_over_sahi"]
    ap50_ratio = "n/a" if ratios["AP50"] is None else f"x{ratios['AP50']:.3f}"
    return "\n".join(
        [
            f"{report['dataset']}: {report['images']} image(s), SAHI {Path(report['model']).name}, "
            f"Specks {Path(report['specks_model']).name}, "
            f"conf {report['conf']}, maxDets {report['max_dets']}, {report['threads']} thread(s), "
            f"{report['runs_per_image']} run(s) per image, SAHI {report['sahi_version']}",
            format_table(header, rows),
            f"Specks / SAHI: AP50 {ap50_ratio}, time x{ratios['seconds_per_image']:.3f}",
            "(SAHI timed on decoded pixels; Specks timed end to end: HTTP, base64 and JPEG decoding included)",
        ]
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add = parser.add_argument
    add("--dataset", type=Path, required=True, help="COCO-format folder: images/ + annotations.coco.json")
    add("--model", type=Path, required=True, help="a YOLOv5 .onnx file (cx,cy,w,h,obj,classes output)")
    add(
        "--specks-model",
        help="what the Specks server serves: a model file, or 'default' for the embedded YOLOX-Nano "
        "(default: --model, so both run the same file)",
    )
    add("--conf", type=float, default=0.01, help="confidence threshold for all runs (default 0.01)")
    add("--max-det", type=int, default=500, help="most detections per image, and maxDets (default 500)")
    add("--runs-per-image", type=int, default=1, help="timed calls per image (default 1)")
    add("--threads", type=int, help="ONNX Runtime threads, for SAHI and the server alike (default: cores)")
    add("--limit", type=int, help="only the first N images")
    add("--json", action="store_true", help="print JSON")
    add_slice_args(parser)  # the same slicing flags as `specks predict`, sent to the Specks run only
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = compare(args)
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shared runs: the full-image passes of several images of one size through one ``session.run``.

Only off the CPU by default (``SPECKS_SHARED_RUNS=auto``): on a 2-core CPU a shared run measured
no faster per image, and up to 1.5 times slower for eight (docs/performance.md); a GPU's batch axis
usually pays. ``service.batching`` decides which images share a run; this module runs them, on a
Detector it only reads.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import SpecksError
from .imaging import DecodedImage, read_image_size
from .options import DetectOptions
from .pipeline import Detector, Prediction, StageTimer, to_original_frame
from .postprocess import PostprocessParams, postprocess
from .preprocess import LetterboxPlan
from .types import ImageSize


@dataclass(frozen=True)
class _BatchRow:
    """One image of a shared run: what undoing its letterbox needs, without its pixels (unless kept)."""

    index: int
    size: ImageSize
    scale_xy: tuple[float, float]
    letterbox_plan: LetterboxPlan
    params: PostprocessParams
    image: DecodedImage | None


def predict_same_size(
    detector: Detector, images: Sequence[bytes], options: DetectOptions, *, keep_image: bool = False
) -> list[Prediction | SpecksError]:
    """Full-image passes of images of one size through one ``session.run`` (the batch axis).

    The caller (``batching``) groups images whose plan is a full-image pass, all of one size,
    on a model with a dynamic batch axis, and bounds how many. Each image keeps its own error
    (decode, limits) in its place; a failed run is the error of every image in it. Each image's
    ``timing_ms`` holds its own stages plus an equal share of the run it shared; its ``total``
    is their sum. Only the batch tensor and each image's size are held until the run, not the
    decoded pixels (unless ``keep_image``).
    """
    timers = [StageTimer() for _ in images]
    results: dict[int, Prediction | SpecksError] = {}
    batch: npt.NDArray[np.float32] | None = None
    rows: list[_BatchRow] = []
    alone: list[tuple[_BatchRow, npt.NDArray[np.float32]]] = []  # an input of another shape (rounding)
    for index, data in enumerate(images):
        try:
            row, tensor = _full_image_row(detector, index, data, options, timers[index], keep_image)
        except SpecksError as exc:
            results[index] = exc
            continue
        if batch is None:
            batch = np.empty((len(images) - index, *tensor.shape[1:]), np.float32)
        if tensor.shape[1:] == batch.shape[1:]:
            batch[len(rows)] = tensor[0]
            rows.append(row)
        else:
            alone.append((row, tensor))
        del tensor
    runs = [(rows, batch[: len(rows)])] if batch is not None and rows else []
    runs += [([row], tensor) for row, tensor in alone]
    for run_rows, tensor in runs:
        results.update(_run_rows(detector, run_rows, tensor, timers))
    return [results[index] for index in range(len(images))]


def _full_image_row(
    detector: Detector, index: int, data: bytes, options: DetectOptions, timer: StageTimer, keep_image: bool
) -> tuple[_BatchRow, npt.NDArray[np.float32]]:
    """One image decoded and letterboxed -> its row and its (1, 3, H, W) float32 model input."""
    with timer.stage("decode"):
        size, _ = read_image_size(
            data, max_image_pixels=detector.limits.max_image_pixels, max_jpeg_scans=detector.limits.max_jpeg_scans
        )
    plan = detector.plan(options, size)
    if plan.slicing is not None or len(plan.passes) != 1 or plan.regions is not None:
        raise ValueError("predict_same_size runs one full-image pass per image; this plan has more")
    with timer.stage("decode"):
        image = detector.decode_for_input(data, size, None if keep_image else plan.input_hw)
    with timer.stage("preprocess"):
        tensor, letterbox_plan = detector.full_image_input(image, plan.input_hw)
    kept = image if keep_image else None
    return _BatchRow(index, image.size, image.scale_xy, letterbox_plan, plan.postprocess, kept), tensor


def _run_rows(
    detector: Detector, rows: list[_BatchRow], batch: npt.NDArray[np.float32], timers: list[StageTimer]
) -> dict[int, Prediction | SpecksError]:
    """One ``session.run`` of (len(rows), 3, H, W) float32 -> each row's Prediction in original pixels."""
    info = detector.model.info
    started = time.perf_counter()
    try:
        raw = detector.model.run(batch)
    except SpecksError as exc:
        return {row.index: exc for row in rows}
    share_ms = (time.perf_counter() - started) * 1000 / len(rows)
    answers: dict[int, Prediction | SpecksError] = {}
    for slot, row in enumerate(rows):
        timer = timers[row.index]
        timer.add("inference", share_ms)
        with timer.stage("postprocess"):
            found = postprocess(raw[slot], info.layout, row.params, row.letterbox_plan.input_hw)
            detections = to_original_frame(found, row.letterbox_plan, row.size, row.scale_xy)
        timing_ms = timer.finish(wall_clock=False)
        answers[row.index] = Prediction(detections, row.size, timing_ms, 0, image=row.image, model=info)
    return answers

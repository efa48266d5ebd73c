"""Batch requests: which images of a batch run together, and running them.

A batch (``"images": [...]``) is cut into *units*, each run under one prediction slot, in the
order of their first image. Full-image passes of images of one size share one ``session.run``
when the model's batch axis is dynamic (``core.shared_runs.predict_same_size``), up to
``MAX_BATCH_INPUT_PIXELS`` input pixels per run, a kept picture (``keep_image``) counting its
decoded pixels too; every other image (sliced, or on a model with a fixed batch of one) is a unit
of its own, whose tiles the Detector batches itself. An image refused from its header (pixel
limit, tile budget, options that do not fit the model) gets its error at once and joins no unit.
No web framework here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ..config import Limits, SharedRuns
from ..core.deadline import Deadline
from ..core.imaging import read_image_size
from ..core.options import DetectOptions
from ..core.pipeline import MAX_BATCH_INPUT_PIXELS, Detector, Prediction
from ..core.shared_runs import predict_same_size
from ..core.types import ImageSize
from ..errors import BatchTooLargeError, ClientGoneError, DeadlineExceededError, SpecksError

T = TypeVar("T")


def shared_run_pixels(mode: SharedRuns, providers: Sequence[str]) -> int:
    """The input pixels one shared run may hold for ``plan_batch``: ``MAX_BATCH_INPUT_PIXELS``, or 0
    (every image runs alone) when sharing is off, or ``auto`` and the model runs on the CPU."""
    on_cpu = not providers or providers[0] == "CPUExecutionProvider"
    shared = mode is SharedRuns.ON or (mode is SharedRuns.AUTO and not on_cpu)
    return MAX_BATCH_INPUT_PIXELS if shared else 0


def check_batch_count(count: int, limits: Limits) -> None:
    """Refuse (413) a batch of more images than ``limits.max_batch_images``."""
    if count > limits.max_batch_images:
        raise BatchTooLargeError(
            f"the batch holds {count} images; the limit is {limits.max_batch_images} images per request "
            "(SPECKS_MAX_BATCH_IMAGES). Send the images in several requests.",
            field="images",
        )


def check_batch_bytes(total_bytes: int, limits: Limits) -> None:
    """Refuse (413) a batch whose images (after base64) add up to more than ``limits.max_batch_bytes``."""
    if total_bytes > limits.max_batch_bytes:
        raise BatchTooLargeError(
            f"the batch's images add up to {total_bytes} bytes; the limit is {limits.max_batch_bytes} bytes "
            "per request, all images together (SPECKS_MAX_BATCH_BYTES). Send fewer or smaller images per request.",
            field="images",
        )


@dataclass(frozen=True)
class BatchPlan:
    """units: tuples of batch positions, each run together; refused: position -> its error."""

    units: tuple[tuple[int, ...], ...]
    refused: Mapping[int, SpecksError]


def plan_batch(
    detector: Detector,
    images: Mapping[int, bytes],
    options: DetectOptions,
    *,
    keep_image: bool = False,
    max_batch_input_pixels: int = MAX_BATCH_INPUT_PIXELS,
) -> BatchPlan:
    """Group ``images`` (batch position -> image file bytes) into units (see the module docstring).

    max_batch_input_pixels: input pixels one shared run may hold (``shared_run_pixels``); below two
    images' worth, every image runs alone.
    """
    refused: dict[int, SpecksError] = {}
    shared_by: dict[int, ImageSize | None] = {}  # position -> the size it shares runs with (None: alone)
    per_run: dict[ImageSize, int] = {}
    for index in sorted(images):
        try:
            size, _ = read_image_size(
                images[index],
                max_image_pixels=detector.limits.max_image_pixels,
                max_jpeg_scans=detector.limits.max_jpeg_scans,
            )
            plan = detector.plan(options, size)
        except SpecksError as exc:
            refused[index] = exc
            continue
        if plan.slicing is not None or plan.regions is not None or not detector.model.info.dynamic_batch:
            shared_by[index] = None
            continue
        shared_by[index] = size
        pixels_per_image = max(plan.input_hw[0] * plan.input_hw[1], size.pixels if keep_image else 0)
        per_run.setdefault(size, max(1, max_batch_input_pixels // pixels_per_image))
    members: dict[ImageSize, list[int]] = defaultdict(list)
    for index, shared in shared_by.items():
        if shared is not None:
            members[shared].append(index)
    units: list[tuple[int, ...]] = []
    for index, shared in shared_by.items():
        if shared is None:
            units.append((index,))
        elif members[shared][0] == index:  # a group's runs take the place of its first image
            group, chunk = members[shared], per_run[shared]
            units.extend(tuple(group[start : start + chunk]) for start in range(0, len(group), chunk))
    return BatchPlan(tuple(units), refused)


def run_unit(
    detector: Detector,
    images: Mapping[int, bytes],
    unit: Sequence[int],
    options: DetectOptions,
    *,
    keep_image: bool = False,
    deadline: Deadline | None = None,
) -> dict[int, Prediction | SpecksError]:
    """Predict one unit of a batch plan: batch position -> its Prediction or its error.

    deadline: the whole request's; past it (or once its client has gone) the unit raises, as that
    ends the request, not one image.
    """
    if deadline is not None:
        deadline.check("the next images of the batch")
    if len(unit) == 1:
        (index,) = unit
        try:
            return {index: detector.predict_bytes(images[index], options, keep_image=keep_image, deadline=deadline)}
        except (DeadlineExceededError, ClientGoneError):
            raise
        except SpecksError as exc:
            return {index: exc}
    answers = predict_same_size(detector, [images[index] for index in unit], options, keep_image=keep_image)
    return dict(zip(unit, answers, strict=True))


def read_each(sources: Sequence[T], read: Callable[[T], bytes]) -> list[bytes | SpecksError]:
    """Each source's image bytes, or the SpecksError that is its answer alone (a batch's other
    images still run)."""
    found: list[bytes | SpecksError] = []
    for source in sources:
        try:
            found.append(read(source))
        except SpecksError as exc:
            found.append(exc)
    return found


def predict_in_windows(
    detector: Detector,
    sources: Sequence[T],
    read: Callable[[T], bytes],
    options: DetectOptions,
    *,
    window: int,
    keep_image: bool = False,
    max_batch_input_pixels: int = MAX_BATCH_INPUT_PIXELS,
    on_done: Callable[[int], None] | None = None,
) -> Iterator[tuple[T, Prediction | SpecksError]]:
    """Predict many images (files, for ``specks predict``), ``window`` at a time, yielding them in order.

    ``read`` turns a source into image bytes (a SpecksError fails only that source). Each window
    is planned and run like a batch request, so same-size images share runs; only one window's
    bytes are held at a time. ``on_done(n)`` is told as each unit's n images finish (a progress bar).
    """
    for start in range(0, len(sources), window):
        chunk = sources[start : start + window]
        files = read_each(chunk, read)
        results: dict[int, Prediction | SpecksError] = {i: f for i, f in enumerate(files) if isinstance(f, SpecksError)}
        images = {i: f for i, f in enumerate(files) if isinstance(f, bytes)}
        del files
        plan = plan_batch(
            detector, images, options, keep_image=keep_image, max_batch_input_pixels=max_batch_input_pixels
        )
        results.update(plan.refused)
        if on_done is not None and len(results):
            on_done(len(results))
        for unit in plan.units:
            results.update(run_unit(detector, images, unit, options, keep_image=keep_image))
            if on_done is not None:
                on_done(len(unit))
        del images
        for index, source in enumerate(chunk):
            yield source, results.pop(index)

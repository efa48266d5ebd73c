"""Training batches: one augmented sample per image, stacked into tensors.

A sample is a native-resolution crop (objects the size the server sees them) or, at
``whole_frame_ratio``, the whole frame letterboxed into the crop; then a random flip, colour
jitter and, at ``mosaic_ratio``, a 2x2 mosaic of four such samples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .augment import Sample, flip_horizontal, jitter_colour, load_image_bgr, mosaic, sample_crop, sample_whole_frame
from .datasets import LabelledImage
from .loss import Targets


@dataclass(frozen=True)
class Augmentation:
    """How samples are drawn (each ratio is a probability per sample)."""

    crop_hw: tuple[int, int] = (640, 640)
    scale_range: tuple[float, float] = (0.6, 1.5)  # crop scale jitter around native pixels
    whole_frame_ratio: float = 0.2
    flip: bool = True
    colour_strength: float = 0.3
    mosaic_ratio: float = 0.0


def draw_sample(
    image: LabelledImage, augmentation: Augmentation, rng: np.random.Generator,
    load: Callable[[LabelledImage], np.ndarray] = load_image_bgr,
) -> Sample:  # fmt: skip
    """One augmented view of ``image`` at ``augmentation.crop_hw`` (no mosaic)."""
    pixels = load(image)
    if rng.random() < augmentation.whole_frame_ratio:
        sample = sample_whole_frame(pixels, image, augmentation.crop_hw, rng)
    else:
        sample = sample_crop(pixels, image, augmentation.crop_hw, rng, scale_range=augmentation.scale_range)
    if augmentation.flip and rng.random() < 0.5:
        sample = flip_horizontal(sample)
    if augmentation.colour_strength > 0:
        sample = jitter_colour(sample, rng, strength=augmentation.colour_strength)
    return sample


def draw_batch(
    images: Sequence[LabelledImage], pool: Sequence[LabelledImage], augmentation: Augmentation,
    rng: np.random.Generator,
) -> list[Sample]:  # fmt: skip
    """A sample for each of ``images``; a mosaic takes its three other tiles from ``pool``."""
    samples = []
    for image in images:
        if rng.random() < augmentation.mosaic_ratio:
            picks = [image, *(pool[int(i)] for i in rng.integers(0, len(pool), 3))]
            samples.append(mosaic([draw_sample(p, augmentation, rng) for p in picks], augmentation.crop_hw, rng))
        else:
            samples.append(draw_sample(image, augmentation, rng))
    return samples


def to_tensors(samples: Sequence[Sample], device: torch.device) -> tuple[torch.Tensor, list[Targets]]:
    """Images (B, 3, H, W) float32 BGR 0..1, channels-last, and each sample's targets (input pixels)."""
    stacked = np.stack([sample.image_bgr for sample in samples])  # (B, H, W, 3) uint8
    images = torch.from_numpy(stacked).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    images = images.contiguous(memory_format=torch.channels_last)
    targets = [
        Targets(
            gt_xyxy=torch.from_numpy(np.asarray(s.boxes_xyxy, np.float32).reshape(-1, 4)).to(device),
            gt_class=torch.from_numpy(np.asarray(s.class_index, np.int64).reshape(-1)).to(device),
            ignore_xyxy=torch.from_numpy(np.asarray(s.ignore_xyxy, np.float32).reshape(-1, 4)).to(device),
        )
        for s in samples
    ]
    return images, targets

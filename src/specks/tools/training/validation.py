"""Scoring a model file on validation images with ``specks eval``'s own code and the server's settings."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...config import Settings
from ...core.options import parse_detect_options
from ..evaluation import CocoDataset, evaluate
from .datasets import TrainingSet

# What every validation scores at: eval's scoring settings (a low floor so AP sees the whole
# precision-recall curve, 500 boxes for crowded drone photos); slicing as the server's defaults.
VALIDATION_CONF = 0.01
VALIDATION_MAX_DETS = 500
SCORE_NAMES = ("AP50", "AP", "AP_small", "seconds_per_image")


def coco_dataset(images: TrainingSet, *, known_names: tuple[str, ...] | None = None) -> CocoDataset:
    """The validation images as the CocoDataset ``specks eval`` reads.

    known_names: keep only the categories with these names (scoring a model on the classes it has,
    e.g. a general photo set scored for a model with fewer classes); None keeps them all.
    """
    dataset = CocoDataset(images.root, images.coco_annotations())
    if known_names is None:
        return dataset
    wanted = {name.lower() for name in known_names}
    return dataset.on_categories({c["id"] for c in dataset.annotations["categories"] if c["name"].lower() in wanted})


def score_model(
    model_path: Path, dataset: CocoDataset, *, threads: int | None = None, settings: Settings | None = None
) -> dict[str, float]:
    """AP50, AP, AP_small and seconds per image of the model file at the server's default settings."""
    from ...service.loading import load_detector

    base = settings or Settings.from_env()
    detector = load_detector(dataclasses.replace(base, model=str(model_path), profile=None), threads=threads)
    options = parse_detect_options({"conf": VALIDATION_CONF, "max_det": VALIDATION_MAX_DETS})
    summary = evaluate(detector, dataset, options, max_dets=VALIDATION_MAX_DETS, progress=False)
    return {name: float(summary[name]) for name in SCORE_NAMES}


def rounded(scores: Mapping[str, Any]) -> dict[str, float]:
    return {name: round(float(value), 4) for name, value in scores.items()}

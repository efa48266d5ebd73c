"""``specks train`` from start to finish: check the inputs, score the base model, train, write the outputs.

The output folder holds ``model.onnx`` (the best epoch), ``model.specks.json`` (its profile, read
by ``specks serve --model DIR/model.onnx`` with no other flag), ``MODEL_CARD.md`` and
``model_card.json``, ``metrics.csv`` (one row per epoch), ``learning_curve.png`` and
``checkpoint.pt`` (for ``--resume``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ... import __version__
from ...core.names import resolve_names
from ...errors import DatasetError, TrainingError, UnsupportedModelError
from ...models import resolve_model_files
from ...models.default import THERMAL_MODEL_NAME
from .card import write_outputs
from .checkpoints import Checkpoint
from .datasets import LabelledImage, TrainingSet, dataset_splits, read_dataset
from .graph import TRAINABLE_LAYOUT_MESSAGE, YoloxHead, find_yolox_head
from .trainer import TrainConfig, TrainResult, TrainRun, train
from .validation import coco_dataset, rounded, score_model


@dataclass(frozen=True)
class TrainRequest:
    """What the command line asked for.

    val: a folder of validation images; None takes the dataset's own val split when it has one,
    else ``val_split`` of its images (by ``config.seed``).
    general: a COCO-format folder of general photos scored before and after (what fine-tuning
    cost there), on the classes the model shares with it; None skips that.
    mix: a labelled folder of general images drawn for ``config.mix_ratio`` of the samples, on the
    training classes (its other classes become background): keeps more of the base model's general
    skill. None mixes nothing.
    """

    dataset: Path
    output: Path
    model: str | None = None
    val: Path | None = None
    val_split: float = 0.2
    general: Path | None = None
    mix: Path | None = None
    config: TrainConfig = TrainConfig()

    def to_json(self) -> dict[str, Any]:
        """The data and model part, kept in checkpoints so ``--resume`` needs only the folder."""
        return {
            "dataset": str(self.dataset), "model": self.model, "val": None if self.val is None else str(self.val),
            "val_split": self.val_split, "general": None if self.general is None else str(self.general),
            "mix": None if self.mix is None else str(self.mix),
        }  # fmt: skip

    @classmethod
    def resumed(cls, checkpoint: Checkpoint, output: Path, config: TrainConfig) -> TrainRequest:
        saved = checkpoint.request
        return cls(
            dataset=Path(saved["dataset"]), output=output, model=saved["model"],
            val=None if saved["val"] is None else Path(saved["val"]), val_split=saved["val_split"],
            general=None if saved["general"] is None else Path(saved["general"]),
            mix=None if saved.get("mix") is None else Path(saved["mix"]), config=config,
        )  # fmt: skip


@dataclass(frozen=True)
class BaseModel:
    path: Path
    label: str  # what the card calls it: "yolox-nano (embedded default)" or the file name
    graph: onnx.ModelProto
    head: YoloxHead
    names: tuple[str, ...]
    sha256: str


def load_base_model(spec: str | None) -> BaseModel:
    """The model training starts from; UnsupportedModelError for anything but a YOLOX-layout ONNX file."""
    kind, path, _ = resolve_model_files(spec)
    if kind not in ("default", THERMAL_MODEL_NAME, "onnx"):
        raise UnsupportedModelError(f"{TRAINABLE_LAYOUT_MESSAGE}; {spec!r} is a Darknet model")
    if not path.is_file():
        raise UnsupportedModelError(f"model file not found: {path}")
    data = path.read_bytes()
    try:
        graph = onnx.load_from_string(data)
    except Exception as exc:  # onnx raises DecodeError and others
        raise UnsupportedModelError(f"cannot read {path} as an ONNX model: {exc}") from exc
    head = find_yolox_head(graph.graph)
    metadata = {prop.key: prop.value for prop in graph.metadata_props}
    names = tuple(resolve_names(metadata.get("names"), path, head.class_count))
    labels = {"default": "yolox-nano (the embedded default)", THERMAL_MODEL_NAME: THERMAL_MODEL_NAME}
    label = labels.get(kind, path.name)
    return BaseModel(path, label, graph, head, names, hashlib.sha256(data).hexdigest())


def split_data(request: TrainRequest) -> tuple[TrainingSet, TrainingSet, str]:
    """(training images, validation images, how the validation set was chosen)."""
    train_set = read_dataset(request.dataset, "train")
    if request.val is not None:
        split = "val" if "val" in dataset_splits(request.val) else "train"
        return train_set, read_dataset(request.val, split), str(request.val)
    if "val" in dataset_splits(request.dataset):
        return train_set, read_dataset(request.dataset, "val"), f"{request.dataset} (its val split)"
    train_part, val_part = train_set.split(request.val_split, request.config.seed)
    return train_part, val_part, f"{request.val_split:.0%} of {request.dataset} held out (seed {request.config.seed})"


def check_classes(train_set: TrainingSet, val_set: TrainingSet) -> TrainingSet:
    """The validation set on the training set's classes, matched by name."""
    if val_set.class_names == train_set.class_names:
        return val_set
    missing = [name for name in val_set.class_names if name not in train_set.class_names]
    if missing:
        raise DatasetError(
            f"the validation images have classes the training images lack: {', '.join(missing[:10])}; "
            "label both with the same class names"
        )
    return _on_classes(val_set, train_set.class_names)


def _on_classes(images: TrainingSet, names: tuple[str, ...]) -> TrainingSet:
    """``images`` with class indices renumbered onto ``names``; boxes of classes not in ``names`` are dropped
    (in a mixed-in general set they become background: a model of cars is not taught dogs)."""
    lowered = [name.lower() for name in names]
    position = np.array([lowered.index(n.lower()) if n.lower() in lowered else -1 for n in images.class_names])
    renumbered = []
    for image in images.images:
        index = position[image.class_index].astype(np.int64)
        kept = index >= 0
        renumbered.append(dataclasses.replace(image, boxes_xyxy=image.boxes_xyxy[kept], class_index=index[kept]))
    return dataclasses.replace(images, class_names=names, images=tuple(renumbered))


def mixed_in_images(folder: Path | None, names: tuple[str, ...]) -> tuple[LabelledImage, ...]:
    """General images to mix into training, on the training classes (shared names), or none."""
    if folder is None:
        return ()
    return _on_classes(read_dataset(folder, "train"), names).images


def run_training(
    request: TrainRequest, *, checkpoint: Checkpoint | None = None, progress: bool | None = None
) -> dict[str, Any]:
    """Train as asked (or continue ``checkpoint``'s run) and write the output folder; returns the model card."""
    base = load_base_model(request.model)
    train_set, val_set, val_source = split_data(request)
    val_set = check_classes(train_set, val_set)
    if not val_set.images:
        raise DatasetError("the validation set has no images")
    _refuse_output_of_another_run(request.output, resumed=checkpoint is not None)
    request.output.mkdir(parents=True, exist_ok=True)
    for line in dict.fromkeys((*train_set.problems, *val_set.problems)):  # a split shares its problems
        print(f"note: {line}")
    val = coco_dataset(val_set)
    threads = request.config.threads
    before = _score_base(base, val_set, threads)
    run = TrainRun(
        train=train_set, val=val, base=_base_graph(base, checkpoint), base_names=base.names, output=request.output,
        metadata=_provenance(base, request, train_set, val_set, val_source), request=request.to_json(),
        mixed_in=mixed_in_images(request.mix, train_set.class_names),
    )
    result = train(run, base.head, request.config, resume=checkpoint, progress=progress)
    model_path = request.output / "model.onnx"
    if not model_path.is_file():
        raise TrainingError(
            "training stopped before its first validation: no model was written; give it more time "
            f"(the checkpoint in {request.output} continues with --resume)"
        )
    after = rounded(score_model(model_path, val, threads=threads))
    general = _general_scores(request.general, base, model_path, train_set.class_names, threads)
    card = _card(request, base, train_set, val_set, val_source, result, before, after, general)
    write_outputs(request.output, card, result)
    return card


def _base_graph(base: BaseModel, checkpoint: Checkpoint | None) -> onnx.ModelProto:
    if checkpoint is None:
        return base.graph
    return onnx.load_from_string(checkpoint.base_onnx)


def _refuse_output_of_another_run(output: Path, *, resumed: bool) -> None:
    if not resumed and (output / "checkpoint.pt").exists():
        raise DatasetError(
            f"{output} holds another run (checkpoint.pt): continue it with --resume {output}, "
            "or choose another --output"
        )


def _score_base(base: BaseModel, val_set: TrainingSet, threads: int | None) -> dict[str, float]:
    """The base model on the validation images, on the classes it shares with them (0 when none)."""
    shared = [name for name in val_set.class_names if name.lower() in {n.lower() for n in base.names}]
    if not shared:
        return dict.fromkeys(("AP50", "AP", "AP_small"), 0.0) | {"seconds_per_image": -1.0}
    return rounded(score_model(base.path, coco_dataset(val_set), threads=threads))


def _general_scores(
    folder: Path | None, base: BaseModel, model_path: Path, names: tuple[str, ...], threads: int | None
) -> dict[str, Any] | None:
    if folder is None:
        return None
    general = read_dataset(folder, "train")
    shared = tuple(name for name in names if name.lower() in {n.lower() for n in general.class_names})
    if not shared:
        return {"folder": str(folder), "classes": [], "note": "no class in common with the trained model"}
    dataset = coco_dataset(general, known_names=shared)
    return {
        "folder": str(folder),
        "classes": list(shared),
        "before": rounded(score_model(base.path, dataset, threads=threads)),
        "after": rounded(score_model(model_path, dataset, threads=threads)),
    }


def _provenance(base: BaseModel, request: TrainRequest, train_set: TrainingSet, val_set: TrainingSet,
                val_source: str) -> dict[str, str]:  # fmt: skip
    """The exported model's metadata: where it came from, so a file found later explains itself."""
    return {
        "specks_train": json.dumps({
            "base_model": base.label, "base_sha256": base.sha256, "dataset": str(request.dataset),
            "train_images": len(train_set.images), "validation": val_source, "val_images": len(val_set.images),
            "specks_version": __version__,
        }),  # fmt: skip
        "imgsz": json.dumps(list(request.config.augmentation.crop_hw)),
        "description": f"fine-tuned from {base.label} by specks train on {request.dataset.name}",
    }


def _card(
    request: TrainRequest, base: BaseModel, train_set: TrainingSet, val_set: TrainingSet, val_source: str,
    result: TrainResult, before: dict[str, float], after: dict[str, float], general: dict[str, Any] | None,
) -> dict[str, Any]:  # fmt: skip
    import torch

    config = request.config
    return {
        "model": "model.onnx",
        "base_model": {"name": base.label, "sha256": base.sha256},
        "dataset": {"path": str(request.dataset), "images": len(train_set.images), "boxes": train_set.box_count()},
        "validation": {"source": val_source, "images": len(val_set.images), "boxes": val_set.box_count()},
        "classes": list(train_set.class_names),
        "classes_from_base": [n for n in train_set.class_names if n.lower() in {b.lower() for b in base.names}],
        "training": {
            "epochs": result.epochs, "best_epoch": result.best_epoch, "steps": result.steps,
            "minutes": round(result.elapsed_s / 60, 1), "stopped_by": result.stopped_by,
            "device": config.device, "threads": config.threads or torch.get_num_threads(), "cores": os.cpu_count(),
            "batch_size": config.batch_size, "crop_hw": list(config.augmentation.crop_hw),
            "learning_rate": config.learning_rate, "freeze_backbone": config.freeze_backbone, "seed": config.seed,
            "mixed_in": None if request.mix is None else {"folder": str(request.mix), "ratio": config.mix_ratio},
        },  # fmt: skip
        "scores": {"before": before, "after": after, "conf": 0.01, "max_dets": 500},
        "general_photos": general,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "specks_version": __version__,
    }

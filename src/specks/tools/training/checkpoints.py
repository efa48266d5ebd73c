"""Checkpoints: a plain dict in one file, written every few minutes, after each epoch and on Ctrl-C.

It holds the weights, their EMA, the optimizer, counters, the RNG, the log so far, the run's
configuration and the base graph itself, so ``--resume DIR`` needs nothing but the folder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ...errors import DatasetError

if TYPE_CHECKING:
    from .trainer import TrainConfig, TrainRun, TrainState

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint as read back (tensors on the CPU)."""

    module: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng_state: dict[str, Any]
    epoch: int
    step: int
    elapsed_s: float
    best_ap50: float
    best_epoch: int
    log: tuple[EpochRecord, ...]
    config: dict[str, Any]
    class_names: tuple[str, ...]
    base_onnx: bytes
    metadata: dict[str, str]  # the exported model's provenance
    request: dict[str, Any]  # dataset, validation and base model as given on the command line


def save_checkpoint(path: Path, state: TrainState, config: TrainConfig, run: TrainRun) -> None:
    """Write atomically (a crash mid-write keeps the previous checkpoint)."""
    body = {
        "specks_checkpoint": CHECKPOINT_VERSION,
        "module": state.module.state_dict(),
        "ema": state.ema.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "rng_state": state.rng.bit_generator.state,
        "epoch": state.epoch,
        "step": state.step,
        "elapsed_s": state.elapsed_s,
        "best_ap50": state.best_ap50,
        "best_epoch": state.best_epoch,
        "log": [dataclasses.asdict(record) for record in state.log],
        "config": dataclasses.asdict(config),
        "class_names": list(run.train.class_names),
        "base_onnx": run.base.SerializeToString(),
        "metadata": dict(run.metadata),
        "request": dict(run.request),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    torch.save(body, temporary)
    temporary.replace(path)


def load_checkpoint(folder: Path) -> Checkpoint:
    """Read ``folder/checkpoint.pt``; DatasetError (a 400-class error) when it is missing or not one."""
    path = folder / CHECKPOINT_FILE if folder.is_dir() else folder
    if not path.is_file():
        raise DatasetError(f"nothing to resume: {path} does not exist (give the --output folder of a run)")
    try:
        body = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises pickle, zip and runtime errors
        raise DatasetError(f"cannot read the checkpoint {path}: {exc}") from exc
    if not isinstance(body, dict) or body.get("specks_checkpoint") != CHECKPOINT_VERSION:
        raise DatasetError(f"{path} is not a specks train checkpoint")
    return Checkpoint(
        module=body["module"], ema=body["ema"], optimizer=body["optimizer"], rng_state=body["rng_state"],
        epoch=body["epoch"], step=body["step"], elapsed_s=body["elapsed_s"], best_ap50=body["best_ap50"],
        best_epoch=body["best_epoch"], log=tuple(EpochRecord(**row) for row in body["log"]),
        config=body["config"], class_names=tuple(body["class_names"]), base_onnx=body["base_onnx"],
        metadata=body["metadata"], request=body["request"],
    )  # fmt: skip


@dataclass
class EpochRecord:
    """One row of the per-epoch log (``metrics.csv``)."""

    epoch: int
    steps: int
    images: int
    loss: float
    iou_loss: float
    obj_loss: float
    cls_loss: float
    learning_rate: float
    minutes: float
    val_ap50: float
    val_ap: float
    val_ap_small: float

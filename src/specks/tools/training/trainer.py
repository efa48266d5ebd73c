"""The training loop, read top to bottom: before training, each epoch, each step, after each epoch.

YOLOX's recipe (arXiv:2107.08430) on this module: SimOTA assignment, IoU loss, BCE on objectness
and classes, an exponential moving average (EMA) of the weights, a warm-up then a cosine learning
rate. The optimizer is AdamW at 2e-4, not YOLOX's SGD: on the release graph's folded BatchNorm
weights SGD diverged within 20 steps, AdamW trained from the first try (``TRAINING-FACTS.md``).
Each epoch ends with the EMA weights exported to ONNX and scored by ``specks eval``'s code on the
validation images; the best epoch is the model written.
"""

from __future__ import annotations

import copy
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from tqdm import tqdm

from ..evaluation import CocoDataset
from .assign import anchor_grid
from .batches import Augmentation, draw_batch, to_tensors
from .checkpoints import Checkpoint, EpochRecord, save_checkpoint
from .datasets import LabelledImage, TrainingSet
from .graph import YoloxHead, YoloxModule, class_sources, export_onnx, flat_predictions, set_classes
from .loss import yolox_loss
from .validation import score_model

STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run is configured with (saved in checkpoints and the model card).

    epochs / time_budget_s: stop after this many epochs, or when the time is up (both: whichever
    first; neither: 20 epochs). An epoch draws ``max(images, min_samples_per_epoch)`` samples.
    """

    epochs: int | None = None
    time_budget_s: float | None = None
    batch_size: int = 8
    learning_rate: float = 2e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    final_lr_ratio: float = 0.1
    grad_clip_norm: float = 10.0
    ema_decay: float = 0.9998
    min_samples_per_epoch: int = 256
    freeze_backbone: bool = False
    mix_ratio: float = 0.25  # share of samples drawn from the mixed-in general images, when there are any
    rare_class_threshold: float = 0.3  # repeat-factor sampling: classes in fewer images are drawn more
    augmentation: Augmentation = field(default_factory=Augmentation)
    checkpoint_interval_s: float = 300.0
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> TrainConfig:
        """The inverse of ``dataclasses.asdict`` (a checkpoint's copy)."""
        augmentation: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in body["augmentation"].items()
        }
        return cls(**{**body, "augmentation": Augmentation(**augmentation)})

    def max_epochs(self) -> int:
        return self.epochs if self.epochs is not None else (10_000 if self.time_budget_s else 20)


@dataclass
class TrainState:
    """What a checkpoint restores: weights, EMA, optimizer, counters, RNG and the log so far."""

    module: YoloxModule
    ema: YoloxModule  # the exponential moving average of the weights: what is validated and exported
    optimizer: torch.optim.Optimizer
    rng: np.random.Generator
    epoch: int = 0
    step: int = 0
    elapsed_s: float = 0.0
    best_ap50: float = -1.0
    best_epoch: int = 0
    validation_s: float = 0.0  # how long the last validation took: the time budget keeps it free
    log: list[EpochRecord] = field(default_factory=list)


@dataclass(frozen=True)
class TrainRun:
    """The inputs of a run: the data, the base graph and the output folder."""

    train: TrainingSet
    val: CocoDataset
    base: onnx.ModelProto
    base_names: tuple[str, ...]
    output: Path
    metadata: dict[str, str]  # the exported model's provenance
    request: dict[str, Any] = field(default_factory=dict)  # what --resume needs to rebuild the run
    mixed_in: tuple[LabelledImage, ...] = ()  # general images drawn for config.mix_ratio of the samples


@dataclass(frozen=True)
class TrainResult:
    best_epoch: int
    best_ap50: float
    epochs: int
    steps: int
    elapsed_s: float
    stopped_by: str  # "epochs", "time budget" or "interrupted"
    log: tuple[EpochRecord, ...]


# -- before training -------------------------------------------------------------------------------


def new_state(
    base: onnx.ModelProto, head: YoloxHead, base_names: Sequence[str], class_names: Sequence[str], config: TrainConfig
) -> TrainState:
    """A module for ``class_names`` (rows of classes the base model knows copied), its optimizer and EMA."""
    torch.manual_seed(config.seed)
    module = YoloxModule(base, head)
    set_classes(module, class_sources(base_names, class_names), torch.Generator().manual_seed(config.seed))
    module = module.to(torch.device(config.device)).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return TrainState(
        module=module,
        ema=ema_copy(module),
        optimizer=make_optimizer(module, config),
        rng=np.random.default_rng(config.seed),
    )


def make_optimizer(module: YoloxModule, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on convolution weights only; a frozen backbone is left out."""
    frozen = {id(p) for p in module.backbone_parameters()} if config.freeze_backbone else set()
    for parameter in module.parameters():
        parameter.requires_grad_(id(parameter) not in frozen)
    trainable = [p for p in module.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if p.dim() > 1], "weight_decay": config.weight_decay},
        {"params": [p for p in trainable if p.dim() <= 1], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.learning_rate)


def ema_copy(module: YoloxModule) -> YoloxModule:
    ema = copy.deepcopy(module)
    ema.requires_grad_(False)
    return ema


def restore(state: TrainState, checkpoint: Checkpoint) -> TrainState:
    state.module.load_state_dict(checkpoint.module)
    state.ema.load_state_dict(checkpoint.ema)
    state.optimizer.load_state_dict(checkpoint.optimizer)
    state.rng.bit_generator.state = checkpoint.rng_state
    return replace(
        state, epoch=checkpoint.epoch, step=checkpoint.step, elapsed_s=checkpoint.elapsed_s,
        best_ap50=checkpoint.best_ap50, best_epoch=checkpoint.best_epoch, log=list(checkpoint.log),
    )  # fmt: skip


# -- the loop --------------------------------------------------------------------------------------


def train(run: TrainRun, head: YoloxHead, config: TrainConfig, *, resume: Checkpoint | None = None,
          progress: bool | None = None) -> TrainResult:  # fmt: skip
    """Train, validating and keeping the best epoch's model as ``run.output / "model.onnx"``.

    progress: show a progress bar on stderr (None: when it is a terminal).
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    state = new_state(run.base, head, run.base_names, run.train.class_names, config)
    if resume is not None:
        state = restore(state, resume)
    started = time.monotonic() - state.elapsed_s
    stopped_by = "epochs"
    with _interrupt_as_exception():
        try:
            while state.epoch < config.max_epochs():
                if _time_left(config, started) <= 0:
                    stopped_by = "time budget"
                    break
                finished = run_epoch(run, state, config, started, progress)
                after_epoch(run, state, config, started)
                if not finished:
                    stopped_by = "time budget"
                    break
        except KeyboardInterrupt:
            stopped_by = "interrupted"
            state.elapsed_s = time.monotonic() - started
            save_checkpoint(run.output / "checkpoint.pt", state, config, run)
            print("\ninterrupted: checkpoint written; continue with --resume", file=sys.stderr)
    state.elapsed_s = time.monotonic() - started
    save_checkpoint(run.output / "checkpoint.pt", state, config, run)
    return TrainResult(
        best_epoch=state.best_epoch, best_ap50=state.best_ap50, epochs=state.epoch, steps=state.step,
        elapsed_s=state.elapsed_s, stopped_by=stopped_by, log=tuple(state.log),
    )  # fmt: skip


def run_epoch(
    run: TrainRun, state: TrainState, config: TrainConfig, started: float, progress: bool | None
) -> bool:
    """One epoch of steps; False when the time budget ended it early."""
    images = run.train.images
    samples = max(len(images), config.min_samples_per_epoch)
    order = sample_order(repeat_factors(run.train, config.rare_class_threshold), samples, state.rng)
    steps = math.ceil(samples / config.batch_size)
    totals = np.zeros(4)
    last_checkpoint = time.monotonic()
    disable = None if progress is None else not progress
    bar = tqdm(range(steps), desc=f"epoch {state.epoch + 1}", unit="step", file=sys.stderr, disable=disable)
    tick = time.monotonic()
    for index in bar:
        if _time_left(config, started, reserve_s=state.validation_s) <= 0:
            bar.close()
            _close_epoch(state, totals, index, config, started)
            return False
        batch = [images[int(i)] for i in order[index * config.batch_size : (index + 1) * config.batch_size]]
        batch = mix_in(batch, run.mixed_in, config.mix_ratio, state.rng)
        totals += train_step(state, config, draw_batch(batch, images, config.augmentation, state.rng), started)
        now = time.monotonic()
        bar.set_postfix_str(_progress_text(totals / (index + 1), len(batch) / max(now - tick, 1e-6),
                                           config, started))  # fmt: skip
        tick = now
        if now - last_checkpoint > config.checkpoint_interval_s:
            state.elapsed_s = now - started
            save_checkpoint(run.output / "checkpoint.pt", state, config, run)
            last_checkpoint = now
    _close_epoch(state, totals, steps, config, started)
    return True


def repeat_factors(images: TrainingSet, threshold: float) -> np.ndarray:
    """How often each image is drawn relative to the others: LVIS' repeat-factor sampling (Gupta et al., 2019).

    A class in a share f of the images gets r = max(1, sqrt(threshold / f)); an image takes the
    largest r of its classes (1 for a negative). A class in one image of 25 (HIT-UAV's other
    vehicles) is then seen about 2.7 times as often at threshold 0.3; classes above it are untouched.
    Returns (N,) float64 weights; threshold 0 gives all ones.
    """
    with_class = np.zeros(len(images.class_names))
    for image in images.images:
        with_class[np.unique(image.class_index)] += 1
    share = with_class / max(len(images.images), 1)
    per_class = np.sqrt(threshold / np.maximum(share, 1e-12)).clip(min=1.0) if threshold > 0 else np.ones_like(share)
    return np.array([per_class[image.class_index].max(initial=1.0) for image in images.images])


def sample_order(weights: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """``samples`` image indices, each image drawn in proportion to its weight.

    Each pass holds every image ``weight / mean weight`` times (rounded at random to a whole count),
    shuffled; passes follow one another until ``samples`` are drawn. Equal weights: a permutation a pass.
    """
    order: list[int] = []
    while len(order) < samples:
        copies = weights * len(weights) / weights.sum()
        whole = np.floor(copies).astype(int) + (rng.random(len(weights)) < copies % 1)
        order.extend(rng.permutation(np.repeat(np.arange(len(weights)), whole)).tolist())
    return np.array(order[:samples])


def mix_in(
    batch: list[LabelledImage], general: Sequence[LabelledImage], ratio: float, rng: np.random.Generator
) -> list[LabelledImage]:
    """``batch`` with each image replaced, at ``ratio``, by a random general one (none: unchanged)."""
    if not general:
        return batch
    return [general[int(rng.integers(len(general)))] if rng.random() < ratio else image for image in batch]


def train_step(state: TrainState, config: TrainConfig, samples: list[Any], started: float) -> np.ndarray:
    """Forward, loss, backward, clipped AdamW step and EMA update; returns (total, iou, obj, cls) losses."""
    device = torch.device(config.device)
    images, targets = to_tensors(samples, device)
    for group in state.optimizer.param_groups:
        group["lr"] = learning_rate(state.step, _progress(config, state, started), config)
    levels = state.module(images)
    reg, obj, cls = flat_predictions(levels)
    grid_xy, stride_px = anchor_grid(tuple(images.shape[2:]), STRIDES)  # type: ignore[arg-type]
    parts = yolox_loss(reg, obj, cls, targets, grid_xy.to(device), stride_px.to(device))
    state.optimizer.zero_grad(set_to_none=True)
    parts.total.backward()
    torch.nn.utils.clip_grad_norm_(state.module.parameters(), config.grad_clip_norm)
    state.optimizer.step()
    state.step += 1
    update_ema(state, config)
    return np.array([float(parts.total.detach()), float(parts.iou), float(parts.obj), float(parts.cls)])


def learning_rate(step: int, progress: float, config: TrainConfig) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine from the full rate down to ``final_lr_ratio`` of it.

    progress: the share of the run done, 0..1 (of the epochs, or of the time budget).
    """
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    floor = config.learning_rate * config.final_lr_ratio
    return floor + (config.learning_rate - floor) * 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def update_ema(state: TrainState, config: TrainConfig) -> None:
    """YOLOX's EMA: decay ramps up as 1 - exp(-step / 2000), so early weights are not frozen in."""
    decay = config.ema_decay * (1 - math.exp(-state.step / 2000))
    with torch.no_grad():
        for average, value in zip(state.ema.parameters(), state.module.parameters(), strict=True):
            average.mul_(decay).add_(value.detach(), alpha=1 - decay)


# -- after each epoch ------------------------------------------------------------------------------


def after_epoch(run: TrainRun, state: TrainState, config: TrainConfig, started: float) -> None:
    """Export the EMA weights, score them on the validation images, keep the best, log and checkpoint."""
    last = run.output / "last.onnx"
    validation_started = time.monotonic()
    write_model(run, state.ema, last)
    scores = score_model(last, run.val, threads=config.threads)
    state.validation_s = time.monotonic() - validation_started
    record = state.log[-1]
    record.val_ap50, record.val_ap, record.val_ap_small = scores["AP50"], scores["AP"], scores["AP_small"]
    record.minutes = round((time.monotonic() - started) / 60, 2)
    if scores["AP50"] > state.best_ap50:
        state.best_ap50, state.best_epoch = scores["AP50"], state.epoch
        last.replace(run.output / "model.onnx")
    else:
        last.unlink()
    append_csv(run.output / "metrics.csv", record)
    print(
        f"epoch {state.epoch}: val AP50 {scores['AP50']:.3f} AP {scores['AP']:.3f} AP_small {scores['AP_small']:.3f}"
        f" (best {state.best_ap50:.3f}, epoch {state.best_epoch})",
        file=sys.stderr,
    )
    state.elapsed_s = time.monotonic() - started
    save_checkpoint(run.output / "checkpoint.pt", state, config, run)


def write_model(run: TrainRun, module: YoloxModule, path: Path) -> None:
    """The module's weights as a serving ONNX file with class names and provenance (written atomically)."""
    exported = export_onnx(run.base, module, run.train.class_names, run.metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    onnx.save(exported, str(temporary))
    temporary.replace(path)


CSV_HEADER = ",".join(EpochRecord.__dataclass_fields__)


def append_csv(path: Path, record: EpochRecord) -> None:
    new = not path.exists()
    with path.open("a", encoding="utf-8") as out:
        if new:
            out.write(CSV_HEADER + "\n")
        out.write(",".join(str(getattr(record, name)) for name in EpochRecord.__dataclass_fields__) + "\n")


# -- small helpers ---------------------------------------------------------------------------------


def _close_epoch(state: TrainState, totals: np.ndarray, steps: int, config: TrainConfig, started: float) -> None:
    mean = totals / max(steps, 1)
    state.epoch += 1
    lr = state.optimizer.param_groups[0]["lr"]
    state.log.append(EpochRecord(
        epoch=state.epoch, steps=steps, images=steps * config.batch_size, loss=round(mean[0], 4),
        iou_loss=round(mean[1], 4), obj_loss=round(mean[2], 4), cls_loss=round(mean[3], 4), learning_rate=lr,
        minutes=0.0, val_ap50=-1.0, val_ap=-1.0, val_ap_small=-1.0,
    ))  # fmt: skip


def _time_left(config: TrainConfig, started: float, reserve_s: float = 0.0) -> float:
    """Seconds of the budget left, less ``reserve_s`` kept for the validation that ends an epoch."""
    if config.time_budget_s is None:
        return math.inf
    return config.time_budget_s - (time.monotonic() - started) - reserve_s


def _progress(config: TrainConfig, state: TrainState, started: float) -> float:
    if config.time_budget_s is not None and config.epochs is None:
        return (time.monotonic() - started) / config.time_budget_s
    return state.epoch / config.max_epochs()


def _progress_text(mean: np.ndarray, images_per_s: float, config: TrainConfig, started: float) -> str:
    left = _time_left(config, started)
    left_text = "" if math.isinf(left) else f" left {max(left, 0) / 60:.1f} min"
    losses = f"loss {mean[0]:.3f} (iou {mean[1]:.3f} obj {mean[2]:.3f} cls {mean[3]:.3f})"
    return f"{losses} {images_per_s:.1f} img/s{left_text}"


@contextmanager
def _interrupt_as_exception() -> Iterator[None]:
    """SIGTERM is treated as Ctrl-C, so a stopped run still writes its checkpoint."""
    previous: Callable[..., Any] | int | None = None
    try:
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    except ValueError:  # not the main thread
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)

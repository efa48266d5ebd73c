"""Training speed and memory of `specks train` on this machine, and a run's AP50 against training minutes.

Prints seconds per step (min / median / max after two warm-up steps), images per second and the
process's peak resident memory, for training steps exactly as `specks train` takes them (the same
sampling, loss and optimizer code), with every layer trained and with the backbone frozen,
interleaved step by step so both see the same machine. With --run DIR it also prints the
validation curve of a finished run (DIR/metrics.csv; the picture is DIR/learning_curve.png).

    .venv/bin/python benchmarks/train_speed.py                                   # HIT-UAV frames, 8 x 640
    .venv/bin/python benchmarks/train_speed.py --dataset ../shared/data/visdrone_dev10 --steps 10
    .venv/bin/python benchmarks/train_speed.py --run runs/train-hit_uav_train --steps 0
"""

from __future__ import annotations

import argparse
import csv
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from specks.core.names import COCO80_NAMES
from specks.models.default import embedded_default_path
from specks.tools.training.batches import Augmentation, draw_batch
from specks.tools.training.datasets import read_dataset
from specks.tools.training.graph import load_yolox_graph
from specks.tools.training.trainer import TrainConfig, new_state, train_step

WARMUP_STEPS = 2


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_steps(dataset: Path, steps: int, batch: int, imgsz: int) -> dict[str, list[float]]:
    """Seconds per step (sampling included) of both variants, alternating step by step."""
    images = read_dataset(dataset, "train")
    base, head = load_yolox_graph(embedded_default_path())
    augmentation = Augmentation(crop_hw=(imgsz, imgsz))
    variants = {
        "every layer": TrainConfig(batch_size=batch, augmentation=augmentation),
        "backbone frozen": TrainConfig(batch_size=batch, augmentation=augmentation, freeze_backbone=True),
    }
    states = {
        label: new_state(base, head, COCO80_NAMES, images.class_names, config) for label, config in variants.items()
    }
    seconds: dict[str, list[float]] = {label: [] for label in variants}
    rng = np.random.default_rng(0)
    for step in range(steps + WARMUP_STEPS):
        for label, config in variants.items():
            picks = [images.images[int(i)] for i in rng.integers(0, len(images.images), batch)]
            started = time.perf_counter()
            train_step(states[label], config, draw_batch(picks, images.images, config.augmentation, rng), started)
            if step >= WARMUP_STEPS:
                seconds[label].append(time.perf_counter() - started)
    return seconds


def print_curve(folder: Path) -> None:
    with (folder / "metrics.csv").open(encoding="utf-8") as rows:
        log = list(csv.DictReader(rows))
    print(f"\n{folder}: validation after each epoch (picture: {folder / 'learning_curve.png'})")
    print(f"{'epoch':>5} {'minutes':>8} {'loss':>7} {'AP50':>6} {'AP':>6} {'AP_small':>8}")
    for row in log:
        print(f"{row['epoch']:>5} {float(row['minutes']):>8.1f} {float(row['loss']):>7.3f} "
              f"{float(row['val_ap50']):>6.3f} {float(row['val_ap']):>6.3f} {float(row['val_ap_small']):>8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=Path("../shared/data/hit_uav_train"))
    parser.add_argument("--steps", type=int, default=8, help="timed steps per variant (default 8)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--threads", type=int, help="torch threads (default: every core)")
    parser.add_argument("--run", type=Path, help="also print this finished run's validation curve")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.steps > 0:
        seconds = time_steps(args.dataset, args.steps, args.batch, args.imgsz)
        print(f"{args.dataset}: {args.steps} steps of {args.batch} crops at {args.imgsz}x{args.imgsz}, "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads")
        for label, values in seconds.items():
            median = statistics.median(values)
            print(f"  {label:16s} s/step min {min(values):.2f} median {median:.2f} max {max(values):.2f}   "
                  f"{args.batch / median:.1f} images/s")
        print(f"  peak resident memory of this process (both models): {peak_rss_mib():.0f} MiB")
    if args.run is not None:
        print_curve(args.run)


if __name__ == "__main__":
    main()

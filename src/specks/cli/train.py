"""``specks train`` and ``specks quantize``: new model files from your own labelled images.

``train`` fine-tunes a YOLOX-layout model (PyTorch, the train extra: imported only here, only when the
command runs); ``quantize`` writes a static INT8 copy and refuses it when held-out AP50 drops too much.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import orjson

from ..config import Settings
from ..errors import ConfigError
from .args import Subparsers


def add_train_parser(sub: Subparsers) -> None:
    """``specks train``: fine-tune a model on labelled images."""
    train = sub.add_parser(
        "train",
        help="fine-tune a YOLOX-layout model on your own labelled images (needs: pip install 'specks[train]')",
        description="Fine-tunes the embedded YOLOX-Nano (or a YOLOX-layout .onnx file) on a COCO-format folder "
        "(images/ + annotations.coco.json) or a YOLO-layout export (data.yaml, images/, labels/), on native-"
        "resolution crops, the pixel scale the server runs. Each epoch is scored on the validation images with "
        "specks eval's code; the best epoch is written as DIR/model.onnx with a model card, the per-epoch log, "
        "a profile and the learning curve. Ctrl-C writes a checkpoint; --resume DIR continues.",
    )
    train.add_argument("dataset", nargs="?", type=Path, help="the training images (not needed with --resume)")
    train.add_argument("--model", help="the model to start from: a YOLOX-layout .onnx file (default: the embedded "
                       "YOLOX-Nano)")  # fmt: skip
    val = train.add_mutually_exclusive_group()
    val.add_argument("--val", type=Path, help="validation images (default: the dataset's val split, else --val-split)")
    val.add_argument("--val-split", type=float, default=0.2, help="share of the images held out to validate "
                     "when there is no val split (default 0.2)")  # fmt: skip
    length = train.add_mutually_exclusive_group()
    length.add_argument("--time-budget", type=float, metavar="MIN", help="train for this many minutes, validation "
                        "included, then stop cleanly and export")  # fmt: skip
    length.add_argument("--epochs", type=int, help="train for this many epochs (default 20 without --time-budget)")
    train.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cpu (default, every core) or cuda")
    train.add_argument("--output", type=Path, help="output folder (default: runs/train-<dataset name>)")
    train.add_argument("--resume", type=Path, metavar="DIR", help="continue the run in this output folder")
    train.add_argument("--batch", type=int, default=8, help="crops per step (default 8)")
    train.add_argument("--imgsz", type=int, default=640, help="crop side in pixels, a multiple of 32 (default 640)")
    train.add_argument("--lr", type=float, default=2e-4, help="AdamW learning rate (default 2e-4)")
    train.add_argument(
        "--freeze-backbone",
        action="store_true",
        help="train the neck and head only (forgets less of the base model's general skill)",
    )
    train.add_argument("--mosaic", type=float, default=0.0, help="share of samples that are 2x2 mosaics (default 0)")
    train.add_argument("--general", type=Path, help="a COCO-format folder of general photos: the card reports "
                       "what fine-tuning cost there, on the classes the model shares with it")  # fmt: skip
    train.add_argument(
        "--mix",
        type=Path,
        help="a labelled folder of general photos mixed into training (on "
        "the dataset's classes; the rest is background): keeps more of the base model's skill",
    )
    train.add_argument("--mix-ratio", type=float, default=0.25, help="share of samples drawn from --mix (default 0.25)")
    train.add_argument(
        "--class-balance",
        type=float,
        default=0.3,
        help="draw images of classes found in fewer "
        "than this share of the images more often (repeat-factor sampling; 0: off; default 0.3)",
    )
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    train.add_argument("--threads", type=int, help="CPU threads (default: every core)")
    train.add_argument(
        "--progress", choices=["auto", "on", "off"], default="auto", help="progress bar on stderr (auto: on a terminal)"
    )


TRAIN_EXTRA_MESSAGE = (
    "specks train needs PyTorch, an optional extra: pip install 'specks[train]' (make dev installs it)"
)


def cmd_train(args: argparse.Namespace) -> int:
    """Fine-tune the model, export the best epoch and say how validation AP changed."""
    _check_train_args(args)
    try:
        import torch  # noqa: F401  (the train extra; serving never imports it)
    except ImportError as exc:
        raise ConfigError(TRAIN_EXTRA_MESSAGE) from exc
    from ..tools.training.checkpoints import load_checkpoint
    from ..tools.training.run import TrainRequest, run_training

    if args.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: PyTorch sees no CUDA device here; train on the CPU (--device cpu)")
    if args.resume is not None:
        checkpoint = load_checkpoint(args.resume)
        request = TrainRequest.resumed(checkpoint, args.resume, _resumed_config(args, checkpoint.config))
    else:
        checkpoint = None
        output = args.output or Path("runs") / f"train-{args.dataset.resolve().name}"
        request = TrainRequest(
            dataset=args.dataset, output=output, model=args.model, val=args.val, val_split=args.val_split,
            general=args.general, mix=args.mix, config=_train_config(args),
        )  # fmt: skip
    progress = {"auto": None, "on": True, "off": False}[args.progress]
    card = run_training(request, checkpoint=checkpoint, progress=progress)
    before, after = card["scores"]["before"], card["scores"]["after"]
    print(
        f"validation AP50 {before['AP50']:.3f} -> {after['AP50']:.3f}, AP_small {before['AP_small']:.3f} -> "
        f"{after['AP_small']:.3f} ({card['training']['epochs']} epochs, {card['training']['minutes']} min, "
        f"stopped by {card['training']['stopped_by']})"
    )
    print(f"model written to {request.output / 'model.onnx'}; serve it with: specks serve --model "
          f"{request.output / 'model.onnx'}")  # fmt: skip
    return 0


def _check_train_args(args: argparse.Namespace) -> None:
    """Refuse impossible flags before anything is loaded."""
    if args.resume is None and args.dataset is None:
        raise ConfigError("specks train needs a DATASET folder (or --resume DIR to continue a run)")
    checks = [
        (args.epochs is not None and args.epochs < 1, f"--epochs must be at least 1, got {args.epochs}"),
        (args.time_budget is not None and args.time_budget <= 0,
         f"--time-budget must be positive minutes, got {args.time_budget}"),
        (not 0 < args.val_split < 1, f"--val-split must be between 0 and 1, got {args.val_split}"),
        (args.batch < 1, f"--batch must be at least 1, got {args.batch}"),
        (args.imgsz < 64 or args.imgsz % 32, f"--imgsz must be a multiple of 32 from 64, got {args.imgsz}"),
        (not 0 < args.lr < 1, f"--lr must be between 0 and 1, got {args.lr}"),
        (not 0 <= args.mosaic <= 1, f"--mosaic must be between 0 and 1, got {args.mosaic}"),
        (not 0 < args.mix_ratio < 1, f"--mix-ratio must be between 0 and 1, got {args.mix_ratio}"),
        (not 0 <= args.class_balance <= 1, f"--class-balance must be between 0 and 1, got {args.class_balance}"),
        (args.threads is not None and args.threads < 1, f"--threads must be at least 1, got {args.threads}"),
    ]  # fmt: skip
    for failed, message in checks:
        if failed:
            raise ConfigError(message)


def _train_config(args: argparse.Namespace) -> Any:
    from ..tools.training.batches import Augmentation
    from ..tools.training.trainer import TrainConfig

    return TrainConfig(
        epochs=args.epochs, time_budget_s=None if args.time_budget is None else args.time_budget * 60,
        batch_size=args.batch, learning_rate=args.lr, freeze_backbone=args.freeze_backbone, seed=args.seed,
        mix_ratio=args.mix_ratio, rare_class_threshold=args.class_balance,
        device=args.device, threads=args.threads,
        augmentation=Augmentation(crop_hw=(args.imgsz, args.imgsz), mosaic_ratio=args.mosaic),
    )  # fmt: skip


def _resumed_config(args: argparse.Namespace, saved: dict[str, Any]) -> Any:
    """The checkpoint's configuration; --epochs or --time-budget given again replace its length."""
    from ..tools.training.trainer import TrainConfig

    config = TrainConfig.from_json(saved)
    if args.epochs is not None:
        config = dataclasses.replace(config, epochs=args.epochs, time_budget_s=None)
    if args.time_budget is not None:
        config = dataclasses.replace(config, time_budget_s=args.time_budget * 60, epochs=None)
    return config


def add_quantize_parser(sub: Subparsers) -> None:
    """``specks quantize``: a static INT8 copy of a model, checked on held-out images."""
    quantize = sub.add_parser(
        "quantize",
        help="write a static INT8 copy of a model, calibrated and checked on your own labelled images",
        description="Splits a COCO-format folder into a calibration part and a held-out part, calibrates "
        "ONNX Runtime's static INT8 quantization on the model inputs serving makes of the calibration images "
        "(the full image, or the small-object path's tiles), scores both models on the held-out images as "
        "`specks eval` does, and writes the INT8 model and its card only if AP50 drops by no more than "
        "--max-ap50-drop (or --force).",
    )
    quantize.add_argument("model", help="the model to quantize: default (the embedded YOLOX-Nano), a named "
                          "model, or an .onnx file")  # fmt: skip
    quantize.add_argument(
        "--calibration",
        type=Path,
        required=True,
        help="a COCO-format folder (images/ + annotations.coco.json) like the images served",
    )
    quantize.add_argument("--output", type=Path, help="the INT8 .onnx file (default: <model>.int8.onnx)")
    quantize.add_argument(
        "--held-out", type=float, default=0.3, help="share of the images held out to score both models (default 0.3)"
    )
    quantize.add_argument(
        "--max-ap50-drop",
        type=float,
        default=0.01,
        help="refuse to write when held-out AP50 drops by more (default 0.01)",
    )
    quantize.add_argument("--force", action="store_true", help="write the model even past --max-ap50-drop")
    quantize.add_argument("--seed", type=int, default=0, help="seed of the calibration/held-out split (default 0)")
    quantize.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: every core)")
    quantize.add_argument("--json", action="store_true", help="print the card as JSON")


def cmd_quantize(args: argparse.Namespace) -> int:
    """Write the INT8 model if it scores close enough on the held-out images, and print the change."""

    from ..tools.quantization import QuantizeRequest, card_paths, quantize_model

    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    request = QuantizeRequest(
        model=args.model, calibration=args.calibration, output=args.output, held_out_ratio=args.held_out,
        max_ap50_drop=args.max_ap50_drop, force=args.force, seed=args.seed,
    )  # fmt: skip
    card = quantize_model(request, Settings.from_env(), threads=args.threads)
    if args.json:
        print(orjson.dumps(card, option=orjson.OPT_INDENT_2).decode())
        return 0
    before, after = card["scores"]["float"], card["scores"]["int8"]
    output = Path(card["output"])
    print(
        f"held out ({card['images']['held_out']} images): AP50 {before['AP50']:.3f} -> {after['AP50']:.3f}, "
        f"AP_small {before['AP_small']:.3f} -> {after['AP_small']:.3f}, seconds per image "
        f"{before['seconds_per_image']:.3f} -> {after['seconds_per_image']:.3f}"
    )
    print(f"model written to {output} (card: {card_paths(output)[1]}); serve it with: specks serve --model {output}")
    return 0

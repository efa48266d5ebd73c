"""The ``specks`` command: thin sub-commands that parse, call the core and print.

One module per group of commands, each with its parsers, what runs them and their report text::

    cli/
      __init__.py   main(): the parser assembled from the modules, dispatch, SpecksError -> exit status 2
      args.py       flags several commands share (model, detection, slicing) -> Settings, DetectOptions
      serve.py      serve, ray-config, config
      predict.py    predict, models (and PredictOutput, where predict writes)
      evaluate.py   eval, tune, mosaic
      bench.py      bench, load
      train.py      train, quantize

Heavy libraries (ONNX Runtime, PyTorch, Ray) are imported inside the command that needs them, never here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple

from ..errors import SpecksError
from ..logs import LogFormat, configure_logging
from . import bench, evaluate, predict, serve, train
from .args import Subparsers, conf_value, iou_options, settings_from_args, slice_options
from .bench import format_load_report

__all__ = [
    "COMMANDS",
    "build_parser",
    "conf_value",
    "format_load_report",
    "iou_options",
    "main",
    "settings_from_args",
    "slice_options",
]


class Command(NamedTuple):
    """One sub-command: how it adds its parser to ``specks``'s, and what runs it (returns the exit status)."""

    add_parser: Callable[[Subparsers], None]
    run: Callable[[argparse.Namespace], int]


# Every command by name, in the order `specks --help` lists them.
COMMANDS: dict[str, Command] = {
    "serve": Command(serve.add_serve_parser, serve.cmd_serve),
    "ray-config": Command(serve.add_ray_config_parser, serve.cmd_ray_config),
    "predict": Command(predict.add_predict_parser, predict.cmd_predict),
    "eval": Command(evaluate.add_eval_parser, evaluate.cmd_eval),
    "models": Command(predict.add_models_parser, predict.cmd_models),
    "tune": Command(evaluate.add_tune_parser, evaluate.cmd_tune),
    "bench": Command(bench.add_bench_parser, bench.cmd_bench),
    "load": Command(bench.add_load_parser, bench.cmd_load),
    "mosaic": Command(evaluate.add_mosaic_parser, evaluate.cmd_mosaic),
    "train": Command(train.add_train_parser, train.cmd_train),
    "quantize": Command(train.add_quantize_parser, train.cmd_quantize),
    "config": Command(serve.add_config_parser, serve.cmd_config),
}


def build_parser() -> argparse.ArgumentParser:
    """``specks``'s parser: ``-v`` and one sub-parser per command of ``COMMANDS``."""
    parser = argparse.ArgumentParser(prog="specks", description="Small-object detection API and tools.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run the command, and turn a SpecksError into its message and exit status 2."""
    args = build_parser().parse_args(argv)
    configure_logging(LogFormat.TEXT, "debug" if args.verbose else "info")
    try:
        return COMMANDS[args.command].run(args)
    except SpecksError as exc:
        print(f"specks: error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130

"""What a run leaves beside its model: the model card (Markdown and JSON), the profile and the learning curve."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...core.postprocess import OutputLayout
from ...models.overrides import ModelOverrides
from ...models.profiles import ModelProfile, save_profile

if TYPE_CHECKING:
    from .checkpoints import EpochRecord
    from .trainer import TrainResult

CARD_FILE = "MODEL_CARD.md"
CARD_JSON_FILE = "model_card.json"
PROFILE_FILE = "model.onnx.specks.json"  # the sidecar `specks serve --model DIR/model.onnx` reads
CURVE_FILE = "learning_curve.png"


def write_outputs(folder: Path, card: Mapping[str, Any], result: TrainResult) -> None:
    (folder / CARD_JSON_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    (folder / CARD_FILE).write_text(card_markdown(card), encoding="utf-8")
    save_profile(model_profile(card), folder / PROFILE_FILE)
    if result.log:
        plot_learning_curve(result.log, card["scores"]["before"]["AP50"], folder / CURVE_FILE)


def model_profile(card: Mapping[str, Any]) -> ModelProfile:
    """The server defaults of the validation that chose the model (the server's own slicing) and its facts."""
    crop_hw = card["training"]["crop_hw"]
    return ModelProfile(
        overrides=ModelOverrides(layout=OutputLayout.YOLOX, input_hw=(int(crop_hw[0]), int(crop_hw[1]))),
        metadata={
            "made_by": "specks train",
            "dataset": card["dataset"]["path"],
            "validation": {"AP50": card["scores"]["after"]["AP50"], "AP": card["scores"]["after"]["AP"]},
        },
    )


def card_markdown(card: Mapping[str, Any]) -> str:
    """The model card a person reads: what the model is, what it was trained on, what it scores."""
    training, scores = card["training"], card["scores"]
    lines = [
        "# Model card",
        "",
        f"`{card['model']}`: fine-tuned by `specks train` (Specks {card['specks_version']}) from "
        f"{card['base_model']['name']} (sha256 `{card['base_model']['sha256'][:16]}...`), {card['created']}.",
        "",
        f"- **Classes** ({len(card['classes'])}): {', '.join(card['classes'])}; started from the base model's "
        f"weights: {', '.join(card['classes_from_base']) or 'none'}.",
        f"- **Training data**: {card['dataset']['path']}: {card['dataset']['images']} images, "
        f"{card['dataset']['boxes']} boxes.",
        f"- **Validation**: {card['validation']['source']}: {card['validation']['images']} images, "
        f"{card['validation']['boxes']} boxes.",
        f"- **Training**: {training['epochs']} epoch(s) ({training['steps']} steps of {training['batch_size']} "
        f"crops at {training['crop_hw'][1]}x{training['crop_hw'][0]}), {training['minutes']} minutes on "
        f"{training['device']} ({training['threads']} threads, {training['cores']} cores), stopped by "
        f"{training['stopped_by']}; best epoch {training['best_epoch']}.",
        "",
        f"## Validation (the server's default slicing, conf {scores['conf']}, at most {scores['max_dets']} boxes)",
        *_score_table(scores["before"], scores["after"]),
    ]
    lines.extend(_general_lines(card.get("general_photos")))
    lines.extend([
        "Scores of the base model count only the classes it shares with the data by name.",
        "Per-epoch figures: `metrics.csv`; the curve: `learning_curve.png`.",
        "",
    ])  # fmt: skip
    return "\n".join(lines)


def _score_table(before: Mapping[str, float], after: Mapping[str, float]) -> list[str]:
    """Markdown lines: a blank line, the base model's and the fine-tuned model's scores, a blank line."""
    header = ["", "| | AP50 | AP | AP_small | seconds per image |", "|---|---|---|---|---|"]
    return [*header, _score_row("base model", before), _score_row("fine-tuned", after), ""]


def _score_row(label: str, scores: Mapping[str, float]) -> str:
    seconds = scores.get("seconds_per_image", -1)
    cells = [f"{scores[name]:.3f}" for name in ("AP50", "AP", "AP_small")]
    return f"| {label} | {' | '.join(cells)} | {'n/a' if seconds < 0 else f'{seconds:.3f}'} |"


def _general_lines(general: Mapping[str, Any] | None) -> list[str]:
    if not general:
        return []
    if not general.get("classes"):
        return [f"General photos ({general['folder']}): no class in common, not scored.", ""]
    return [
        f"## What fine-tuning cost on general photos ({general['folder']}; classes {', '.join(general['classes'])})",
        *_score_table(general["before"], general["after"]),
        "Fine-tuning on a narrow set forgets some of the base model's general skill; where the drop matters, "
        "mix general photos into training or serve the base model beside this one (`--model NAME=PATH`).",
        "",
    ]


def plot_learning_curve(log: Sequence[EpochRecord], base_ap50: float, path: Path) -> None:
    """Validation AP50 (and AP_small) against training minutes, with the base model's AP50 as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [0.0, *(row.minutes for row in log)]  # minute 0: the model before training, on the same images
    figure, axes = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    axes.plot(minutes, [base_ap50, *(row.val_ap50 for row in log)], marker="o", label="AP50")
    axes.plot(minutes[1:], [row.val_ap_small for row in log], marker=".", linestyle="--", label="AP_small")
    axes.axhline(base_ap50, color="grey", linestyle=":", label=f"base model AP50 {base_ap50:.3f}")
    axes.set_xlabel("training minutes")
    axes.set_ylabel("validation score")
    axes.set_ylim(0, 1)
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    axes.set_title("specks train: validation after each epoch")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)

"""``specks tune``: small-object settings fitted to a user's own labelled images.

The folder's images are split, by seed, into a tuning part and a held-out part. A greedy
coordinate search walks a grid of slicing / scale / fusion / threshold settings on the tuning
part (one axis at a time, keeping the best AP50 within the time budget, two rounds at most), the
best setting found is scored against the defaults on the held-out part, and it is kept only when
it beats them there: a tuned profile never scores below the defaults on images it did not see.

Each image file is read once and decoded once per decode size for the whole search; its decode
time (measured once) is added to every evaluation's milliseconds per image, so the budget
compares what the server would spend on this machine.
"""

from __future__ import annotations

import dataclasses
import datetime
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from .. import __version__
from ..core.imaging import DecodedImage, read_image_size
from ..core.knobs import SlicingSettings
from ..core.options import DetectOptions
from ..core.overlap import MergeStrategy
from ..core.planning import plan_request
from ..core.slicing import SliceMode
from ..core.types import ImageSize
from ..errors import InvalidRequestError, TooManyInputPixelsError, TooManyTilesError
from ..models.profiles import ModelProfile, settings_of
from .evaluation import CocoDataset, detections_to_coco, model_to_dataset_categories, score_coco

if TYPE_CHECKING:
    from ..core.pipeline import Detector

MIN_TUNING_IMAGES = 2
MIN_HELD_OUT_IMAGES = 2
MAX_ROUNDS = 2
WBF_THRESHOLD = 0.55  # weighted box fusion groups boxes a little looser than NMS drops them


@dataclass(frozen=True)
class Score:
    """One setting's result on one part of the folder."""

    ap50: float
    ap_small: float
    ms_per_image: float

    def within(self, budget_ms: float | None) -> bool:
        return budget_ms is None or self.ms_per_image <= budget_ms


@dataclass(frozen=True)
class Trial:
    """A setting the search tried: its label (changes from the defaults) and its tuning-part score."""

    label: str
    slicing: SlicingSettings
    score: Score | None
    error: str | None = None


@dataclass(frozen=True)
class Axis:
    """One dimension of the search: the settings changes it tries, and when it matters at all."""

    name: str
    options: tuple[dict[str, Any], ...]
    sliced_only: bool = False

    def applies(self, slicing: SlicingSettings) -> bool:
        return not self.sliced_only or slicing.mode is not SliceMode.OFF


def search_axes(base: SlicingSettings) -> tuple[Axis, ...]:
    """The grid: slicing on/off/auto, tile scale, fused scales, flip, NMS/WBF, tile IoU, multi-label, soft-NMS."""
    return (
        Axis("mode", tuple({"mode": mode} for mode in (SliceMode.AUTO, SliceMode.ON, SliceMode.OFF))),
        Axis("tile_scale", tuple({"tile_scale": s} for s in (1.0, 1.5, 2.0)), sliced_only=True),
        Axis("scales", tuple({"scales": s} for s in ((1.0,), (1.0, 1.25), (1.0, 1.5)))),
        Axis("flip", ({"flip": False}, {"flip": True})),
        Axis(
            "merge",
            (
                {"merge": MergeStrategy.NMS, "merge_threshold": base.merge_threshold},
                {"merge": MergeStrategy.WBF, "merge_threshold": WBF_THRESHOLD},
            ),
        ),
        Axis("iou_threshold", tuple({"iou_threshold": v} for v in (0.5, 0.6, 0.7)), sliced_only=True),
        Axis("multi_label", ({"multi_label": True}, {"multi_label": False}), sliced_only=True),
        Axis("soft_nms", ({"soft_nms": False}, {"soft_nms": True})),
    )


def max_evaluations(axes: Sequence[Axis]) -> int:
    """Most tuning-part evaluations the search can make: the defaults, then each axis's other values per round."""
    return 1 + MAX_ROUNDS * sum(len(axis.options) - 1 for axis in axes)


# -- splitting -----------------------------------------------------------------------------------
def split_dataset(dataset: CocoDataset, holdout_ratio: float, seed: int) -> tuple[CocoDataset, CocoDataset]:
    """(tuning part, held-out part), drawn by ``seed``; too few images for both is InvalidRequestError."""
    if not 0.05 <= holdout_ratio <= 0.9:
        raise InvalidRequestError(f"--holdout must be within 0.05..0.9, got {holdout_ratio}")
    images = sorted(dataset.images, key=lambda image: image["id"])
    random.Random(seed).shuffle(images)
    held_out_count = max(MIN_HELD_OUT_IMAGES, round(len(images) * holdout_ratio))
    if len(images) - held_out_count < MIN_TUNING_IMAGES:
        needed = MIN_TUNING_IMAGES + MIN_HELD_OUT_IMAGES
        raise InvalidRequestError(
            f"{dataset.root} has {len(images)} image(s); tuning needs at least {needed} labelled images "
            f"({MIN_TUNING_IMAGES} to tune on and {MIN_HELD_OUT_IMAGES} held out to check the result), "
            f"and more for a result that holds on new photos"
        )
    return subset(dataset, images[held_out_count:]), subset(dataset, images[:held_out_count])


def subset(dataset: CocoDataset, images: list[dict[str, Any]]) -> CocoDataset:
    """These images with their annotations only."""
    kept = {image["id"] for image in images}
    annotations = [a for a in dataset.annotations["annotations"] if a["image_id"] in kept]
    return CocoDataset(dataset.root, {**dataset.annotations, "images": images, "annotations": annotations})


# -- evaluating ----------------------------------------------------------------------------------
@dataclass
class PreparedImages:
    """A part's image files read once; each image decoded once per decode size, its decode time kept."""

    detector: Detector
    dataset: CocoDataset
    files: list[tuple[dict[str, Any], bytes, ImageSize]] = field(init=False)
    _decoded: dict[tuple[int, tuple[int, int] | None], tuple[DecodedImage, float]] = field(
        init=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        limit = self.detector.limits.max_image_pixels
        self.files = []
        for image in self.dataset.images:
            data = self.dataset.image_path(image).read_bytes()
            self.files.append((image, data, read_image_size(data, max_image_pixels=limit)[0]))

    def decoded(self, index: int, decode_hw: tuple[int, int] | None) -> tuple[DecodedImage, float]:
        """The image at ``index`` decoded for ``decode_hw`` (None: every pixel), and that decode's ms."""
        key = (index, decode_hw)
        if key not in self._decoded:
            _, data, size = self.files[index]
            start = time.perf_counter()
            image = self.detector.decode_for_input(data, size, decode_hw)
            self._decoded[key] = (image, (time.perf_counter() - start) * 1000)
        return self._decoded[key]


def evaluate_setting(
    images: PreparedImages, slicing: SlicingSettings, options: DetectOptions, *, max_dets: int
) -> Score:
    """Score one setting on a part: the API's plan and passes per image, scored at ``max_dets``."""
    from ..core.pipeline import StageTimer

    detector = images.detector
    category_of = model_to_dataset_categories(images.dataset, detector.model.info.names)
    results: list[dict[str, Any]] = []
    times_ms: list[float] = []
    for index, (image, _, size) in enumerate(images.files):
        plan = plan_request(detector.model.info, slicing, options, size)
        decoded, decode_ms = images.decoded(index, plan.decode_input_hw)
        start = time.perf_counter()
        found = detector.detect_planned(decoded, plan, StageTimer())
        times_ms.append(decode_ms + (time.perf_counter() - start) * 1000)
        results.extend(detections_to_coco(image["id"], found, category_of))
    metrics = score_coco(images.dataset.annotations, results, max_dets=max_dets)
    return Score(metrics["AP50"], metrics["AP_small"], round(statistics.fmean(times_ms), 1))


# -- searching -----------------------------------------------------------------------------------
def quality(trial: Trial, budget_ms: float | None) -> tuple[bool, float, float]:
    """What a setting must improve to be adopted: within the budget, then AP50, then AP_small.

    Time is not part of it: two settings that score the same are usually the same passes (for
    one, the merge of a single whole-image tile), and their measured times differ by noise only.
    """
    if trial.score is None:
        return (False, -1.0, -1.0)
    return (trial.score.within(budget_ms), trial.score.ap50, trial.score.ap_small)


def preference(trial: Trial, base: SlicingSettings, budget_ms: float | None) -> tuple[Any, ...]:
    """Order among settings: ``quality``, then fewer changes from ``base``, then faster."""
    ms = trial.score.ms_per_image if trial.score is not None else 0.0
    return (*quality(trial, budget_ms), -changes_from(trial.slicing, base), -ms)


def changes_from(slicing: SlicingSettings, base: SlicingSettings) -> int:
    return sum(value != getattr(base, name) for name, value in settings_of(slicing).items())


def describe_changes(slicing: SlicingSettings, base: SlicingSettings) -> str:
    """e.g. 'mode=on flip=on scales=1,1.5' ('defaults' when nothing differs)."""
    parts = []
    for name, value in settings_of(slicing).items():
        if value == getattr(base, name):
            continue
        if isinstance(value, bool):
            shown = "on" if value else "off"
        elif isinstance(value, tuple):
            shown = ",".join(f"{v:g}" for v in value)
        else:
            shown = str(getattr(value, "value", value))
        parts.append(f"{name}={shown}")
    return " ".join(parts) or "defaults"


def greedy_search(
    base: SlicingSettings,
    evaluate: Callable[[SlicingSettings], Score],
    *,
    budget_ms: float | None,
    on_trial: Callable[[Trial], None] = lambda trial: None,
) -> list[Trial]:
    """Coordinate search from ``base``: each axis in turn moves to its best value when that scores
    better than the current setting (a tie keeps it); a second round revisits the axes when the
    first changed anything. Every setting is evaluated at most once.

    Returns every trial in the order tried (the first is ``base``).
    """
    axes = search_axes(base)
    tried: dict[SlicingSettings, Trial] = {}

    def trial_of(slicing: SlicingSettings) -> Trial:
        if slicing not in tried:
            try:
                tried[slicing] = Trial(describe_changes(slicing, base), slicing, evaluate(slicing))
            except (TooManyTilesError, TooManyInputPixelsError) as exc:  # a setting over the request budget
                tried[slicing] = Trial(describe_changes(slicing, base), slicing, None, exc.message)
            on_trial(tried[slicing])
        return tried[slicing]

    current = trial_of(base)
    for _ in range(MAX_ROUNDS):
        start = current
        for axis in axes:
            if not axis.applies(current.slicing):
                continue
            candidates = [trial_of(dataclasses.replace(current.slicing, **option)) for option in axis.options]
            best = max(candidates, key=lambda trial: preference(trial, base, budget_ms))
            if quality(best, budget_ms) > quality(current, budget_ms):
                current = best
        if current is start:
            break
    return list(tried.values())


def best_trial(trials: Sequence[Trial], budget_ms: float | None) -> Trial | None:
    """The best AP50 of every trial within the budget, the fewest changes among equals (None: none was).

    ``trials[0]`` is the defaults the changes are counted from.
    """
    within = [t for t in trials if t.score is not None and t.score.within(budget_ms)]
    if not within:
        return None
    return max(within, key=lambda trial: preference(trial, trials[0].slicing, budget_ms))


def keep_tuned(tuned: Score, defaults: Score) -> bool:
    """The held-out guard: a tuned setting is kept only when it beats the defaults' AP50 on unseen images."""
    return tuned.ap50 > defaults.ap50


# -- the whole run -------------------------------------------------------------------------------
@dataclass(frozen=True)
class TuneConfig:
    """What one ``specks tune`` run searches under."""

    budget_ms: float | None = None
    holdout_ratio: float = 0.3
    seed: int = 0
    conf: float = 0.01
    max_dets: int = 500
    progress: bool = True


@dataclass(frozen=True)
class TuneReport:
    """What ``specks tune`` found: every trial, the pick, the held-out check and the profile to write."""

    trials: list[Trial]
    defaults: Trial
    chosen: Trial | None
    held_out_defaults: Score
    held_out_chosen: Score | None
    kept_tuned: bool
    tuning_images: int
    held_out_images: int
    profile: ModelProfile


def tune(detector: Detector, dataset: CocoDataset, base: SlicingSettings, config: TuneConfig) -> TuneReport:
    """Search settings on the tuning part, check the pick on the held-out part, build the profile.

    ``base`` is the server's slicing settings without any profile (the "defaults" compared against).
    """
    tuning_part, held_out_part = split_dataset(dataset, config.holdout_ratio, config.seed)
    options = DetectOptions(conf=config.conf, max_det=config.max_dets)
    tuning_images = PreparedImages(detector, tuning_part)
    warm_up(tuning_images, base, options)
    with _progress(max_evaluations(search_axes(base)), config.progress) as bar:

        def on_trial(trial: Trial) -> None:
            bar.set_postfix_str(trial.label[:40])
            bar.update(1)

        trials = greedy_search(
            base,
            lambda slicing: evaluate_setting(tuning_images, slicing, options, max_dets=config.max_dets),
            budget_ms=config.budget_ms,
            on_trial=on_trial,
        )
        bar.total = len(trials)
        bar.refresh()
    defaults, chosen = trials[0], best_trial(trials, config.budget_ms)
    held_out_images = PreparedImages(detector, held_out_part)
    held_out_defaults = evaluate_setting(held_out_images, base, options, max_dets=config.max_dets)
    held_out_chosen = None
    if chosen is not None and chosen.slicing != base:
        held_out_chosen = evaluate_setting(held_out_images, chosen.slicing, options, max_dets=config.max_dets)
    kept = held_out_chosen is not None and keep_tuned(held_out_chosen, held_out_defaults)
    written = chosen.slicing if kept and chosen is not None else base
    report = TuneReport(
        trials, defaults, chosen, held_out_defaults, held_out_chosen, kept,
        len(tuning_part.images), len(held_out_part.images), ModelProfile(),
    )  # fmt: skip
    profile = ModelProfile(
        slicing=settings_of(written),
        overrides=(detector.profile if isinstance(detector.profile, ModelProfile) else ModelProfile()).overrides,
        metadata=tune_metadata(report, detector, dataset, config),
    )
    return dataclasses.replace(report, profile=profile)


def warm_up(images: PreparedImages, slicing: SlicingSettings, options: DetectOptions) -> None:
    """One untimed pass on the first image (ONNX Runtime's first runs are slow)."""
    from ..core.pipeline import StageTimer

    _, _, size = images.files[0]
    plan = plan_request(images.detector.model.info, slicing, options, size)
    images.detector.detect_planned(images.decoded(0, plan.decode_input_hw)[0], plan, StageTimer())


def tune_metadata(report: TuneReport, detector: Detector, dataset: CocoDataset, config: TuneConfig) -> dict[str, Any]:
    """What a profile records of how it was made (shown by GET /model and `specks models`)."""
    kept = report.kept_tuned and report.chosen is not None
    tuned_part = report.chosen.score if kept and report.chosen else report.defaults.score
    held_out = report.held_out_chosen if kept else report.held_out_defaults
    return {
        "made_by": "specks tune",
        "specks_version": __version__,
        "date": datetime.date.today().isoformat(),
        "model": detector.model.info.name,
        "dataset": dataset.root.name,
        "images": {"tuning": report.tuning_images, "held_out": report.held_out_images},
        "seed": config.seed,
        "budget_ms": config.budget_ms,
        "request": {"conf": config.conf, "max_det": config.max_dets},
        "evaluations": len(report.trials),
        "setting": (report.chosen.label if kept and report.chosen else "defaults"),
        "kept_tuned": report.kept_tuned,
        "tuning": score_json(tuned_part),
        "held_out": score_json(held_out),
        "held_out_defaults": score_json(report.held_out_defaults),
        "timing": "milliseconds per image measured on the machine that ran tune",
    }


def score_json(score: Score | None) -> dict[str, float] | None:
    return None if score is None else dataclasses.asdict(score)


@dataclass
class _NullBar:
    total: int = 0

    def set_postfix_str(self, text: str) -> None: ...
    def update(self, count: int) -> None: ...
    def refresh(self) -> None: ...


class _progress:  # noqa: N801 (used as a context manager, like tqdm itself)
    """A tqdm bar on stderr counting evaluations (its total is the search's upper bound)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar: Any = tqdm(total=total, unit="setting", file=sys.stderr, desc="tune") if enabled else _NullBar()

    def __enter__(self) -> Any:
        return self.bar

    def __exit__(self, *exc: object) -> None:
        if isinstance(self.bar, tqdm):
            self.bar.close()


def trial_rows(report: TuneReport, budget_ms: float | None) -> Iterator[list[str]]:
    """Rows of the table ``specks tune`` prints: setting, AP50, AP_small, ms per image, a note."""
    for trial in report.trials:
        if trial.score is None:
            yield [trial.label, "-", "-", "-", trial.error or "failed"]
            continue
        notes = []
        if trial is report.chosen:
            notes.append("best")
        if not trial.score.within(budget_ms):
            notes.append("over budget")
        score = trial.score
        yield [trial.label, f"{score.ap50:.3f}", f"{score.ap_small:.3f}", f"{score.ms_per_image:.0f}", ", ".join(notes)]

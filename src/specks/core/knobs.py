"""The detection knobs' defaults and ranges, each written once, and the server's defaults for them.

``SlicingSettings`` holds what a server (``SPECKS_*``) or a model profile sets as a request's
defaults; ``KNOBS`` says, for each of its fields, which request option overrides it, which
environment variable sets it, what it takes, and whether a profile may set it. The request options
themselves (``options.DetectOptions``, pydantic) are typed with the same ``Range`` values. Light on
purpose: ``config`` (read by the gunicorn master) imports this module, not the request schema.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .overlap import MatchMetric, MergeStrategy
from .slicing import SliceMode

# The largest max_det a request may ask for (DetectOptions).
MAX_DETECTIONS = 10_000
# Most passes (input scales) one request may fuse; each costs a model pass (two with flip).
MAX_PASS_SCALES = 4
# A request's confidence threshold when it gives none (DetectOptions.conf), and the key of a
# per-class ``conf`` object that sets it for the classes the object does not name.
DEFAULT_CONF = 0.25
CONF_FOR_THE_REST = "*"
# NMS IoU of a full-image pass (YOLOv5's detect default), and inside tiles (crowds: measured on VisDrone).
DEFAULT_IOU = 0.45
DEFAULT_SLICED_IOU = 0.6
DEFAULT_MAX_DET = 300


@dataclass(frozen=True)
class Range:
    """A closed range of numbers, the one place a knob's bounds are written: the request options
    are typed with it (``field``) and the server's defaults checked against it (``KNOBS``)."""

    low: float
    high: float | None = None

    def field(self) -> Any:
        """The range as pydantic field constraints (strictly typed): ``Annotated[float, UNIT.field()]``."""
        from pydantic import Field  # here: the settings import this module, and need no pydantic

        return Field(ge=self.low, le=self.high, strict=True)

    def words(self) -> str:
        return f">= {self.low:g}" if self.high is None else f"within {self.low:g}..{self.high:g}"

    def holds(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return self.low <= value and (self.high is None or value <= self.high)


UNIT = Range(0.0, 1.0)
TILE_PX = Range(64, 4096)
TILE_SCALE = Range(0.25, 4.0)
OVERLAP = Range(0.0, 0.75)
PASS_SCALE = Range(0.25, 4.0)
MAX_TILE_INPUT_PX = Range(64, 8192)
IMGSZ_PX = Range(32, 4096)
POSITIVE = Range(1)


@dataclass(frozen=True)
class SlicingSettings:
    """Server-wide defaults for sliced (tiled) inference; requests may override each one.

    mode:             slice when the image is clearly larger than the model input (auto), always, never.
    tile_px:          tile side in image pixels; 0 picks it from the model: its input size for
                      fixed-size models, max_tile_input_px / tile_scale for dynamic-size ones.
    tile_scale:       model-input pixels per image pixel inside a tile on dynamic-size models
                      (> 1 enlarges small objects).
    max_tile_input_px: largest model input side a tile may use on dynamic-size models.
    overlap_ratio:    overlap of neighbouring tiles as a fraction of the tile side.
    full_image_pass:  also run the whole image once (finds objects too big for a tile).
    merge:            keep the best box (NMS) or grow it over its group (NMM).
    merge_metric:     IoU, or intersection over the smaller box (IoS).
    merge_threshold:  overlap above which two detections of one class are the same object.
    max_tiles:        most tiles one request may cost, every pass (scales, flips) together; more is
                      refused with 413.
    max_input_pixels_per_request: most model-input pixels one request may run, every tile, pass,
                      flip and full-image pass together (each run's input height x width); more is
                      refused with 413. It bounds the model time of a request where ``max_tiles``
                      alone allows 200 tiles of 2560x2560.
    iou_threshold:    NMS IoU inside each tile in small-object mode (crowds need a higher one).
    multi_label:      in small-object mode a box may carry several classes above the threshold.
    scales:           input scale factors of the passes fused per request (1.0: the plan as is;
                      e.g. (1.0, 1.5) adds an enlarged pass). Applies to every request.
    flip:             also run each pass on the mirrored image (test-time augmentation).
    soft_nms:         decay overlapping boxes' scores instead of dropping them (crowds).

    The ranges match the per-request options (``DetectOptions``), so a server default
    is never a value a request could not send.
    """

    mode: SliceMode = SliceMode.AUTO
    tile_px: int = 0
    tile_scale: float = 1.0
    max_tile_input_px: int = 2560
    overlap_ratio: float = 0.2
    full_image_pass: bool = True
    merge: MergeStrategy = MergeStrategy.NMS
    merge_metric: MatchMetric = MatchMetric.IOU
    merge_threshold: float = 0.5
    max_tiles: int = 200
    # Every documented request and tuned profile fits, on any image up to the 40 MP image limit: the
    # heaviest, the tuned `scales` [1, 1.25] of docs/small-objects.md on a 40 MP photo, runs 237 MP (`specks tune`'s
    # heaviest trial, tile_scale 2 + scales [1, 1.5] + flip on a 2000x1500 photo, 133 MP; a default
    # sliced 40 MP image at most 105 MP). About 21 s of model time on 2 quiet cores: YOLOX-Nano and
    # yolov5n_dynamic run ~12 MP/s there (4.2-4.8 MP/s measured while the machine was shared).
    max_input_pixels_per_request: int = 256_000_000
    iou_threshold: float = DEFAULT_SLICED_IOU
    multi_label: bool = True
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    soft_nms: bool = False

    def __post_init__(self) -> None:
        # Names are parsed once, here, so the rest of Specks only sees enums.
        coerce_enum(self, "mode", SliceMode.parse)
        coerce_enum(self, "merge", MergeStrategy)
        coerce_enum(self, "merge_metric", MatchMetric)
        for knob in KNOBS:
            knob.check(getattr(self, knob.setting))


@dataclass(frozen=True)
class Knob:
    """One detection default (a field of ``SlicingSettings``) and everything derived from it.

    setting:   its ``SlicingSettings`` field, and its key in a model profile's ``slicing``.
    option:    the request option (``DetectOptions``) that overrides it, or None: not per request
               (``iou`` and ``multi_label`` override both modes' defaults at once).
    env:       its environment variable, after ``SPECKS_``.
    kind:      its type: bool, int, float, tuple (of floats) or an enum.
    values:    the range its numbers take (a tuple's items); ``zero_means_auto``: 0 is allowed too.
    per_model: a model profile may set it (False: a server limit, the same for every model).
    """

    setting: str
    option: str | None
    env: str
    kind: type
    values: Range | None = None
    zero_means_auto: bool = False
    per_model: bool = True

    def check(self, value: object) -> None:
        """ConfigError naming the setting and what it takes, unless ``value`` is one it takes."""
        if not self.takes(value):
            raise ConfigError(f"slicing: {self.setting} must be {self.words()}, got {value!r}")

    def takes(self, value: object) -> bool:
        if issubclass(self.kind, enum.Enum) or self.kind is bool:
            return isinstance(value, self.kind)
        if self.kind is tuple:
            counts = Range(1, MAX_PASS_SCALES)
            return isinstance(value, tuple) and counts.holds(len(value)) and all(self._in_range(v) for v in value)
        return (self.zero_means_auto and value == 0 and not isinstance(value, bool)) or self._in_range(value)

    def words(self) -> str:
        """What the knob takes, as the end of "... must be ..."."""
        if issubclass(self.kind, enum.Enum):
            names = [str(member.value) for member in self.kind]
            return ", ".join(names[:-1]) + f" or {names[-1]}"
        if self.kind is bool:
            return "true or false"
        range_words = self.values.words() if self.values else "a number"
        if self.kind is tuple:
            return f"1..{MAX_PASS_SCALES} factors {range_words}"
        return f"0 or {range_words.removeprefix('within ')}" if self.zero_means_auto else range_words

    def _in_range(self, value: object) -> bool:
        if self.kind is int and not isinstance(value, int):
            return False
        return self.values is None or self.values.holds(value)


# Every SlicingSettings field, in its order: the environment reader, profile checks, ``GET /model``'s
# defaults and the settings' own checks all come from here.
KNOBS: tuple[Knob, ...] = (
    Knob("mode", "slice", "SLICE", SliceMode),
    Knob("tile_px", "tile", "TILE", int, TILE_PX, zero_means_auto=True),
    Knob("tile_scale", "tile_scale", "TILE_SCALE", float, TILE_SCALE),
    Knob("max_tile_input_px", None, "MAX_TILE_INPUT", int, MAX_TILE_INPUT_PX, per_model=False),
    Knob("overlap_ratio", "overlap", "OVERLAP", float, OVERLAP),
    Knob("full_image_pass", "full_image", "FULL_IMAGE", bool),
    Knob("merge", "merge", "MERGE", MergeStrategy),
    Knob("merge_metric", "merge_metric", "MERGE_METRIC", MatchMetric),
    Knob("merge_threshold", "merge_threshold", "MERGE_THRESHOLD", float, UNIT),
    Knob("max_tiles", None, "MAX_TILES", int, POSITIVE, per_model=False),
    Knob("max_input_pixels_per_request", None, "MAX_INPUT_PIXELS", int, POSITIVE, per_model=False),
    Knob("iou_threshold", None, "SLICE_IOU", float, UNIT),
    Knob("multi_label", None, "SLICE_MULTI_LABEL", bool),
    Knob("scales", "scales", "SCALES", tuple, PASS_SCALE),
    Knob("flip", "flip", "FLIP", bool),
    Knob("soft_nms", "soft_nms", "SOFT_NMS", bool),
)


def request_defaults_of(slicing: SlicingSettings) -> dict[str, Any]:
    """The request options that default from ``slicing``, as JSON values (tile 0: None, from the model)."""
    defaults: dict[str, Any] = {}
    for knob in KNOBS:
        if knob.option is None:
            continue
        value = getattr(slicing, knob.setting)
        if isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, tuple):
            value = list(value)
        elif knob.zero_means_auto and value == 0:
            value = None
        defaults[knob.option] = value
    return defaults


def coerce_enum(settings: object, name: str, parse: Callable[[str], enum.Enum]) -> None:
    """Replace a setting given by name (``"nmm"``) with its enum member; an unknown name stays for the check."""
    value = getattr(settings, name)
    if isinstance(value, str) and not isinstance(value, enum.Enum):
        with contextlib.suppress(ValueError):
            object.__setattr__(settings, name, parse(value.strip().lower()))

"""Model profiles: per-model server defaults for small-object mode, kept in a JSON file.

A profile is what ``specks tune`` writes and what ``serve``, ``eval`` and ``predict`` read::

    {
      "specks_profile": 1,
      "slicing":  {"mode": "on", "tile_scale": 1.5, "scales": [1.0], "flip": true, ...},
      "layout": "yolox",                                   (optional)
      "preprocessing": {"channel_order": "bgr", ...},      (optional)
      "input_hw": [640, 640],                              (optional)
      "conf": {"person": 0.3, "car": 0.6, "*": 0.25},      (optional)
      "regions": [{"points": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]], "units": "fraction"}],  (optional)
      "region_anchor": "bottom_center",                    (optional)
      "metadata": {"dataset": "...", "held_out": {...}}    (optional, informational)
    }

``slicing`` may name any of ``PROFILE_SLICING_FIELDS`` (a subset of ``knobs.SlicingSettings``);
the fields it leaves out keep the server's setting. ``conf`` (one threshold, or per class),
``regions`` and ``region_anchor`` are a fixed camera's confidence and regions of interest, checked
as a request's are (``options.DetectOptions``); a request's own replace them. Unknown fields are
refused, at every level, with a message naming the file and the field.

Precedence of a small-object setting, highest first: the request's option, then the model's
profile, then the ``SPECKS_*`` environment, then Specks' built-in default.

Which profile a model gets: ``--profile`` / ``SPECKS_PROFILE`` when given, else
``<model file>.specks.json`` beside the model file when there is one, else none.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.knobs import DEFAULT_CONF, KNOBS, SlicingSettings
from ..core.options import MODEL_DEFAULTS, ModelDefaults, parse_detect_options
from ..core.postprocess import OutputLayout
from ..core.preprocess import ChannelOrder, Placement, Preprocessing
from ..core.regions import NO_REGIONS, RegionSet
from ..errors import ConfigError, InvalidFieldError
from .overrides import NO_OVERRIDES, ModelOverrides

PROFILE_VERSION = 1
PROFILE_SUFFIX = ".specks.json"
TOP_LEVEL_FIELDS = (
    "specks_profile", "slicing", "layout", "preprocessing", "input_hw", "conf", "regions", "region_anchor",
    "metadata",
)  # fmt: skip
# SlicingSettings fields a profile may set: all but the server limits (max_tiles, max_tile_input_px,
# max_input_pixels_per_request), which stay with the server (``core.knobs.KNOBS``, ``per_model``).
PROFILE_SLICING_FIELDS = tuple(knob.setting for knob in KNOBS if knob.per_model)
PREPROCESSING_FIELDS = tuple(f.name for f in dataclasses.fields(Preprocessing))
_KNOBS_BY_SETTING = {knob.setting: knob for knob in KNOBS}


@dataclass(frozen=True)
class ModelProfile:
    """A model's small-object defaults and declared facts, as read from (or written to) a file.

    slicing:   SlicingSettings fields the profile sets, by name (values already checked).
    overrides: layout / preprocessing / input size declared for the model.
    defaults:  the model's default confidence, regions of interest and anchor (a fixed camera's).
    metadata:  what ``specks tune`` measured (free-form JSON object, shown, never acted on).
    source:    the file it was read from (None for a profile built in memory).
    """

    slicing: Mapping[str, Any] = field(default_factory=dict)
    overrides: ModelOverrides = NO_OVERRIDES
    metadata: Mapping[str, Any] = field(default_factory=dict)
    source: Path | None = None
    defaults: ModelDefaults = MODEL_DEFAULTS

    @property
    def model_defaults(self) -> ModelDefaults:
        return self.defaults

    def apply(self, base: SlicingSettings) -> SlicingSettings:
        """``base`` (the server's settings) with this profile's fields in their place."""
        return dataclasses.replace(base, **self.slicing)

    def describe(self) -> dict[str, Any]:
        """For ``GET /model`` and ``specks models``: the file's name only, never a server path."""
        return {
            "file": self.source.name if self.source is not None else None,
            "slicing": slicing_to_json(self.slicing),
            **overrides_to_json(self.overrides),
            **defaults_to_json(self.defaults),
            "metadata": dict(self.metadata),
        }

    def to_json(self) -> dict[str, Any]:
        """The profile file's content."""
        body: dict[str, Any] = {"specks_profile": PROFILE_VERSION, "slicing": slicing_to_json(self.slicing)}
        body.update(overrides_to_json(self.overrides))
        body.update(defaults_to_json(self.defaults))
        if self.metadata:
            body["metadata"] = dict(self.metadata)
        return body


# -- reading -------------------------------------------------------------------------------------
def load_profile(path: Path) -> ModelProfile:
    """Read and check a profile file (ConfigError naming the file and the field on any problem)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"model profile {path} cannot be read ({exc.strerror})") from exc
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"model profile {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from exc
    return parse_profile(body, source=path)


def parse_profile(body: object, *, source: Path | None = None) -> ModelProfile:
    """A profile from its parsed JSON; every field checked, unknown ones refused."""
    where = f"model profile {source}" if source is not None else "model profile"
    if not isinstance(body, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(body).__name__}")
    _refuse_unknown(body, TOP_LEVEL_FIELDS, where)
    version = body.get("specks_profile", PROFILE_VERSION)
    if version != PROFILE_VERSION:
        raise ConfigError(f"{where}: 'specks_profile' must be {PROFILE_VERSION}, got {version!r}")
    slicing = parse_slicing(body.get("slicing", {}), where)
    overrides = ModelOverrides(
        layout=_parse_layout(body.get("layout"), where),
        preprocessing=_parse_preprocessing(body.get("preprocessing"), where),
        input_hw=_parse_input_hw(body.get("input_hw"), where),
    )
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ConfigError(f"{where}: 'metadata' must be a JSON object, got {type(metadata).__name__}")
    defaults = parse_model_defaults(body, where)
    return ModelProfile(slicing, overrides, metadata, source, defaults)


def parse_model_defaults(body: Mapping[str, Any], where: str) -> ModelDefaults:
    """A profile's conf, regions and anchor, checked exactly as a request's (ConfigError naming the file)."""
    given = {name: body[name] for name in ("conf", "regions", "region_anchor") if body.get(name) is not None}
    if not given:
        return MODEL_DEFAULTS
    try:
        options = parse_detect_options(given)
    except InvalidFieldError as exc:
        raise ConfigError(f"{where}: {exc.message}") from exc
    regions = RegionSet(options.region_list() or (), options.region_anchor or NO_REGIONS.anchor)
    return ModelDefaults(DEFAULT_CONF if options.conf is None else options.conf, regions)


def parse_slicing(raw: object, where: str) -> dict[str, Any]:
    """Slicing fields by name, each checked by SlicingSettings itself (so the ranges are the server's)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: 'slicing' must be a JSON object, got {type(raw).__name__}")
    _refuse_unknown(raw, PROFILE_SLICING_FIELDS, f"{where}: 'slicing'")
    fields_given: dict[str, Any] = {name: _slicing_value(name, value, where) for name, value in raw.items()}
    try:
        checked = dataclasses.replace(SlicingSettings(), **fields_given)
    except ConfigError as exc:
        raise ConfigError(f"{where}: 'slicing': {exc.message}") from exc
    return {name: getattr(checked, name) for name in fields_given}


def _slicing_value(name: str, value: object, where: str) -> object:
    """One slicing field's JSON value in the type SlicingSettings takes (enums stay strings for its check)."""
    label = f"{where}: 'slicing.{name}'"
    kind = _KNOBS_BY_SETTING[name].kind
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{label} must be true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{label} must be a whole number, got {value!r}")
        return value
    if kind is float:
        return _number(value, label)
    if kind is tuple:
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{label} must be a non-empty list of numbers, got {value!r}")
        return tuple(_number(v, label) for v in value)
    if not isinstance(value, str):  # an enum: mode, merge, merge_metric
        raise ConfigError(f"{label} must be a string, got {value!r}")
    return value


def _number(value: object, label: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{label} must be a number, got {value!r}")
    return float(value)


def _parse_layout(raw: object, where: str) -> OutputLayout | None:
    if raw is None:
        return None
    try:
        return OutputLayout(raw)
    except ValueError as exc:
        known = ", ".join(m.value for m in OutputLayout)
        raise ConfigError(f"{where}: 'layout' must be one of {known}, got {raw!r}") from exc


def _parse_preprocessing(raw: object, where: str) -> Preprocessing | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: 'preprocessing' must be a JSON object, got {type(raw).__name__}")
    _refuse_unknown(raw, PREPROCESSING_FIELDS, f"{where}: 'preprocessing'")
    base = Preprocessing()
    try:
        return Preprocessing(
            channel_order=ChannelOrder(raw.get("channel_order", base.channel_order.value)),
            value_scale=_number(raw.get("value_scale", base.value_scale), f"{where}: 'preprocessing.value_scale'"),
            pad_value=int(_number(raw.get("pad_value", base.pad_value), f"{where}: 'preprocessing.pad_value'")),
            placement=Placement(raw.get("placement", base.placement.value)),
        )
    except ValueError as exc:  # an unknown channel order or placement
        raise ConfigError(
            f"{where}: 'preprocessing': channel_order must be rgb or bgr and placement center or top_left ({exc})"
        ) from exc
    except ConfigError as exc:
        raise ConfigError(f"{where}: 'preprocessing': {exc.message}") from exc


def _parse_input_hw(raw: object, where: str) -> tuple[int, int] | None:
    if raw is None:
        return None
    if not (isinstance(raw, list) and len(raw) == 2 and all(isinstance(v, int) and v > 0 for v in raw)):
        raise ConfigError(f"{where}: 'input_hw' must be [height, width] in positive pixels, got {raw!r}")
    return raw[0], raw[1]


def _refuse_unknown(raw: Mapping[str, object], known: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(known)}")


# -- writing -------------------------------------------------------------------------------------
def slicing_to_json(slicing: Mapping[str, Any]) -> dict[str, Any]:
    """Slicing fields as JSON values (enums by value, scales as a list), in SlicingSettings' order."""
    shown: dict[str, Any] = {}
    for name in PROFILE_SLICING_FIELDS:
        if name in slicing:
            value = slicing[name]
            shown[name] = value.value if isinstance(value, enum.Enum) else list(value) if name == "scales" else value
    return shown


def overrides_to_json(overrides: ModelOverrides) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if overrides.layout is not None:
        body["layout"] = overrides.layout.value
    if overrides.preprocessing is not None:
        body["preprocessing"] = overrides.preprocessing.to_dict()
    if overrides.input_hw is not None:
        body["input_hw"] = list(overrides.input_hw)
    return body


def defaults_to_json(defaults: ModelDefaults) -> dict[str, Any]:
    """A profile's conf and regions as its file holds them; nothing for what it leaves at Specks' own."""
    body: dict[str, Any] = {} if defaults.conf == DEFAULT_CONF else {"conf": defaults.conf}
    return body | regions_to_json(defaults.regions)


def regions_to_json(regions: RegionSet) -> dict[str, Any]:
    """A profile's regions as its file holds them; nothing when it has none."""
    if regions == NO_REGIONS:
        return {}
    return {"regions": [r.to_json() for r in regions.regions], "region_anchor": regions.anchor.value}


def save_profile(profile: ModelProfile, path: Path) -> None:
    """Write ``profile`` as indented JSON (checked first: what is written always loads)."""
    body = profile.to_json()
    parse_profile(body, source=path)
    try:
        path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the model profile {path} ({exc.strerror})") from exc


def settings_of(slicing: SlicingSettings) -> dict[str, Any]:
    """Every profile field of a SlicingSettings, by name (what ``specks tune`` writes)."""
    return {name: getattr(slicing, name) for name in PROFILE_SLICING_FIELDS}


# -- finding -------------------------------------------------------------------------------------
def sidecar_path(model_spec: str | None) -> Path | None:
    """``<model file>.specks.json`` for a model given as a file; None for the embedded or named models."""
    if model_spec is None or not Path(model_spec).suffix:
        return None
    return Path(model_spec).expanduser().with_name(Path(model_spec).name + PROFILE_SUFFIX)


def find_profile(model_spec: str | None, explicit: str | None) -> ModelProfile | None:
    """The profile a model gets: the explicit one (``--profile`` / SPECKS_PROFILE), else its sidecar file."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"model profile not found: {path} (from --profile or SPECKS_PROFILE)")
        return load_profile(path)
    sidecar = sidecar_path(model_spec)
    if sidecar is not None and sidecar.is_file():
        return load_profile(sidecar)
    return None

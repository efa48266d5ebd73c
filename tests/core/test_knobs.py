"""The knob table (``core.knobs.KNOBS``): every server default, its request option, its range, its
environment variable and its profile key come from one entry, and they agree with each other."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import pytest

from specks.config import Settings
from specks.core.knobs import KNOBS, MAX_PASS_SCALES, Knob, Range, SlicingSettings, request_defaults_of
from specks.core.options import DetectOptions, parse_detect_options
from specks.errors import ConfigError, InvalidFieldError
from specks.models.profiles import PROFILE_SLICING_FIELDS, parse_profile

# A value each knob takes other than its default, as SPECKS_<env> text and as the setting.
OTHER_VALUES: dict[str, tuple[str, Any]] = {
    "mode": ("on", "on"),
    "tile_px": ("800", 800),
    "tile_scale": ("1.5", 1.5),
    "max_tile_input_px": ("1280", 1280),
    "overlap_ratio": ("0.3", 0.3),
    "full_image_pass": ("off", False),
    "merge": ("wbf", "wbf"),
    "merge_metric": ("ios", "ios"),
    "merge_threshold": ("0.6", 0.6),
    "max_tiles": ("50", 50),
    "max_input_pixels_per_request": ("1000000", 1_000_000),
    "iou_threshold": ("0.7", 0.7),
    "multi_label": ("false", False),
    "scales": ("1,1.5", (1.0, 1.5)),
    "flip": ("on", True),
    "soft_nms": ("yes", True),
}


def json_value(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def test_every_setting_is_one_knob_in_its_order() -> None:
    assert [knob.setting for knob in KNOBS] == [f.name for f in dataclasses.fields(SlicingSettings)]
    assert set(OTHER_VALUES) == {knob.setting for knob in KNOBS}


@pytest.mark.parametrize("knob", KNOBS, ids=lambda knob: knob.setting)
def test_each_variable_sets_its_setting(knob: Knob) -> None:
    text, expected = OTHER_VALUES[knob.setting]
    value = getattr(Settings.from_env({f"SPECKS_{knob.env}": text}).slicing, knob.setting)
    assert json_value(value) == expected


@pytest.mark.parametrize("knob", [k for k in KNOBS if k.option], ids=lambda knob: knob.setting)
def test_a_server_default_is_a_value_a_request_could_send(knob: Knob) -> None:
    _, other = OTHER_VALUES[knob.setting]
    settings = SlicingSettings(**{knob.setting: other})
    defaults = request_defaults_of(settings)
    assert knob.option in DetectOptions.model_fields
    assert getattr(parse_detect_options({knob.option: defaults[knob.option]}), knob.option) is not None


@pytest.mark.parametrize("knob", [k for k in KNOBS if k.values is not None], ids=lambda knob: knob.setting)
def test_a_value_past_the_range_is_refused_by_the_settings_and_by_a_request(knob: Knob) -> None:
    assert knob.values is not None
    too_low = knob.values.low - 1 if knob.kind is int else knob.values.low - 0.01
    past = (too_low,) if knob.kind is tuple else too_low
    with pytest.raises(ConfigError, match=f"{knob.setting} must be"):
        SlicingSettings(**{knob.setting: past})
    if knob.option is not None and not (knob.zero_means_auto and too_low == 0):
        request_value = list(past) if isinstance(past, tuple) else past
        with pytest.raises(InvalidFieldError):
            parse_detect_options({knob.option: request_value})


def test_a_profile_may_set_every_knob_but_the_server_limits() -> None:
    limits = {"max_tile_input_px", "max_tiles", "max_input_pixels_per_request"}
    assert set(PROFILE_SLICING_FIELDS) == {knob.setting for knob in KNOBS} - limits
    with pytest.raises(ConfigError, match="unknown field"):
        parse_profile({"slicing": {"max_tiles": 10}})
    profile = parse_profile({"slicing": {"merge": "wbf", "scales": [1, 1.5], "flip": True}})
    assert profile.apply(SlicingSettings()).scales == (1.0, 1.5)


@pytest.mark.parametrize(
    ("setting", "value", "words"),
    [
        ("tile_px", 10, "tile_px must be 0 or 64..4096, got 10"),
        ("overlap_ratio", 0.9, "overlap_ratio must be within 0..0.75, got 0.9"),
        ("merge", "max", "merge must be nms, nmm or wbf, got 'max'"),
        ("flip", "yes", "flip must be true or false"),
        ("scales", (1.0,) * (MAX_PASS_SCALES + 1), f"scales must be 1..{MAX_PASS_SCALES} factors within 0.25..4"),
        ("max_tiles", 0, "max_tiles must be >= 1, got 0"),
    ],
)
def test_refusals_say_what_the_setting_takes(setting: str, value: Any, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SlicingSettings(**{setting: value})
    assert words in caught.value.message


def test_a_range_is_closed_and_takes_numbers_only() -> None:
    unit = Range(0.0, 1.0)
    assert unit.holds(0) and unit.holds(1.0) and not unit.holds(1.01)
    assert not unit.holds(True) and not unit.holds("0.5")
    assert Range(1).holds(10**12) and Range(1).words() == ">= 1"


def test_get_model_defaults_follow_the_settings() -> None:
    defaults = request_defaults_of(SlicingSettings(tile_px=0, scales=(1.0, 1.25)))
    assert defaults["tile"] is None  # 0: from the model
    assert defaults["scales"] == [1.0, 1.25] and defaults["slice"] == "auto"
    assert set(defaults) == {knob.option for knob in KNOBS if knob.option}

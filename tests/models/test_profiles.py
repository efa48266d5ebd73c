"""Model profiles: reading, checking, writing, finding, and their place in the precedence order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fakes import FakeInfo, FakeModel
from specks.config import Settings
from specks.core.knobs import SlicingSettings
from specks.core.options import DetectOptions
from specks.core.overlap import MergeStrategy
from specks.core.pipeline import Detector
from specks.core.planning import plan_request
from specks.core.postprocess import OutputLayout
from specks.core.preprocess import ChannelOrder, Placement
from specks.core.regions import Region, RegionAnchor, RegionSet, RegionUnits
from specks.core.slicing import SliceMode
from specks.core.types import ImageSize
from specks.errors import ConfigError
from specks.models.overrides import ModelOverrides
from specks.models.profiles import (
    ModelProfile,
    find_profile,
    load_profile,
    parse_profile,
    save_profile,
    settings_of,
    sidecar_path,
)


def write(path: Path, body: Any) -> Path:
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


def test_a_full_profile_loads_with_enums_tuples_and_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path / "p.json",
        {
            "specks_profile": 1,
            "slicing": {"mode": "on", "merge": "wbf", "merge_threshold": 0.55, "scales": [1, 1.5], "flip": True},
            "layout": "yolox",
            "preprocessing": {"channel_order": "bgr", "value_scale": 1.0, "placement": "top_left"},
            "input_hw": [640, 640],
            "metadata": {"dataset": "mine"},
        },
    )
    profile = load_profile(path)
    assert profile.slicing == {
        "mode": SliceMode.ON,
        "merge": MergeStrategy.WBF,
        "merge_threshold": 0.55,
        "scales": (1.0, 1.5),
        "flip": True,
    }
    assert profile.overrides.layout is OutputLayout.YOLOX
    assert profile.overrides.preprocessing is not None
    assert profile.overrides.preprocessing.channel_order is ChannelOrder.BGR
    assert profile.overrides.preprocessing.placement is Placement.TOP_LEFT
    assert profile.overrides.preprocessing.pad_value == 114  # unset fields keep Preprocessing's default
    assert profile.overrides.input_hw == (640, 640)
    assert profile.metadata == {"dataset": "mine"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"slicing": {"flip": True}, "colour": 1}, "unknown field(s) colour"),
        ({"slicing": {"tile_size": 640}}, "'slicing': unknown field(s) tile_size"),
        ({"slicing": {"max_tiles": 9}}, "'slicing': unknown field(s) max_tiles"),
        ({"slicing": {"flip": "yes"}}, "'slicing.flip' must be true or false"),
        ({"slicing": {"tile_px": 10.5}}, "'slicing.tile_px' must be a whole number"),
        ({"slicing": {"tile_scale": 9}}, "tile_scale must be within 0.25..4"),
        ({"slicing": {"merge": "average"}}, "merge must be"),
        ({"slicing": {"scales": []}}, "'slicing.scales' must be a non-empty list"),
        ({"slicing": {"iou_threshold": "0.5"}}, "'slicing.iou_threshold' must be a number"),
        ({"layout": "yolov9"}, "'layout' must be one of"),
        ({"preprocessing": {"channel_order": "bgr", "gamma": 2}}, "'preprocessing': unknown field(s) gamma"),
        ({"preprocessing": {"channel_order": "gbr"}}, "channel_order must be rgb or bgr"),
        ({"preprocessing": {"pad_value": 300}}, "pad_value must be a pixel value"),
        ({"input_hw": [640]}, "'input_hw' must be [height, width]"),
        ({"metadata": []}, "'metadata' must be a JSON object"),
        ({"specks_profile": 2}, "'specks_profile' must be 1"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_a_bad_profile_is_refused_naming_the_file_and_the_field(tmp_path: Path, body: Any, message: str) -> None:
    path = write(tmp_path / "bad.specks.json", body)
    with pytest.raises(ConfigError) as caught:
        load_profile(path)
    assert str(path) in caught.value.message
    assert message in caught.value.message


def test_a_profile_that_is_not_json_says_where(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text("{slicing: on}", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"is not valid JSON.*line 1"):
        load_profile(path)


def test_what_is_saved_loads_back_the_same(tmp_path: Path) -> None:
    slicing = SlicingSettings(mode=SliceMode.ON, tile_scale=1.5, scales=(1.0, 1.25), flip=True, soft_nms=True)
    profile = ModelProfile(
        slicing=settings_of(slicing),
        overrides=ModelOverrides(layout=OutputLayout.YOLOV5, input_hw=(512, 512)),
        metadata={"held_out": {"ap50": 0.4}},
    )
    path = tmp_path / "model.onnx.specks.json"
    save_profile(profile, path)
    loaded = load_profile(path)
    assert loaded.apply(SlicingSettings()) == slicing
    assert loaded.overrides == profile.overrides
    assert loaded.metadata == profile.metadata
    assert json.loads(path.read_text())["slicing"]["mode"] == "on"


def test_describe_shows_the_file_name_and_never_its_directory(tmp_path: Path) -> None:
    path = write(tmp_path / "cams.specks.json", {})
    shown = json.dumps(load_profile(path).describe())
    assert '"file": "cams.specks.json"' in shown
    assert str(tmp_path) not in shown


def test_precedence_request_over_profile_over_environment_over_built_in() -> None:
    env = Settings.from_env({"SPECKS_FLIP": "on", "SPECKS_OVERLAP": "0.3", "SPECKS_SLICE": "on"}).slicing
    profile = parse_profile({"slicing": {"flip": False, "tile_scale": 1.5}})
    effective = profile.apply(env)
    assert effective.flip is False  # profile over environment
    assert effective.overlap_ratio == 0.3  # environment where the profile says nothing
    assert effective.tile_scale == 1.5
    assert effective.merge is MergeStrategy.NMS  # built-in where neither does

    class Model:
        input_hw = (640, 640)
        dynamic_hw = True
        stride = 32
        names = ("person",)

    image = ImageSize(2000, 1500)
    assert [p.flip for p in plan_request(Model(), effective, DetectOptions(), image).passes] == [False]
    with_request = plan_request(Model(), effective, DetectOptions(flip=True), image)  # request over profile
    assert [p.flip for p in with_request.passes] == [False, True]


def test_the_sidecar_beside_a_model_file_is_found_and_an_explicit_profile_wins(tmp_path: Path) -> None:
    model = tmp_path / "cams.onnx"
    assert find_profile(str(model), None) is None  # no sidecar: no profile
    sidecar = write(tmp_path / "cams.onnx.specks.json", {"slicing": {"flip": True}})
    assert sidecar_path(str(model)) == sidecar
    found = find_profile(str(model), None)
    assert found is not None and found.slicing == {"flip": True}
    explicit = write(tmp_path / "other.json", {"slicing": {"soft_nms": True}})
    chosen = find_profile(str(model), str(explicit))
    assert chosen is not None and chosen.slicing == {"soft_nms": True}


@pytest.mark.parametrize("spec", [None, "default", "yolov3-tiny"])
def test_embedded_and_named_models_have_no_sidecar(spec: str | None) -> None:
    assert sidecar_path(spec) is None


def test_a_missing_explicit_profile_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model profile not found"):
        find_profile(None, str(tmp_path / "nope.json"))


def test_specks_profile_is_read_from_the_environment() -> None:
    assert Settings.from_env({"SPECKS_PROFILE": "/x/p.json"}).profile == "/x/p.json"
    assert Settings.from_env({}).profile is None


def test_profile_overrides_replace_only_the_fields_they_set() -> None:
    own = ModelOverrides(input_hw=(640, 640))
    merged = own.replaced_by(ModelOverrides(layout=OutputLayout.YOLOX))
    assert merged == ModelOverrides(layout=OutputLayout.YOLOX, input_hw=(640, 640))


def test_a_profile_s_regions_load_save_and_show(tmp_path: Path) -> None:
    road = {"points": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]], "units": "fraction", "exclude": False}
    path = write(tmp_path / "cam.specks.json", {"regions": [road], "region_anchor": "center"})
    profile = load_profile(path)
    assert profile.defaults.regions == RegionSet(
        (Region(((0, 0.5), (1, 0.5), (1, 1), (0, 1)), RegionUnits.FRACTION),), RegionAnchor.CENTER
    )
    assert profile.describe()["regions"] == [road] and profile.describe()["region_anchor"] == "center"
    saved = tmp_path / "again.specks.json"
    save_profile(profile, saved)
    assert load_profile(saved).defaults == profile.defaults
    assert "regions" not in ModelProfile().to_json()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"regions": [{"points": [[0, 0], [1, 1], [1, 0], [0, 1]]}]}, "'regions[0]' crosses itself"),
        ({"regions": {"points": []}}, "'regions' should be"),
        ({"region_anchor": "top"}, "'region_anchor' should be"),
    ],
)
def test_bad_profile_regions_are_refused_naming_the_file(tmp_path: Path, body: Any, message: str) -> None:
    path = write(tmp_path / "cam.specks.json", body)
    with pytest.raises(ConfigError) as caught:
        load_profile(path)
    assert str(path) in caught.value.message and message in caught.value.message


def test_a_profile_s_conf_is_the_model_s_default_and_a_request_s_own_wins(tmp_path: Path) -> None:
    per_class = {"person": 0.6, "*": 0.3}
    profile = load_profile(write(tmp_path / "cam.specks.json", {"conf": per_class}))
    assert profile.defaults.conf == per_class and profile.describe()["conf"] == per_class
    model = FakeInfo(names=("person", "car"))
    image = ImageSize(640, 480)
    omitted = plan_request(model, SlicingSettings(), DetectOptions(), image, model_defaults=profile.model_defaults)
    assert (omitted.postprocess.conf_threshold, omitted.postprocess.class_conf) == (0.3, (0.6, 0.3))
    own = plan_request(model, SlicingSettings(), DetectOptions(conf=0.5), image, model_defaults=profile.model_defaults)
    assert (own.postprocess.conf_threshold, own.postprocess.class_conf) == (0.5, None)
    saved = tmp_path / "again.specks.json"
    save_profile(profile, saved)
    assert json.loads(saved.read_text())["conf"] == per_class
    assert "conf" not in ModelProfile().to_json()  # Specks' own default is not written out
    unknown = load_profile(write(tmp_path / "bad.specks.json", {"conf": {"unicorn": 0.5}}))
    with pytest.raises(ConfigError, match="model profile: 'conf': unknown class name 'unicorn'"):
        Detector(FakeModel(model), profile=unknown)  # when the model loads, not on every request

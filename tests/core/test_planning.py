"""Request planning without a model file: input size, tile plans, the tile budget, thresholds, classes."""

from __future__ import annotations

from typing import Any

import pytest

from fakes import FakeInfo
from specks.core.knobs import SlicingSettings
from specks.core.names import COCO80_NAMES as COCO80
from specks.core.options import DetectOptions
from specks.core.overlap import MatchMetric, MergeStrategy
from specks.core.planning import plan_request, postprocess_params, resolve_class_ids, resolve_input_hw, tile_input_hw
from specks.core.preprocess import plan_letterbox
from specks.core.slicing import SliceMode
from specks.core.types import ImageSize
from specks.errors import InvalidFieldError, PayloadTooLargeError, TooManyInputPixelsError, TooManyTilesError

NMS, NMM = MergeStrategy.NMS, MergeStrategy.NMM
IOU, IOS = MatchMetric.IOU, MatchMetric.IOS


# The geometry planning reads from a model (``planning.ModelGeometry``): 640x640, stride 32, COCO's classes.
STATIC = FakeInfo(names=COCO80, input_hw=(640, 640), dynamic_hw=False)
DYNAMIC = FakeInfo(names=COCO80, input_hw=(640, 640), dynamic_hw=True)


# -- plan resolution ---------------------------------------------------------------------------------

# Each row: model, server SlicingSettings, request options, image size, expected plan fields (None: no plan).
PLAN_CASES = {
    "slice false": (STATIC, {}, {"slice": False}, (2000, 1500), None),
    "server on, request false": (STATIC, {"mode": SliceMode.ON}, {"slice": False}, (2000, 1500), None),
    "auto, 800x600 on a 640 model": (STATIC, {}, {}, (800, 600), None),
    "auto, longer side just under 2 inputs": (STATIC, {}, {}, (1279, 900), None),
    "auto, longer side 2 inputs": (STATIC, {}, {}, (1280, 900), {"tile_px": 640}),
    "auto, portrait 2 inputs tall": (STATIC, {}, {}, (600, 1500), {"tile_px": 640}),
    "auto, 2000x1500: server defaults": (
        STATIC,
        {},
        {},
        (2000, 1500),
        {
            "tile_px": 640,
            "overlap_ratio": 0.2,
            "full_image_pass": True,
            "merge": NMS,
            "merge_metric": IOU,
            "merge_threshold": 0.5,
        },
    ),
    "true on a small image": (STATIC, {}, {"slice": True}, (320, 240), {"tile_px": 640}),
    "server off, request auto": (STATIC, {"mode": SliceMode.OFF}, {}, (2000, 1500), None),
    "server off, request true": (STATIC, {"mode": SliceMode.OFF}, {"slice": True}, (320, 240), {"tile_px": 640}),
    "server on, request auto, small image": (STATIC, {"mode": SliceMode.ON}, {}, (320, 240), {"tile_px": 640}),
    "server defaults other than the built-in ones": (
        STATIC,
        {
            "tile_px": 800,
            "overlap_ratio": 0.1,
            "full_image_pass": False,
            "merge": NMM,
            "merge_metric": IOS,
            "merge_threshold": 0.6,
            "tile_scale": 1.5,
        },
        {"slice": True},
        (2000, 1500),
        {
            "tile_px": 800,
            "tile_scale": 1.5,
            "overlap_ratio": 0.1,
            "full_image_pass": False,
            "merge": NMM,
            "merge_metric": IOS,
            "merge_threshold": 0.6,
        },
    ),
    "request overrides beat server defaults": (
        STATIC,
        {
            "tile_px": 800,
            "overlap_ratio": 0.1,
            "full_image_pass": True,
            "merge": NMS,
            "merge_metric": IOU,
            "merge_threshold": 0.6,
            "tile_scale": 1.5,
        },
        {
            "slice": True,
            "tile": 1024,
            "overlap": 0.4,
            "full_image": False,
            "merge": "nmm",
            "merge_metric": "ios",
            "merge_threshold": 0.3,
            "tile_scale": 2.0,
        },
        (2000, 1500),
        {
            "tile_px": 1024,
            "tile_scale": 2.0,
            "overlap_ratio": 0.4,
            "full_image_pass": False,
            "merge": NMM,
            "merge_metric": IOS,
            "merge_threshold": 0.3,
        },
    ),
    "request zero / false values beat server defaults": (
        STATIC,
        {"overlap_ratio": 0.3, "full_image_pass": True, "merge_threshold": 0.6},
        {"slice": True, "overlap": 0.0, "full_image": False, "merge_threshold": 0.0},
        (2000, 1500),
        {"overlap_ratio": 0.0, "full_image_pass": False, "merge_threshold": 0.0},
    ),
    "fixed-size model: request tile_scale shrinks the default tile": (
        STATIC,
        {},
        {"slice": True, "tile_scale": 2.0},
        (2000, 1500),
        {"tile_px": 320, "tile_scale": 2.0},
    ),
    "fixed-size model: server tile_scale (dynamic models only) keeps native tiles": (
        STATIC,
        {"tile_scale": 2.0},
        {"slice": True},
        (2000, 1500),
        {"tile_px": 640},
    ),
    "dynamic model: max_tile_input_px / tile_scale": (
        DYNAMIC,
        {},
        {"slice": True},
        (2000, 1500),
        {"tile_px": 2560, "tile_scale": 1.0},
    ),
    "dynamic model, auto on 2000x1500": (DYNAMIC, {}, {}, (2000, 1500), {"tile_px": 2560}),
    "dynamic model, auto on 800x600": (DYNAMIC, {}, {}, (800, 600), None),
    "dynamic model, auto with imgsz 1280 on 2000x1500": (DYNAMIC, {}, {"imgsz": 1280}, (2000, 1500), None),
    "dynamic model, request tile_scale": (
        DYNAMIC,
        {},
        {"slice": True, "tile_scale": 2.0},
        (2000, 1500),
        {"tile_px": 1280, "tile_scale": 2.0},
    ),
    "dynamic model, server tile_scale": (
        DYNAMIC,
        {"tile_scale": 2.0},
        {"slice": True},
        (2000, 1500),
        {"tile_px": 1280, "tile_scale": 2.0},
    ),
    "dynamic model, server max_tile_input_px": (
        DYNAMIC,
        {"max_tile_input_px": 1280},
        {"slice": True},
        (2000, 1500),
        {"tile_px": 1280},
    ),
    "dynamic model, server tile_px": (
        DYNAMIC,
        {"tile_px": 900},
        {"slice": True},
        (2000, 1500),
        {"tile_px": 900},
    ),
    "dynamic model, request tile": (
        DYNAMIC,
        {},
        {"slice": True, "tile": 700},
        (2000, 1500),
        {"tile_px": 700},
    ),
}


@pytest.mark.parametrize(
    ("model", "settings", "options", "image_wh", "expected"), list(PLAN_CASES.values()), ids=list(PLAN_CASES)
)
def test_plan_slicing(
    model: FakeInfo,
    settings: dict[str, Any],
    options: dict[str, Any],
    image_wh: tuple[int, int],
    expected: dict[str, Any] | None,
) -> None:
    plan = plan_request(model, SlicingSettings(**settings), DetectOptions(**options), ImageSize(*image_wh)).slicing
    if expected is None:
        assert plan is None
    else:
        assert plan is not None
        how = plan.merge
        merge = {"merge": how.strategy, "merge_metric": how.metric, "merge_threshold": how.threshold}
        assert {name: merge[name] if name in merge else getattr(plan, name) for name in expected} == expected


# Dynamic models: each side * tile_scale, rounded up to the stride (32), capped at max_tile_input_px.
@pytest.mark.parametrize(
    ("model", "settings", "tile_wh", "tile_scale", "expected_hw"),
    [
        (DYNAMIC, {}, (2000, 1500), 1.25, (1888, 2528)),  # 1875 -> 1888, 2500 -> 2528
        (DYNAMIC, {}, (2048, 2048), 1.25, (2560, 2560)),  # exactly the cap
        (DYNAMIC, {}, (640, 640), 1.25, (800, 800)),
        (DYNAMIC, {}, (100, 2000), 1.25, (2528, 128)),  # (w, h) in, (h, w) out; 125 -> 128
        (DYNAMIC, {}, (2000, 1500), 2.0, (2560, 2560)),  # 3000, 4000 capped
        (DYNAMIC, {}, (640, 480), 1.0, (480, 640)),
        (DYNAMIC, {"max_tile_input_px": 1280}, (1024, 768), 1.25, (960, 1280)),
        (DYNAMIC, {"max_tile_input_px": 1280}, (2000, 1500), 1.25, (1280, 1280)),
        (STATIC, {}, (2000, 1500), 1.25, (640, 640)),  # fixed input whatever the tile
        (STATIC, {}, (320, 200), 2.0, (640, 640)),
    ],
)
def test_tile_input_hw(
    model: FakeInfo,
    settings: dict[str, Any],
    tile_wh: tuple[int, int],
    tile_scale: float,
    expected_hw: tuple[int, int],
) -> None:
    max_tile_input_px = SlicingSettings(**settings).max_tile_input_px
    assert tile_input_hw(model, tile_wh, tile_scale, (640, 640), max_tile_input_px) == expected_hw


def test_dynamic_default_plan_is_one_native_tile() -> None:
    resolved = plan_request(DYNAMIC, SlicingSettings(), DetectOptions(slice=True), ImageSize(2000, 1500)).slicing
    assert resolved is not None and resolved.tile_px == 2560
    assert resolved.tile_count == 1
    assert not resolved.runs_full_image  # one tile already covers the whole image
    input_hw = resolved.tile_input_hw
    assert input_hw == (1504, 2016)  # rounded up to the stride
    letterbox_plan = plan_letterbox((2000, 1500), input_hw, stride=32, minimal_padding=True)
    assert (letterbox_plan.scale, letterbox_plan.content_wh) == (1.0, (2000, 1500))  # padded, not resampled


# -- the tile budget ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_tiles", "image_wh", "tile", "overlap", "expected"),
    [
        (12, (2000, 1500), 640, 0.2, 12),
        (11, (2000, 1500), 640, 0.2, TooManyTilesError),
        (4, (2000, 1500), 640, 0.2, TooManyTilesError),
        (4, (2000, 1500), 1024, 0.0, 4),  # x: 0, 976; y: 0, 476
        (5, (2000, 1500), 1024, 0.2, TooManyTilesError),  # step 819: x: 0, 819, 976; y: 0, 476
        (1, (640, 640), 640, 0.2, 1),
        (1, (641, 640), 640, 0.2, TooManyTilesError),
        (200, (8000, 8000), 640, 0.2, TooManyTilesError),  # 16 x 16 = 256
        (256, (8000, 8000), 640, 0.2, 256),
    ],
)
def test_check_tile_budget(
    max_tiles: int,
    image_wh: tuple[int, int],
    tile: int,
    overlap: float,
    expected: int | type[Exception],
) -> None:
    options = DetectOptions(slice=True, tile=tile, overlap=overlap)
    settings = SlicingSettings(max_tiles=max_tiles)
    if isinstance(expected, int):
        assert plan_request(STATIC, settings, options, ImageSize(*image_wh)).tile_count == expected
    else:
        with pytest.raises(expected):
            plan_request(STATIC, settings, options, ImageSize(*image_wh))


# -- the work budget: every pass, tile, flip and full-image pass of a request together ------------------------

# 2000x1500 sliced on the fixed 640 model: 12 tiles of 640x640 plus the full image at 640x640.
FIXED_SLICED_PIXELS = 13 * 640 * 640
# The dynamic model's default plan of a 2000x1500 photo: one native tile, padded to 2016x1504.
DYNAMIC_TILE_PIXELS = 2016 * 1504


@pytest.mark.parametrize(
    ("options", "tiles"),
    [
        ({"slice": True}, 12),
        ({"slice": True, "flip": True}, 24),  # the mirrored pass runs every tile again
        ({"slice": True, "scales": [1.0, 2.0]}, 12 + 48),  # x2: 320-pixel tiles, 8 x 6
        ({"slice": True, "scales": [1.0, 2.0], "flip": True}, 2 * (12 + 48)),
    ],
)
@pytest.mark.parametrize("spare", [0, -1])
def test_max_tiles_counts_every_pass_at_its_boundary(options: dict[str, Any], tiles: int, spare: int) -> None:
    settings = SlicingSettings(max_tiles=tiles + spare)
    if spare == 0:
        assert plan_request(STATIC, settings, DetectOptions(**options), ImageSize(2000, 1500)).tile_count == tiles
        return
    with pytest.raises(TooManyTilesError) as caught:
        plan_request(STATIC, settings, DetectOptions(**options), ImageSize(2000, 1500))
    message = caught.value.message
    assert f"needs {tiles} tiles; the limit is {tiles - 1} tiles per request, every pass together" in message
    assert "(SPECKS_MAX_TILES)" in message and "a larger 'tile'" in message
    assert ("'flip': false" in message) is bool(options.get("flip"))
    assert ("fewer 'scales'" in message) is ("scales" in options)


@pytest.mark.parametrize(
    ("model", "options", "image_wh", "input_pixels"),
    [
        pytest.param(STATIC, {"slice": True}, (2000, 1500), FIXED_SLICED_PIXELS, id="tiles-and-full-image"),
        pytest.param(STATIC, {"slice": True, "full_image": False}, (2000, 1500), 12 * 640 * 640, id="tiles-only"),
        pytest.param(STATIC, {"slice": True, "flip": True}, (2000, 1500), 2 * FIXED_SLICED_PIXELS, id="flip"),
        pytest.param(DYNAMIC, {"slice": True}, (2000, 1500), DYNAMIC_TILE_PIXELS, id="one-native-tile"),
        pytest.param(STATIC, {}, (800, 600), 640 * 640, id="full-image"),
        pytest.param(DYNAMIC, {"imgsz": 4096}, (800, 600), 4096 * 4096, id="imgsz"),
        pytest.param(
            DYNAMIC, {"scales": [1.0, 1.5], "flip": True}, (800, 600), 2 * (640 * 640 + 960 * 960), id="scales-flip"
        ),
    ],
)
@pytest.mark.parametrize("spare", [0, -1])
def test_max_input_pixels_counts_every_run_at_its_boundary(
    model: FakeInfo, options: dict[str, Any], image_wh: tuple[int, int], input_pixels: int, spare: int
) -> None:
    settings = SlicingSettings(max_input_pixels_per_request=input_pixels + spare)
    if spare == 0:
        assert (
            plan_request(model, settings, DetectOptions(**options), ImageSize(*image_wh)).input_pixels == input_pixels
        )
        return
    with pytest.raises(TooManyInputPixelsError) as caught:
        plan_request(model, settings, DetectOptions(**options), ImageSize(*image_wh))
    assert isinstance(caught.value, PayloadTooLargeError) and caught.value.code == "too_many_input_pixels"
    assert f"{input_pixels / 1e6:.1f} megapixels of model input" in caught.value.message
    assert "(SPECKS_MAX_INPUT_PIXELS)" in caught.value.message


def test_the_issue_20_request_is_refused_naming_its_totals_the_limit_and_what_to_lower() -> None:
    """Four scales x flip on a 3200x3200 image, each tile enlarged to the 2560-pixel cap: 1.0 GP."""
    options = DetectOptions(slice=True, scales=[1.0, 2.0, 3.0, 4.0], flip=True)
    with pytest.raises(TooManyInputPixelsError) as caught:
        plan_request(DYNAMIC, SlicingSettings(), options, ImageSize(3200, 3200))
    assert caught.value.message == (
        "this 3200x3200 image in 8 passes (scales 1, 2, 3, 4, each also mirrored) needs 156 model runs of "
        "973.2 megapixels of model input in all; the limit is 256.0 megapixels per request, every tile and pass "
        "together (SPECKS_MAX_INPUT_PIXELS). Use fewer 'scales', 'flip': false, a larger 'tile', a smaller "
        "'tile_scale', a smaller 'overlap', 'full_image': false, a smaller 'imgsz' or a smaller image."
    )


def test_a_full_image_request_over_the_pixel_budget_is_told_to_lower_imgsz_not_the_image() -> None:
    settings = SlicingSettings(max_input_pixels_per_request=4096 * 4096 - 1)
    with pytest.raises(TooManyInputPixelsError) as caught:
        plan_request(DYNAMIC, settings, DetectOptions(imgsz=4096), ImageSize(800, 600))
    assert caught.value.message.endswith("(SPECKS_MAX_INPUT_PIXELS). Use a smaller 'imgsz'.")


# The documented requests (docs/api.md and docs/small-objects.md: options, small objects, tuned profiles,
# `specks tune`'s search) on the images they are documented for, and on images up to the 40 MP image
# limit: each fits the default budget.
TUNE_HEAVIEST = {"slice": True, "tile_scale": 2.0, "scales": [1.0, 1.5], "flip": True}
DOCUMENTED_REQUESTS = {
    "2000x1500 default, fixed": (STATIC, {}, (2000, 1500)),
    "2000x1500 default, dynamic": (DYNAMIC, {}, (2000, 1500)),
    "24 MP photo sliced by default, fixed: 96 tiles": (STATIC, {}, (6000, 4000)),
    "24 MP photo sliced by default, dynamic: 6 tiles of 2560": (DYNAMIC, {}, (6000, 4000)),
    "40 MP, long and narrow: 16 tiles of 2560": (DYNAMIC, {}, (2561, 15_618)),
    "40 MP on the fixed model: 150 tiles": (STATIC, {}, (7746, 5164)),
    "imgsz 4096, four scales, flip": (DYNAMIC, {"imgsz": 4096, "scales": [0.5, 1, 1.5, 2], "flip": True}, (4000, 3000)),
    "tune's heaviest trial on a 2000x1500 photo": (DYNAMIC, TUNE_HEAVIEST, (2000, 1500)),
    "scales [1, 1.5] on a 24 MP photo": (DYNAMIC, {"scales": [1.0, 1.5]}, (6000, 4000)),
    "tuned flip profile on a 40 MP photo": (DYNAMIC, {"flip": True}, (2561, 15_618)),
    "tuned scales [1, 1.25] profile on a 4:3 40 MP photo": (DYNAMIC, {"scales": [1.0, 1.25]}, (7302, 5477)),
    "tuned scales [1, 1.25] profile on a long 40 MP photo: 237 MP": (DYNAMIC, {"scales": [1.0, 1.25]}, (2561, 15_618)),
}


@pytest.mark.parametrize(
    ("model", "options", "image_wh"), list(DOCUMENTED_REQUESTS.values()), ids=list(DOCUMENTED_REQUESTS)
)
def test_documented_requests_fit_the_default_budget(
    model: FakeInfo, options: dict[str, Any], image_wh: tuple[int, int]
) -> None:
    plan = plan_request(model, SlicingSettings(), DetectOptions(**options), ImageSize(*image_wh))
    assert plan.input_pixels <= SlicingSettings().max_input_pixels_per_request
    assert plan.tile_count <= SlicingSettings().max_tiles


# -- thresholds, input size and classes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "sliced", "iou", "multi_label"),
    [
        ({}, False, 0.45, False),
        ({}, True, 0.6, True),
        ({"iou": 0.3}, True, 0.3, True),
        ({"multi_label": False}, True, 0.6, False),
        ({"multi_label": True, "iou": 0.7}, False, 0.7, True),
    ],
)
def test_nms_defaults_depend_on_the_mode(options, sliced, iou, multi_label) -> None:  # type: ignore[no-untyped-def]
    params = postprocess_params(COCO80, SlicingSettings(), DetectOptions(**options), sliced=sliced)
    assert params.iou_threshold == iou
    assert params.multi_label is multi_label


@pytest.mark.parametrize(
    ("model", "imgsz", "expected"),
    [
        (STATIC, None, (640, 640)),
        (STATIC, 640, (640, 640)),
        (STATIC, 1280, InvalidFieldError),
        (DYNAMIC, None, (640, 640)),
        (DYNAMIC, 1000, (1024, 1024)),  # rounded up to the stride
        (DYNAMIC, 32, (32, 32)),
    ],
)
def test_resolve_input_hw(model: FakeInfo, imgsz: int | None, expected: Any) -> None:
    if isinstance(expected, tuple):
        assert resolve_input_hw(model, imgsz) == expected
    else:
        with pytest.raises(expected):
            resolve_input_hw(model, imgsz)


@pytest.mark.parametrize(
    ("selectors", "expected"),
    [
        (["person", "car"], {0, 2}),
        (["Person", " CAR "], {0, 2}),
        (["motorbike", "tvmonitor"], {3, 62}),  # Darknet spellings
        ([0, "car"], {0, 2}),
        ([79], {79}),
        ([80], InvalidFieldError),
        ([-1], InvalidFieldError),
        (["unicorn"], InvalidFieldError),
    ],
)
def test_resolve_class_ids(selectors: list[int | str], expected: Any) -> None:
    if isinstance(expected, set):
        assert resolve_class_ids(COCO80, selectors) == frozenset(expected)
    else:
        with pytest.raises(expected) as caught:
            resolve_class_ids(COCO80, selectors)
        assert caught.value.field == "classes"


def test_the_plan_of_a_request_carries_its_filter_and_mode_thresholds() -> None:
    options = DetectOptions(conf=0.3, max_det=7, classes=["car"])
    full = plan_request(STATIC, SlicingSettings(), options, ImageSize(800, 600))
    sliced = plan_request(STATIC, SlicingSettings(), options, ImageSize(2000, 1500))
    assert full.slicing is None and full.tile_count == 0
    assert sliced.slicing is not None and sliced.tile_count == 12
    for plan in (full, sliced):
        assert (plan.postprocess.conf_threshold, plan.postprocess.max_detections) == (0.3, 7)
        assert plan.postprocess.class_ids == frozenset({2})
    assert (full.postprocess.iou_threshold, sliced.postprocess.iou_threshold) == (0.45, 0.6)


def test_an_explicit_auto_request_is_auto_even_when_the_server_default_is_off() -> None:
    settings = SlicingSettings(mode=SliceMode.OFF)
    assert plan_request(STATIC, settings, DetectOptions(), ImageSize(2000, 1500)).slicing is None
    assert plan_request(STATIC, settings, DetectOptions(slice="auto"), ImageSize(2000, 1500)).slicing is not None


# -- passes: scales and flips -----------------------------------------------------------------------


def test_one_pass_by_default() -> None:
    plan = plan_request(DYNAMIC, SlicingSettings(), DetectOptions(), ImageSize(800, 600))
    assert [(p.scale, p.flip, p.slicing) for p in plan.passes] == [(1.0, False, None)]
    assert plan.decode_input_hw == (640, 640)


def test_scales_and_flip_make_one_pass_each_and_a_mirrored_twin() -> None:
    options = DetectOptions(scales=[1.0, 1.5, 1.5], flip=True)
    plan = plan_request(DYNAMIC, SlicingSettings(), options, ImageSize(800, 600))
    assert [(p.scale, p.flip, p.input_hw) for p in plan.passes] == [
        (1.0, False, (640, 640)),
        (1.0, True, (640, 640)),
        (1.5, False, (960, 960)),
        (1.5, True, (960, 960)),
    ]
    assert plan.decode_input_hw == (960, 960)  # decoded large enough for the largest pass
    assert plan.tile_count == 0


def test_a_fixed_size_model_sees_an_enlarged_pass_through_smaller_tiles() -> None:
    plan = plan_request(STATIC, SlicingSettings(), DetectOptions(scales=[1.0, 2.0]), ImageSize(800, 600))
    native, enlarged = plan.passes
    assert native.slicing is None
    assert enlarged.slicing is not None and enlarged.slicing.tile_px == 320
    assert plan.decode_input_hw is None  # a sliced pass needs every pixel
    assert plan.tile_count == enlarged.slicing.tile_count == 9  # x: 0, 256, 480; y: 0, 256, 280


def test_sliced_passes_enlarge_their_tiles_and_server_defaults_apply() -> None:
    settings = SlicingSettings(scales=(1.0, 1.25), flip=False, soft_nms=True)
    plan = plan_request(DYNAMIC, settings, DetectOptions(slice=True), ImageSize(2000, 1500))
    tile_px = [p.slicing.tile_px for p in plan.passes if p.slicing]
    assert tile_px == [2560, 2048]  # max_tile_input_px / (tile_scale x pass scale)
    assert plan.postprocess.soft_nms is True
    request_off = plan_request(DYNAMIC, settings, DetectOptions(soft_nms=False), ImageSize(10, 10))
    assert request_off.postprocess.soft_nms is False


def test_passes_merge_with_the_request_merge_settings() -> None:
    options = DetectOptions(flip=True, merge="wbf", merge_threshold=0.55)
    plan = plan_request(DYNAMIC, SlicingSettings(), options, ImageSize(800, 600))
    assert (plan.merge.strategy, plan.merge.metric, plan.merge.threshold) == (MergeStrategy.WBF, IOU, 0.55)


def test_agnostic_nms_is_off_unless_the_request_asks() -> None:
    plain = plan_request(DYNAMIC, SlicingSettings(), DetectOptions(), ImageSize(10, 10))
    assert plain.postprocess.class_agnostic is False
    asked = plan_request(DYNAMIC, SlicingSettings(), DetectOptions(agnostic_nms=True), ImageSize(4000, 3000))
    assert asked.postprocess.class_agnostic is True  # sliced too: tiles and passes merge across classes


def test_a_per_class_conf_resolves_names_ids_and_the_rest() -> None:
    from specks.core.planning import resolve_conf

    names = ("person", "bicycle", "car")
    assert resolve_conf(names, 0.4) == (0.4, None)
    assert resolve_conf(names, {"person": 0.3, "2": 0.6, "*": 0.5}) == (0.3, (0.3, 0.5, 0.6))
    assert resolve_conf(names, {"CAR": 0.6}) == (0.25, (0.25, 0.25, 0.6))  # the rest: the default conf
    with pytest.raises(InvalidFieldError, match="'conf': unknown class name 'dog'") as refused:
        resolve_conf(names, {"dog": 0.3})
    assert refused.value.field == "conf"
    with pytest.raises(InvalidFieldError, match="out of range"):
        resolve_conf(names, {"3": 0.3})

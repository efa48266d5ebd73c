"""specks tune: the split, the bounded search, the held-out guard, and a tuned profile that serve uses."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import requests

from conftest import COCO_TINY, MODELS, coco_annotations, live_server_for, require
from factories import b64
from fakes import FakeDetector
from specks.cli import main
from specks.core.knobs import SlicingSettings
from specks.core.options import DetectOptions
from specks.core.overlap import MergeStrategy
from specks.core.pipeline import Detector
from specks.core.planning import plan_request
from specks.core.slicing import SliceMode
from specks.core.types import ImageSize
from specks.errors import InvalidRequestError
from specks.models.profiles import load_profile
from specks.tools import tuning
from specks.tools.evaluation import CocoDataset
from specks.tools.tuning import Score, Trial, TuneConfig, greedy_search, keep_tuned, max_evaluations, search_axes


def fake_dataset(count: int) -> CocoDataset:
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 64, "height": 48} for i in range(1, count + 1)]
    annotations = [
        {"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 25} for i in range(1, count + 1)
    ]
    return CocoDataset(Path("/nowhere"), {"images": images, "annotations": annotations, "categories": []})


# -- the split -----------------------------------------------------------------------------------
def test_the_split_is_disjoint_complete_and_the_same_for_a_seed() -> None:
    dataset = fake_dataset(10)
    tuning_part, held_out = tuning.split_dataset(dataset, 0.3, seed=7)
    ids = [i["id"] for i in tuning_part.images], [i["id"] for i in held_out.images]
    assert len(ids[1]) == 3 and sorted(ids[0] + ids[1]) == list(range(1, 11))
    assert {a["image_id"] for a in held_out.annotations["annotations"]} == set(ids[1])  # annotations follow
    again = tuning.split_dataset(dataset, 0.3, seed=7)
    assert [i["id"] for i in again[1].images] == ids[1]
    other_seeds = {tuple(i["id"] for i in tuning.split_dataset(dataset, 0.3, seed=s)[1].images) for s in range(5)}
    assert len(other_seeds) > 1


@pytest.mark.parametrize("count", [0, 1, 3])
def test_too_few_images_are_refused_saying_how_many_are_needed(count: int) -> None:
    with pytest.raises(InvalidRequestError, match="at least 4 labelled images"):
        tuning.split_dataset(fake_dataset(count), 0.3, seed=0)


def test_four_images_split_two_and_two() -> None:
    tuning_part, held_out = tuning.split_dataset(fake_dataset(4), 0.3, seed=0)
    assert (len(tuning_part.images), len(held_out.images)) == (2, 2)


# -- the held-out guard --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tuned", "defaults", "kept"),
    [
        (0.50, 0.40, True),
        (0.40, 0.40, False),  # a tie keeps the defaults: no gain, and no risk
        (0.39, 0.40, False),
        (0.10, 0.00, True),
    ],
)
def test_a_tuned_setting_is_kept_only_when_it_beats_the_defaults_held_out(
    tuned: float, defaults: float, kept: bool
) -> None:
    assert keep_tuned(Score(tuned, 0.0, 10.0), Score(defaults, 0.0, 5.0)) is kept


def test_tune_writes_the_defaults_when_the_pick_loses_on_held_out_images(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flip wins on the tuning part and loses on the held-out part: the profile is the defaults."""

    class FakeImages:
        def __init__(self, detector: Any, dataset: CocoDataset) -> None:
            self.dataset = dataset

    def fake_evaluate(images: FakeImages, slicing: SlicingSettings, options: Any, *, max_dets: int) -> Score:
        held_out = len(images.dataset.images) == 2
        better = 0.1 if slicing.flip else 0.0
        return Score(0.3 + (-better if held_out else better), 0.1, 100.0)

    monkeypatch.setattr(tuning, "PreparedImages", FakeImages)
    monkeypatch.setattr(tuning, "warm_up", lambda *args: None)
    monkeypatch.setattr(tuning, "evaluate_setting", fake_evaluate)

    base = SlicingSettings()
    report = tuning.tune(FakeDetector(), fake_dataset(6), base, TuneConfig(progress=False))  # type: ignore[arg-type]
    assert report.chosen is not None and report.chosen.slicing.flip
    assert report.held_out_chosen is not None and report.held_out_chosen.ap50 < report.held_out_defaults.ap50
    assert not report.kept_tuned
    assert report.profile.apply(SlicingSettings(flip=True)) == base  # every field written, the defaults'
    assert report.profile.metadata["setting"] == "defaults"
    assert report.profile.metadata["held_out"] == dataclasses.asdict(report.held_out_defaults)


# -- the search ----------------------------------------------------------------------------------
def fake_scores(slicing: SlicingSettings) -> Score:
    """Flip and WBF each help; scale 1.5 helps most but costs 300 ms; slicing off hurts."""
    ap50 = 0.30 + 0.05 * slicing.flip + 0.03 * (slicing.merge is MergeStrategy.WBF) + 0.1 * (1.5 in slicing.scales)
    ap50 -= 0.2 * (slicing.mode is SliceMode.OFF)
    ms = 100.0 * len(slicing.scales) * (2 if slicing.flip else 1) + 300 * (1.5 in slicing.scales)
    return Score(round(ap50, 4), 0.1, ms)


def test_the_search_finds_the_best_combination_and_stays_bounded() -> None:
    seen: list[SlicingSettings] = []

    def evaluate(slicing: SlicingSettings) -> Score:
        seen.append(slicing)
        return fake_scores(slicing)

    trials = greedy_search(SlicingSettings(), evaluate, budget_ms=None)
    best = tuning.best_trial(trials, None)
    assert best is not None
    assert best.slicing.flip and best.slicing.merge is MergeStrategy.WBF and best.slicing.scales == (1.0, 1.5)
    assert best.slicing.merge_threshold == tuning.WBF_THRESHOLD
    assert len(seen) == len(set(seen)) == len(trials)  # nothing evaluated twice
    assert len(trials) <= max_evaluations(search_axes(SlicingSettings())) == 25
    assert trials[0].label == "defaults"


def test_the_budget_rules_out_settings_that_cost_too_much() -> None:
    trials = greedy_search(SlicingSettings(), fake_scores, budget_ms=250)
    best = tuning.best_trial(trials, 250)
    assert best is not None and best.score is not None and best.score.ms_per_image <= 250
    assert best.slicing.flip and best.slicing.scales == (1.0,)  # 1.5 costs 500+ ms
    assert any(t.score is not None and not t.score.within(250) for t in trials)  # tried, then refused


def test_a_setting_that_only_measures_faster_is_not_adopted() -> None:
    """Equal scores are usually the same passes timed twice: noise must not pick a change."""

    def evaluate(slicing: SlicingSettings) -> Score:
        noise_ms = 50.0 if slicing.merge is MergeStrategy.WBF or slicing.mode is SliceMode.ON else 0.0
        return Score(0.30 - 0.2 * (slicing.mode is SliceMode.OFF), 0.1, 300.0 - noise_ms)

    trials = greedy_search(SlicingSettings(), evaluate, budget_ms=None)
    best = tuning.best_trial(trials, None)
    assert best is not None and best.label == "defaults"
    assert len(trials) <= 1 + sum(len(axis.options) - 1 for axis in search_axes(SlicingSettings()))  # one round


def test_among_equal_scores_the_fewest_changes_win() -> None:
    trials = [
        Trial("defaults", SlicingSettings(), Score(0.3, 0.1, 300.0)),
        Trial("flip=on merge=wbf", SlicingSettings(flip=True, merge=MergeStrategy.WBF), Score(0.4, 0.1, 200.0)),
        Trial("flip=on", SlicingSettings(flip=True), Score(0.4, 0.1, 250.0)),
    ]
    best = tuning.best_trial(trials, None)
    assert best is not None and best.label == "flip=on"


def test_no_setting_within_the_budget_picks_none() -> None:
    trials = [Trial("defaults", SlicingSettings(), Score(0.3, 0.1, 900.0))]
    assert tuning.best_trial(trials, 100) is None


def test_labels_name_only_what_differs_from_the_defaults() -> None:
    changed = SlicingSettings(mode=SliceMode.ON, scales=(1.0, 1.5), flip=True)
    assert tuning.describe_changes(changed, SlicingSettings()) == "mode=on scales=1,1.5 flip=on"


# -- for real: tune, then serve the profile ------------------------------------------------------
def small_coco_set(tmp_path: Path, count: int) -> Path:
    """The first ``count`` images of COCO tiny50, as their own COCO folder."""
    annotations = coco_annotations(COCO_TINY)
    images = annotations["images"][:count]
    kept = {image["id"] for image in images}
    root = tmp_path / "set"
    (root / "images").mkdir(parents=True)
    for image in images:
        shutil.copy(COCO_TINY / "images" / image["file_name"], root / "images" / image["file_name"])
    subset = {
        **annotations,
        "images": images,
        "annotations": [a for a in annotations["annotations"] if a["image_id"] in kept],
    }
    (root / "annotations.coco.json").write_text(json.dumps(subset))
    return root


def model_details(url: str) -> dict[str, Any]:
    response = requests.get(url + "/model", timeout=30)
    assert response.status_code == 200
    details: dict[str, Any] = response.json()
    return details


def predict(url: str, data: bytes) -> dict[str, Any]:
    response = requests.post(
        url + "/predict",
        data=json.dumps({"image": b64(data)}),
        headers={"Content-type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


@pytest.mark.slow
def test_tune_writes_a_profile_beside_the_model_that_serve_then_uses(
    tmp_path: Path, cache_dir: Path, yolov5n_dynamic_detector: Detector, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = small_coco_set(tmp_path, 5)
    model = tmp_path / "cams.onnx"
    model.symlink_to(require(MODELS / "yolov5n_dynamic.onnx"))
    assert main(["tune", str(dataset), "--model", str(model), "--threads", "2"]) == 0
    printed = capsys.readouterr().out
    assert "held out, defaults:" in printed and "profile written to" in printed
    sidecar = tmp_path / "cams.onnx.specks.json"
    profile = load_profile(sidecar)
    meta = profile.metadata
    assert meta["images"] == {"tuning": 3, "held_out": 2}
    assert meta["held_out"]["ap50"] >= meta["held_out_defaults"]["ap50"]  # never worse on unseen images
    expected = profile.apply(SlicingSettings())

    server = live_server_for(model, cache_dir, workers=1)
    try:
        server.wait_ready()
        details = model_details(server.url)
        photo = (
            dataset / "images" / json.loads((dataset / "annotations.coco.json").read_text())["images"][0]["file_name"]
        )
        answer = predict(server.url, photo.read_bytes())
    finally:
        server.stop()
    assert details["profile"]["file"] == "cams.onnx.specks.json"
    assert str(tmp_path) not in json.dumps(details)
    assert details["profile"]["slicing"] == json.loads(sidecar.read_text())["slicing"]
    assert (details["defaults"]["flip"], details["defaults"]["scales"]) == (expected.flip, list(expected.scales))
    size = ImageSize(answer["image"]["width"], answer["image"]["height"])
    planned = plan_request(yolov5n_dynamic_detector.model.info, expected, DetectOptions(), size)
    assert answer["tiles"] == planned.tile_count


@pytest.mark.slow
def test_specks_profile_changes_what_a_request_runs(tmp_path: Path, cache_dir: Path) -> None:
    """A profile slicing every image into 320 px tiles: a 640x480 photo answers 4 tiles, not 0."""
    profile = tmp_path / "tiles.json"
    slicing = {"mode": "on", "tile_px": 320, "overlap_ratio": 0.0, "full_image_pass": False}
    profile.write_text(json.dumps({"slicing": slicing}))
    photo = require(COCO_TINY / "images") / coco_annotations(COCO_TINY)["images"][0]["file_name"]
    server = live_server_for(
        MODELS / "yolov5n_dynamic.onnx", cache_dir, workers=1, env={"SPECKS_PROFILE": str(profile)}
    )
    try:
        server.wait_ready()
        details = model_details(server.url)
        answer = predict(server.url, photo.read_bytes())
        tiles = answer["tiles"]
        width, height = answer["image"]["width"], answer["image"]["height"]
    finally:
        server.stop()
    assert details["profile"]["file"] == "tiles.json"
    assert details["defaults"]["tile"] == 320 and details["defaults"]["slice"] == "on"
    assert tiles == -(-width // 320) * -(-height // 320)

"""specks.tools.yardstick: the seed body, the synthetic photo, percentiles and the bare rate (no timing asserted)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from specks.core.imaging import read_image_size
from specks.errors import SpecksError
from specks.tools.yardstick import (
    bare_rate_per_s,
    full_image_body,
    image_or_synthetic,
    percentile,
    predict_body,
    synthetic_photo_jpeg,
)

# -- the request -----------------------------------------------------------------------------------


def test_predict_body_is_the_seed_request() -> None:
    assert predict_body(b"\x00\x01") == b'{"image":"AAE="}'


def test_full_image_body_is_the_seed_request_with_slicing_off() -> None:
    assert full_image_body(b"\x00\x01") == b'{"image":"AAE=","slice":false}'
    assert orjson.loads(predict_body(b"\x00", conf=0.5)) == {"image": "AA==", "conf": 0.5}


def test_the_synthetic_photo_is_a_deterministic_jpeg_of_the_asked_size() -> None:
    photo = synthetic_photo_jpeg(320, 200)
    size, _ = read_image_size(photo)
    assert (size.width, size.height) == (320, 200)
    assert photo == synthetic_photo_jpeg(320, 200)
    assert image_or_synthetic(None, size_wh=(320, 200)) == photo


def test_image_or_synthetic_reads_the_file_or_says_why_not(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"bytes")
    assert image_or_synthetic(path) == b"bytes"
    with pytest.raises(SpecksError, match="cannot read"):
        image_or_synthetic(tmp_path / "missing.jpg")


# -- percentile ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 50, 5.0),
        ([5.0], 99, 5.0),
        ([1.0, 2.0], 50, 1.5),
        ([3.0, 1.0, 2.0], 50, 2.0),  # unsorted input
        ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([1.0, 2.0, 3.0, 4.0], 25, 1.75),
        ([1.1, 1.5, 2.0], 75, 1.75),
        (list(range(1, 101)), 95, 95.05),
        (list(range(1, 101)), 99, 99.01),
    ],
)
def test_percentile_interpolates_between_ranks(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_matches_numpy_on_random_latencies() -> None:
    samples = np.random.default_rng(3).lognormal(4, 0.5, 997).tolist()
    for q in (25, 50, 75, 95, 99):
        assert percentile(samples, q) == pytest.approx(float(np.percentile(samples, q)))


@pytest.mark.parametrize(("values", "q"), [([], 50), ([1.0], -1), ([1.0], 101)])
def test_percentile_refuses_no_values_and_q_out_of_range(values: list[float], q: float) -> None:
    with pytest.raises(ValueError):
        percentile(values, q)


# -- the bare rate ---------------------------------------------------------------------------------


def test_bare_rate_makes_the_warmup_calls_then_at_least_min_calls() -> None:
    calls: list[int] = []
    rate = bare_rate_per_s(lambda: calls.append(1), 0.0, min_calls=50, warmup=5)
    assert len(calls) == 55
    assert rate > 0


def test_bare_rate_keeps_calling_for_the_seconds_asked() -> None:
    calls: list[int] = []
    bare_rate_per_s(lambda: calls.append(1), 0.05)
    assert len(calls) > 3  # at least three, and as many more as 50 ms allow

"""The per-worker memory estimate and the start-up refusal."""

from __future__ import annotations

import pytest

from specks.config import MiB, RuntimeOptions, Settings
from specks.errors import ConfigError
from specks.service.memory import (
    MODEL_ACTIVATION_MB,
    MODEL_FIXED_MB,
    MODEL_MB_PER_FILE_MB,
    WIDE_ACTIVATION_MB,
    WORKER_BASE_MB,
    check_worker_memory,
    estimate_model_mb,
    estimate_worker_memory,
)


def test_a_model_costs_its_fixed_part_its_file_times_the_factor_and_the_arena() -> None:
    assert estimate_model_mb(8 * MiB) == pytest.approx(MODEL_FIXED_MB + 8 * MODEL_MB_PER_FILE_MB + MODEL_ACTIVATION_MB)


def test_a_wide_session_adds_the_at_rest_part_again_and_its_own_arena() -> None:
    narrow = estimate_model_mb(8 * MiB)
    assert estimate_model_mb(8 * MiB, wide_session=True) == pytest.approx(
        narrow + MODEL_FIXED_MB + 8 * MODEL_MB_PER_FILE_MB + WIDE_ACTIVATION_MB
    )


def test_the_worker_estimate_counts_wide_sessions_when_threads_adapt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("specks.config.cpu_count", lambda: 2)
    adaptive, fixed = Settings(workers=2), Settings(workers=2, runtime=RuntimeOptions(intra_op_threads=1))
    assert estimate_worker_memory(adaptive, {"a": 8 * MiB}).models_mb["a"] == pytest.approx(
        estimate_model_mb(8 * MiB, wide_session=True)
    )
    assert estimate_worker_memory(fixed, {"a": 8 * MiB}).models_mb["a"] == pytest.approx(estimate_model_mb(8 * MiB))


def test_the_worker_estimate_adds_base_models_and_slots() -> None:
    settings = Settings(predictions_per_worker=3, runtime=RuntimeOptions(adaptive_threads=False))
    estimate = estimate_worker_memory(settings, {"a": 8 * MiB, "b": 34 * MiB})
    slots_mb = 3 * settings.limits.max_image_pixels * 3 / MiB
    assert estimate.total_mb == pytest.approx(
        WORKER_BASE_MB + estimate_model_mb(8 * MiB) + estimate_model_mb(34 * MiB) + slots_mb
    )
    assert "models (a 514, b 579)" in estimate.describe()  # 34 + 2.5 x 8 + 460, 34 + 2.5 x 34 + 460


def test_a_configuration_over_the_limit_is_refused_naming_the_setting() -> None:
    settings = Settings(max_worker_memory_mb=500)
    estimate = estimate_worker_memory(settings, {"a": 8 * MiB})
    with pytest.raises(ConfigError, match=r"estimated at \d+ MiB per worker.*SPECKS_MAX_WORKER_MEMORY_MB \(500\)"):
        check_worker_memory(settings, estimate)


def test_no_limit_or_room_enough_passes() -> None:
    check_worker_memory(Settings(), estimate_worker_memory(Settings(), {"a": 10**9}))
    roomy = Settings(max_worker_memory_mb=100_000)
    check_worker_memory(roomy, estimate_worker_memory(roomy, {"a": 8 * MiB}))

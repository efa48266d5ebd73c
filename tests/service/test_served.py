"""Which models a worker serves, under which names (the default first, the embedded one always)."""

from __future__ import annotations

import pytest

from specks.config import ModelSpec, Settings
from specks.errors import ConfigError
from specks.models import DEFAULT_MODEL_NAME
from specks.service.served import served_models


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        pytest.param(Settings(), [(DEFAULT_MODEL_NAME, None)], id="nothing-configured"),
        pytest.param(
            Settings(model="/m/det.onnx"), [("det.onnx", "/m/det.onnx"), (DEFAULT_MODEL_NAME, None)], id="bare-path"
        ),
        pytest.param(
            Settings(models=(ModelSpec("a", "/m/a.onnx"), ModelSpec("b", "/m/b.onnx"))),
            [("a", "/m/a.onnx"), ("b", "/m/b.onnx"), (DEFAULT_MODEL_NAME, None)],
            id="named-first-is-default",
        ),
        pytest.param(
            Settings(model="/m/det.onnx", models=(ModelSpec("a", "/m/a.onnx"),)),
            [("det.onnx", "/m/det.onnx"), ("a", "/m/a.onnx"), (DEFAULT_MODEL_NAME, None)],
            id="bare-path-stays-the-default",
        ),
        pytest.param(Settings(model="default"), [(DEFAULT_MODEL_NAME, "default")], id="the-default-named-once"),
    ],
)
def test_served_models(settings: Settings, expected: list[tuple[str, str | None]]) -> None:
    assert [(spec.name, spec.path) for spec in served_models(settings)] == expected


def test_two_models_under_one_name_are_refused() -> None:
    with pytest.raises(ConfigError, match="'det.onnx'.*NAME=PATH"):
        served_models(Settings(model="/m/det.onnx", models=(ModelSpec("det.onnx", "/other/det.onnx"),)))

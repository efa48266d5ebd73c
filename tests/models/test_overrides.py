"""Model overrides: validated where they are made."""

from __future__ import annotations

import pytest

from specks.core.postprocess import OutputLayout
from specks.errors import ConfigError
from specks.models.overrides import NO_OVERRIDES, ModelOverrides


def test_no_overrides_override_nothing() -> None:
    assert (NO_OVERRIDES.layout, NO_OVERRIDES.preprocessing, NO_OVERRIDES.input_hw) == (None, None, None)


def test_a_layout_is_an_enum_member() -> None:
    assert ModelOverrides(layout=OutputLayout("yolox")).layout is OutputLayout.YOLOX


@pytest.mark.parametrize("input_hw", [(0, 640), (640, -32), (640,)], ids=["zero", "negative", "one-value"])
def test_an_input_size_needs_two_positive_sides(input_hw: tuple[int, ...]) -> None:
    with pytest.raises(ConfigError, match="positive height and width"):
        ModelOverrides(input_hw=input_hw)  # type: ignore[arg-type]

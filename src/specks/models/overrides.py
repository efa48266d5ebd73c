"""What a model profile may declare about a model instead of what Specks reads from its graph.

``load_model`` and ``OnnxModel.load`` take a ``ModelOverrides``; every field left None keeps what
the graph says. A model profile file (JSON beside a model) is meant to fill one in.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.postprocess import OutputLayout
from ..core.preprocess import Preprocessing
from ..errors import ConfigError


@dataclass(frozen=True)
class ModelOverrides:
    """Declared facts about a model that take precedence over detection.

    layout:        the output layout (else told apart from the output's shape and values).
    preprocessing: channel order, value scale, pad value and placement (else the layout's
                   usual one: YOLOX's for the yolox layouts, RGB 0..1 centred for the others).
    input_hw:      nominal input height and width of a dynamic-size model, used for full-image
                   requests without ``imgsz`` (else its ``imgsz`` metadata or declared size).
    """

    layout: OutputLayout | None = None
    preprocessing: Preprocessing | None = None
    input_hw: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.input_hw is not None and not (len(self.input_hw) == 2 and min(self.input_hw) > 0):
            raise ConfigError(f"an input size override needs a positive height and width (got {self.input_hw})")

    def replaced_by(self, other: ModelOverrides) -> ModelOverrides:
        """These overrides with every field ``other`` sets in place (a profile's over Specks' own)."""
        return ModelOverrides(
            layout=other.layout or self.layout,
            preprocessing=other.preprocessing or self.preprocessing,
            input_hw=other.input_hw or self.input_hw,
        )


NO_OVERRIDES = ModelOverrides()

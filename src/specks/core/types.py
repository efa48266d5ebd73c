"""Small value types shared by the core: detections and image sizes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class ImageSize:
    """Width and height of an image in pixels."""

    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class Detections:
    """N detections as parallel arrays.

    xyxy:       (N, 4) float32, corners x1, y1, x2, y2 in pixels of some image frame
                (the caller says which: model input, tile or original image).
    confidence: (N,) float32 in [0, 1].
    class_id:   (N,) int32, index into the model's class names.
    """

    xyxy: npt.NDArray[np.float32]
    confidence: npt.NDArray[np.float32]
    class_id: npt.NDArray[np.int32]

    def __post_init__(self) -> None:
        n = len(self.confidence)
        if self.xyxy.shape != (n, 4):
            raise ValueError(f"xyxy must have shape ({n}, 4), got {self.xyxy.shape}")
        if self.class_id.shape != (n,):
            raise ValueError(f"class_id must have shape ({n},), got {self.class_id.shape}")

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            confidence=np.zeros(0, np.float32),
            class_id=np.zeros(0, np.int32),
        )

    @classmethod
    def from_arrays(cls, xyxy: npt.ArrayLike, confidence: npt.ArrayLike, class_id: npt.ArrayLike) -> Detections:
        """Build from any array-likes, converting dtypes (handy in tests and decoders)."""
        return cls(
            xyxy=np.asarray(xyxy, np.float32).reshape(-1, 4),
            confidence=np.asarray(confidence, np.float32).reshape(-1),
            class_id=np.asarray(class_id, np.int32).reshape(-1),
        )

    @classmethod
    def concat(cls, parts: Sequence[Detections]) -> Detections:
        if not parts:
            return cls.empty()
        return cls(
            xyxy=np.concatenate([p.xyxy for p in parts]),
            confidence=np.concatenate([p.confidence for p in parts]),
            class_id=np.concatenate([p.class_id for p in parts]),
        )

    def __len__(self) -> int:
        return len(self.confidence)

    def __getitem__(self, index: npt.NDArray[np.bool_] | npt.NDArray[np.intp] | slice) -> Detections:
        """Select by boolean mask, index array or slice."""
        return Detections(self.xyxy[index], self.confidence[index], self.class_id[index])

    def sorted_by_confidence(self) -> Detections:
        """Highest confidence first (stable, so equal scores keep their order)."""
        return self[np.argsort(-self.confidence, kind="stable")]

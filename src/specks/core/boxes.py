"""Pure numpy box geometry. Boxes are (N, 4) float32 arrays of x1, y1, x2, y2 in pixels.

Overlap measures, NMS and merging live in ``specks.core.overlap``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.intp]


def cxcywh_to_xyxy(cxcywh: FloatArray) -> FloatArray:
    """(N, 4) centre x, centre y, width, height -> (N, 4) x1, y1, x2, y2 (same frame)."""
    half_wh = cxcywh[:, 2:4] * 0.5
    return np.concatenate([cxcywh[:, :2] - half_wh, cxcywh[:, :2] + half_wh], axis=1)


def areas(xyxy: FloatArray) -> FloatArray:
    """(N,) areas of (N, 4) boxes; inverted boxes count as zero."""
    return np.clip(xyxy[:, 2] - xyxy[:, 0], 0, None) * np.clip(xyxy[:, 3] - xyxy[:, 1], 0, None)


def clip_xyxy(xyxy: FloatArray, width: float, height: float) -> FloatArray:
    """Clip boxes to the image [0, width] x [0, height] (returns a new array)."""
    out = np.empty_like(xyxy)
    out[:, 0] = np.clip(xyxy[:, 0], 0, width)
    out[:, 2] = np.clip(xyxy[:, 2], 0, width)
    out[:, 1] = np.clip(xyxy[:, 1], 0, height)
    out[:, 3] = np.clip(xyxy[:, 3], 0, height)
    return out

"""The one place where Hounsfield units and network intensities [-1, 1] are converted."""

from __future__ import annotations

import numpy as np

from meddiff.config import Window


def hu_to_unit(hu: np.ndarray, window: Window) -> np.ndarray:
    """Clip ``hu`` to the window [level - width/2, level + width/2] and map it linearly to [-1, 1]."""
    lo, hi = window.bounds
    return (np.clip(hu, lo, hi) - lo) / (hi - lo) * 2.0 - 1.0


def unit_to_hu(x: np.ndarray, window: Window) -> np.ndarray:
    """Inverse of :func:`hu_to_unit` inside the window (values are clipped to [-1, 1] first)."""
    lo, hi = window.bounds
    return (np.clip(x, -1.0, 1.0) + 1.0) / 2.0 * (hi - lo) + lo

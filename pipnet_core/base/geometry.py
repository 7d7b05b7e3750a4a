"""Similarity fits between point sets: how far and how a face shape is turned, scaled and moved
from a reference (the mean face), for smoothing, plausibility and the next crop."""

from __future__ import annotations

import numpy as np


def centred(shape: np.ndarray) -> np.ndarray:
    """A shape moved so its points' mean is at the origin, as ``fit_similarity`` takes it."""
    shape = np.asarray(shape, np.float64)
    return shape - shape.mean(axis=0)


def fit_similarity(reference: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Least-squares similarity from a centred reference shape to points:
    points ~= [[a, -b], [b, a]] @ reference + centre. Returns (centre, a, b)."""
    centre = points.mean(axis=0)
    p = points - centre
    norm = float((reference**2).sum())
    a = float((reference * p).sum()) / norm
    b = float((reference[:, 0] * p[:, 1] - reference[:, 1] * p[:, 0]).sum()) / norm
    return centre, a, b

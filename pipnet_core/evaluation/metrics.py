"""Landmark accuracy: NME by the outer eye corners, failure rate and AUC of the error curve."""

from __future__ import annotations

import numpy as np

from pipnet_core.base.scheme import LEFT_EYE_OUTER, RIGHT_EYE_OUTER


def nme(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-face mean point error / outer-eye-corner distance; inputs (B, N, 2), output (B,)."""
    return point_errors(predicted, truth).mean(axis=1)


def point_errors(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-point error / outer-eye-corner distance, (B, N)."""
    interocular = np.linalg.norm(truth[:, RIGHT_EYE_OUTER] - truth[:, LEFT_EYE_OUTER], axis=-1)
    return np.linalg.norm(predicted - truth, axis=-1) / interocular[:, None]


def failure_rate(errors: np.ndarray, threshold: float = 0.1) -> float:
    """Fraction of faces whose NME exceeds the threshold."""
    return float(np.mean(np.asarray(errors) > threshold))


def ced(errors: np.ndarray, threshold: float = 0.1, steps: int = 1001) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: fraction of faces with NME <= x, for x in [0, threshold]."""
    grid = np.linspace(0.0, threshold, steps)
    sorted_errors = np.sort(np.asarray(errors))
    return grid, np.searchsorted(sorted_errors, grid, side="right") / len(sorted_errors)


def auc(errors: np.ndarray, threshold: float = 0.1) -> float:
    """Area under the CED up to the threshold, scaled to 0..1."""
    grid, fraction = ced(errors, threshold)
    area = np.sum((fraction[1:] + fraction[:-1]) / 2 * np.diff(grid))  # trapezoid rule
    return float(area / threshold)

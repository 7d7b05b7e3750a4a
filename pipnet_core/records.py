"""The face record every stage after the model hands on: the pipeline makes it, smoothing, drawing,
the writers, the streams and the cluster's chunks read it. Here, at the bottom, so that none of
them imports the pipeline for a dataclass."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .pose import HeadPose


@dataclass(frozen=True)
class Face:
    id: int  # stable while the face is tracked
    box: tuple[float, float, float, float]  # landmark bounding box x, y, w, h in frame pixels
    score: float  # detector score at the face's last detection
    points: np.ndarray  # (68, 2) frame pixels
    confidence: np.ndarray  # (68,) score-map peaks, 0..1, lowered on near-profile or implausible shapes
    pose: HeadPose | None
    success: bool  # False: confidence collapsed this frame (occluded, left the view); re-detecting

    @property
    def mean_confidence(self) -> float:
        return float(self.confidence.mean())


def points_box(points: np.ndarray) -> tuple[float, float, float, float]:
    """The bounding box (x, y, w, h) of points."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    return float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])

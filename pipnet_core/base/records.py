"""The face record every stage after the model hands on: the pipeline makes it, smoothing, drawing,
the writers, the streams and the cluster's chunks read it. Here, at the bottom, so that none of
them imports the pipeline for a dataclass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


@dataclass(frozen=True)
class HeadPose:
    yaw: float  # > 0: the face turns towards the image's right
    pitch: float  # > 0: the face looks up
    roll: float  # > 0: the head tilts clockwise in the image
    rotation: np.ndarray  # 3x3, model -> camera
    translation: np.ndarray  # (3,), millimetres


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


class FrameFaces(NamedTuple):
    """A processed frame of a video as the offline stages and the writers take it: its number,
    its time (seconds) and the faces found in it. The frame's pixels are ``io.frames.Frame``."""

    index: int
    timestamp: float
    faces: list[Face]

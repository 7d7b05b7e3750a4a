"""What a face detector gives and how the pipeline calls one: a ``Detection`` (box, score, the
eyes when it has them) and the ``FaceDetector`` protocol; any object with ``detect(frame)`` fits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from pipnet_core.base.crop import box_iou


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x, y, w, h in frame pixels
    score: float
    source: str = ""  # the detector model that found it: its box calibration (none: identity)
    # The person's right eye then left eye (x, y, x, y) in frame pixels, when the detector gives them.
    eyes: tuple[float, float, float, float] | None = None
    roll_hint: float = 0.0  # roll to assume without eyes (the turn of the frame it was found in)

    @property
    def roll(self) -> float:
        """The face's roll (degrees, as ``crop.face_roll``) from the eyes, else the hint."""
        if self.eyes is None:
            return self.roll_hint
        rx, ry, lx, ly = self.eyes
        return float(np.degrees(np.arctan2(ly - ry, lx - rx)))


class FaceDetector(Protocol):
    name: str

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]: ...

    def close(self) -> None: ...


def merge_detections(detections: list[Detection], overlap: float = 0.3) -> list[Detection]:
    """One detection per face: the highest-scoring of those whose boxes overlap."""
    kept: list[Detection] = []
    for det in sorted(detections, key=lambda d: -d.score):
        if all(box_iou(det.box, other.box) < overlap for other in kept):
            kept.append(det)
    return kept

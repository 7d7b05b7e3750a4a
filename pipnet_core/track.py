"""Face tracks across frames: where to crop next, when to ask the detector again, stable ids.

Between detections a face's next crop is made from its previous landmarks, exactly like the
training crops, so the detector runs only every few frames or when a face is lost.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .crop import CropBox
from .smooth import LandmarkSmoother


@dataclass
class Track:
    id: int
    crop: CropBox  # the model crop to use in the next frame
    detector_score: float
    smoother: LandmarkSmoother
    frames: int = 0  # frames with landmarks so far; 0 means the crop still comes from the detector
    points: np.ndarray | None = field(default=None, repr=False)


class Tracker:
    def __init__(self, max_faces: int | None, redetect_interval: int, min_confidence: float, match_iou: float = 0.3,
                 duplicate_iou: float = 0.5):
        self.max_faces = max_faces
        self.redetect_interval = redetect_interval
        self.min_confidence = min_confidence
        self.match_iou = match_iou
        self.duplicate_iou = duplicate_iou  # two tracks' crops overlapping this much follow one face
        self.tracks: list[Track] = []
        self._next_id = 0
        self._since_detection = 0
        self._lost = False

    def reset(self) -> None:
        self.tracks.clear()
        self._since_detection = 0
        self._lost = False

    def needs_detection(self) -> bool:
        """No face yet, the interval is up, a face was lost, or there is room for more faces
        at the interval (new faces can only come from the detector)."""
        return not self.tracks or self._lost or self._since_detection >= self.redetect_interval

    def add_detections(self, crops: list[CropBox], scores: list[float], new_smoother) -> None:
        """Match detector crops to tracks by overlap; unmatched detections start new tracks."""
        self._since_detection, self._lost = 0, False
        unmatched = set(range(len(crops)))
        for track in self.tracks:
            overlaps = {i: track.crop.iou(crops[i]) for i in unmatched}
            best = max(overlaps, key=overlaps.get, default=None)
            if best is not None and overlaps[best] >= self.match_iou:
                track.detector_score = scores[best]
                unmatched.discard(best)
        for i in sorted(unmatched, key=lambda i: -scores[i]):
            if self.max_faces is not None and len(self.tracks) >= self.max_faces:
                break
            self.tracks.append(Track(self._next_id, crops[i], scores[i], new_smoother()))
            self._next_id += 1

    def next_frame(self) -> None:
        self._since_detection += 1

    def update(self, track: Track, points: np.ndarray, confidence: np.ndarray, crop_scale: float) -> bool:
        """Record a track's landmarks; a track whose confidence collapsed is dropped (False)."""
        if float(confidence.mean()) < self.min_confidence:
            self.tracks.remove(track)
            self._lost = True
            return False
        track.points = points
        track.crop = CropBox.around_points(points, crop_scale)
        track.frames += 1
        return True

    def drop_duplicates(self) -> None:
        """Two tracks that converged on one face: keep the older id (in a still, the higher
        detector score)."""
        kept: list[Track] = []
        for track in sorted(self.tracks, key=lambda t: t.id):
            if all(track.crop.iou(other.crop) < self.duplicate_iou for other in kept):
                kept.append(track)
        self.tracks = kept

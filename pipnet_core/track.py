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
    id: int  # Tracker.UNCONFIRMED until the model first accepts the face
    crop: CropBox  # the model crop to use in the next frame
    detector_score: float
    smoother: LandmarkSmoother
    frames: int = 0  # frames with landmarks so far; 0 means the crop still comes from the detector
    unconfirmed: int = 0  # detector runs in a row that did not confirm this face
    points: np.ndarray | None = field(default=None, repr=False)
    time: float | None = None  # timestamp of the frame ``crop`` was measured in
    previous: tuple[CropBox, float] | None = None  # the crop and time before that
    usual_confidence: float = 0.0  # running mean of the face's confidence

    def predicted_crop(self, timestamp: float) -> CropBox:
        """Where the face will be at ``timestamp``: the last crop moved on at the speed between
        the last two frames. Below 2% of the crop side the move is noise and the crop stays put."""
        if self.previous is None or self.time is None:
            return self.crop
        before, then = self.previous
        if self.time <= then:
            return self.crop
        # At most two frames' worth of motion: after a pause (a camera's clock runs on) the last
        # speed says nothing about where the face is now.
        ahead = min((timestamp - self.time) / (self.time - then), 2.0)
        dx, dy = ahead * (self.crop.cx - before.cx), ahead * (self.crop.cy - before.cy)
        if np.hypot(dx, dy) < 0.02 * self.crop.side:
            return self.crop
        return CropBox(self.crop.cx + dx, self.crop.cy + dy, self.crop.side, self.crop.roll).snapped()


class Tracker:
    # The id of a detection the model has not yet accepted as a face: ids go only to faces the
    # model confirms, so detections it rejects (a drawing, a face-like pattern) use none up.
    UNCONFIRMED = -1

    def __init__(self, max_faces: int | None, redetect_interval: int, min_confidence: float, match_iou: float = 0.3,
                 duplicate_iou: float = 0.5, max_unconfirmed: int = 2):
        self.max_faces = max_faces
        # A track the detector does not confirm this many times in a row is dropped: the model alone
        # can keep a confident-looking track on a face-like background after the face has gone.
        self.max_unconfirmed = max_unconfirmed
        self.redetect_interval = redetect_interval
        self.min_confidence = min_confidence
        self.match_iou = match_iou
        self.duplicate_iou = duplicate_iou  # two tracks' crops overlapping this much follow one face
        self.tracks: list[Track] = []
        self._next_id = 0
        self._lost = False

    def reset(self, restart_ids: bool = False) -> None:
        self.tracks.clear()
        self._lost = False
        if restart_ids:
            self._next_id = 0

    def needs_detection(self, frame_number: int) -> bool:
        """No face yet, a face was lost, or a frame whose number is a multiple of the interval
        (new faces can only come from the detector). The schedule goes by the frame's number, not
        by the frames since the last detection: two runs of a video that started at different
        frames (a chunk and the whole) look on the same frames once their faces agree."""
        return not self.tracks or self._lost or frame_number % self.redetect_interval == 0

    def add_detections(self, crops: list[CropBox], scores: list[float], new_smoother) -> list[Track]:
        """Match detector crops to tracks by overlap; unmatched detections start new tracks.
        Returns the existing tracks no detection matched (see ``confirm``)."""
        self._lost = False
        unmatched = set(range(len(crops)))
        missed = []
        for track in self.tracks:
            overlaps = {i: track.crop.iou(crops[i]) for i in unmatched}
            best = max(overlaps, key=overlaps.get, default=None)
            if best is not None and overlaps[best] >= self.match_iou:
                track.detector_score, track.unconfirmed = scores[best], 0
                unmatched.discard(best)
            else:
                missed.append(track)
        for i in sorted(unmatched, key=lambda i: -scores[i]):
            if self.max_faces is not None and len(self.tracks) >= self.max_faces:
                break
            self.tracks.append(Track(self.UNCONFIRMED, crops[i], scores[i], new_smoother()))
        return missed

    def confirm(self, track: Track, confirmed: bool) -> None:
        """Whether a second look (the detector on the track's own upright crop) found the face;
        a track unconfirmed ``max_unconfirmed`` times in a row is dropped."""
        track.unconfirmed = 0 if confirmed else track.unconfirmed + 1
        if track.unconfirmed >= self.max_unconfirmed:
            self.tracks.remove(track)
            self._lost = True

    def update(self, track: Track, points: np.ndarray, confidence: np.ndarray, crop: CropBox, timestamp: float) -> bool:
        """Record a track's landmarks and the crop around them; a track whose confidence collapsed
        is dropped (False)."""
        mean = float(confidence.mean())
        if mean < self.min_confidence:
            self.drop(track)
            return False
        if track.frames and track.time is not None:
            track.previous = (track.crop, track.time)
        track.points, track.time = points, timestamp
        track.crop = crop.snapped()
        track.usual_confidence = mean if not track.frames else 0.9 * track.usual_confidence + 0.1 * mean
        track.frames += 1
        return True

    def drop(self, track: Track) -> None:
        """A face no longer followed (lost, or a detection the model rejected): look again next frame."""
        self.tracks.remove(track)
        self._lost = True

    def is_unsure(self, track: Track, confidence: float) -> bool:
        """A tracked face whose confidence fell well below its own usual level (or below the floor):
        its crop probably missed a fast move."""
        return track.frames > 0 and (confidence < self.min_confidence or confidence < 0.8 * track.usual_confidence)

    def drop_duplicates(self) -> None:
        """Two tracks that converged on one face: keep the older id (in a still, the higher
        detector score)."""
        kept: list[Track] = []
        # New faces last, in detector-score order (a stable sort keeps it).
        for track in sorted(self.tracks, key=lambda t: (t.id == self.UNCONFIRMED, t.id)):
            if all(track.crop.iou(other.crop) < self.duplicate_iou for other in kept):
                kept.append(track)
        self.tracks = kept

    def name_new_faces(self) -> None:
        """Ids for the new tracks that the model accepted and that duplicate no other: ids count
        faces, so nothing else uses one up."""
        for track in self.tracks:
            if track.id == self.UNCONFIRMED:
                track.id, self._next_id = self._next_id, self._next_id + 1

"""Face tracks across frames: where to crop next, when to ask the detector again, stable ids.

Between detections a face's next crop is made from its previous landmarks, exactly like the
training crops, so the detector runs only every few frames or when a face is lost. The tracker
holds a video's whole state (tracks, their smoothers, ids, the detection schedule); the model
work it asks for goes through a ``FaceAligner``, which holds none.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from time import perf_counter
from typing import NamedTuple

import numpy as np

from pipnet_core.base.crop import CropBox
from pipnet_core.detection.detector import FaceDetector
from pipnet_core.detection.search import QuarterTurnDetector
from pipnet_core.io.state_codec import NUMBER, float_array, optional, tuple_of
from pipnet_core.pipeline.align import FaceAligner
from pipnet_core.pipeline.smoothing import AlphaBetaFilter, LandmarkSmoother, OneEuroFilter


@dataclass(frozen=True)
class TrackerConfig:
    """How faces are followed; the defaults are what `pipnet bench-quality` and the tests were
    measured with."""

    redetect_interval: int = 10  # frames between detector runs while every face is tracked
    # A face whose mean confidence falls below this is lost; a new detection must reach it (after
    # the plausibility factor) to become a face.
    min_confidence: float = 0.4
    match_iou: float = 0.3  # a detection overlapping a track's crop this much is that track's face
    duplicate_iou: float = 0.5  # two tracks' crops overlapping this much follow one face
    # The same in a still: two crops of one face (found by both detector ranges, in tiles and
    # turns) overlap by a third or more; two people in a photo rarely do.
    still_duplicate_iou: float = 0.3
    # A track the detector does not confirm this many times in a row is dropped: the model alone
    # can keep a confident-looking track on a face-like background after the face has gone.
    max_unconfirmed: int = 2
    # A tracked face whose new points' crop centre is this far (fraction of the crop side) from the
    # crop it was found in moved faster than predicted: a second pass from its points.
    catch_up: float = 0.08
    # A jump this large (fraction of the crop side) may have followed the wrong thing: the detector
    # looks in the same frame too.
    jump: float = 0.25
    # A detection overlapping a face's crop this much, in that same-frame search, is the face.
    catch_up_iou: float = 0.1
    # A tracked face whose confidence falls below this fraction of its usual level probably lost
    # its crop to a fast move: the detector looks in the same frame.
    unsure_fraction: float = 0.8
    confidence_update: float = 0.1  # weight of each new frame in a face's usual confidence
    # Predicted motion below this fraction of the crop side is noise: the crop stays put.
    still_motion: float = 0.02
    # At most this many frames' worth of motion ahead: after a pause (a camera's clock runs on) the
    # last speed says nothing about where the face is now.
    max_lead: float = 2.0


@dataclass
class Track:
    id: int  # Tracker.UNCONFIRMED until the model first accepts the face
    crop: CropBox  # the model crop to use in the next frame
    detector_score: float
    smoother: LandmarkSmoother | None = None  # made by the landmarker when the face is first smoothed
    frames: int = 0  # frames with landmarks so far; 0 means the crop still comes from the detector
    unconfirmed: int = 0  # detector runs in a row that did not confirm this face
    points: np.ndarray | None = field(default=None, repr=False)
    time: float | None = None  # timestamp of the frame ``crop`` was measured in
    previous: tuple[CropBox, float] | None = None  # the crop and time before that
    usual_confidence: float = 0.0  # running mean of the face's confidence

    def predicted_crop(self, timestamp: float, config: TrackerConfig) -> CropBox:
        """Where the face will be at ``timestamp``: the last crop moved on at the speed between
        the last two frames."""
        if self.previous is None or self.time is None:
            return self.crop
        before, then = self.previous
        if self.time <= then:
            return self.crop
        ahead = min((timestamp - self.time) / (self.time - then), config.max_lead)
        dx, dy = ahead * (self.crop.cx - before.cx), ahead * (self.crop.cy - before.cy)
        if np.hypot(dx, dy) < config.still_motion * self.crop.side:
            return self.crop
        return CropBox(self.crop.cx + dx, self.crop.cy + dy, self.crop.side, self.crop.roll).snapped()


class Observation(NamedTuple):
    """A track's landmarks in one frame, not yet recorded (``Tracker.update``)."""

    track: Track
    points: np.ndarray  # (68, 2) frame pixels
    confidence: np.ndarray  # (68,) the model's own, 0..1
    crop: CropBox  # around the points: where to look in the next frame


class Tracker:
    """A video's faces: which to follow (``max_faces``, None: all), where to crop each next,
    when to run the detector, and ids that count only faces the model accepted."""

    # The id of a detection the model has not yet accepted as a face: ids go only to faces the
    # model confirms, so detections it rejects (a drawing, a face-like pattern) use none up.
    UNCONFIRMED = -1
    CATCH_UP_PASSES = 3  # at most this many extra passes for a face that moved faster than its crop

    def __init__(self, max_faces: int | None, config: TrackerConfig = TrackerConfig()):
        self.max_faces = max_faces
        self.config = config
        self.tracks: list[Track] = []
        self.frame_number = 0  # of the next frame: the detection schedule goes by it
        self._next_id = 0
        self._lost = False
        self._empty_frames = 0  # frames since a face was last tracked or detected

    def reset(self, restart_ids: bool = False, first_frame: int = 0) -> None:
        """Forget all faces (a jump in time); ``restart_ids``: a new video, whose ids count from 0,
        and whose next frame is number ``first_frame``."""
        self.tracks.clear()
        self._lost = False
        if restart_ids:
            self._next_id, self.frame_number, self._empty_frames = 0, first_frame, 0

    def skip_frame(self) -> None:
        """A frame with no room for a face: every face is gone."""
        self.frame_number += 1
        self.reset()

    def follow(
        self,
        frame: np.ndarray,
        timestamp: float,
        aligner: FaceAligner,
        detector: FaceDetector,
        timings: dict[str, float] | None = None,
    ) -> list[Observation]:
        """Every followed face's landmarks in this frame, new faces from the detector included
        when it is due; ``timings`` (if given) gets the detector's and the model's milliseconds.
        The caller then records each observation (``update``, or ``drop`` for a new one it
        rejects) and ends the frame with ``drop_duplicates`` and ``name_new_faces``, as
        ``Landmarker`` does."""
        timings = {} if timings is None else timings
        number, self.frame_number = self.frame_number, self.frame_number + 1
        started = perf_counter()
        if self.needs_detection(number):
            self._detect(frame, aligner, detector)
        timings["detect"] = timings.get("detect", 0.0) + 1000 * (perf_counter() - started)
        tracks = list(self.tracks)
        if not tracks:
            return []
        crops = [t.predicted_crop(timestamp, self.config) for t in tracks]
        points, confidence = aligner.predict(frame, crops, timings)
        fresh = [i for i, t in enumerate(tracks) if t.frames == 0]
        if fresh:
            aligner.recover(frame, points, confidence, fresh, [crops[i] for i in fresh], timings)
        landed = self._catch_up(frame, points, confidence, tracks, crops, aligner, detector, timings)
        return [Observation(*seen) for seen in zip(tracks, points, confidence, landed)]

    def needs_detection(self, frame_number: int) -> bool:
        """No face yet, a face was lost, or a frame whose number is a multiple of the interval
        (new faces can only come from the detector). The schedule goes by the frame's number, not
        by the frames since the last detection: two runs of a video that started at different
        frames (a chunk and the whole) look on the same frames once their faces agree."""
        return not self.tracks or self._lost or frame_number % self.config.redetect_interval == 0

    def _detect(self, frame: np.ndarray, aligner: FaceAligner, detector: FaceDetector) -> None:
        """New faces from the detector; tracks it does not match get a second look, upright."""
        detections = detector.detect(frame)
        if not detections and not self.tracks and not isinstance(detector, QuarterTurnDetector):
            # No face anywhere: every redetect_interval frames, look for one lying on its side or
            # upside down as well (four times the detector's time).
            if self._empty_frames % self.config.redetect_interval == 0:
                detections = QuarterTurnDetector(detector).detect(frame)
            self._empty_frames += 1
        else:
            self._empty_frames = 0
        missed = self.add_detections([aligner.crop_for(d) for d in detections], [d.score for d in detections])
        for track in missed:
            self.confirm(track, aligner.seen_upright(frame, track.crop, detector))

    def add_detections(self, crops: list[CropBox], scores: list[float]) -> list[Track]:
        """Match detector crops to tracks by overlap; unmatched detections start new tracks.
        Returns the existing tracks no detection matched (see ``confirm``)."""
        self._lost = False
        unmatched = set(range(len(crops)))
        missed = []
        for track in self.tracks:
            overlaps = {i: track.crop.iou(crops[i]) for i in unmatched}
            best = max(overlaps, key=overlaps.get, default=None)
            if best is not None and overlaps[best] >= self.config.match_iou:
                track.detector_score, track.unconfirmed = scores[best], 0
                unmatched.discard(best)
            else:
                missed.append(track)
        for i in sorted(unmatched, key=lambda i: -scores[i]):
            if self.max_faces is not None and len(self.tracks) >= self.max_faces:
                break
            self.tracks.append(Track(self.UNCONFIRMED, crops[i], scores[i]))
        return missed

    def confirm(self, track: Track, confirmed: bool) -> None:
        """Whether a second look (the detector on the track's own upright crop) found the face;
        a track unconfirmed ``max_unconfirmed`` times in a row is dropped."""
        track.unconfirmed = 0 if confirmed else track.unconfirmed + 1
        if track.unconfirmed >= self.config.max_unconfirmed:
            self.drop(track)

    def _catch_up(
        self,
        frame: np.ndarray,
        points: np.ndarray,
        confidence: np.ndarray,
        tracks: list[Track],
        crops: list[CropBox],
        aligner: FaceAligner,
        detector: FaceDetector,
        timings: dict[str, float],
    ) -> list[CropBox]:
        """Tracked faces that moved faster than their crop predicted: one whose points landed far
        from its crop's centre gets a second pass from those points; one the model is then unsure
        of is looked for by the detector in this same frame (not the next), keeping its id.
        Returns the crop around each face's final points (the next frame's, before snapping)."""
        landed = [aligner.crop_around(p) for p in points]
        shifts = [np.hypot(*(new.centre - old.centre)) / old.side for new, old in zip(landed, crops)]
        moved = [i for i, t in enumerate(tracks) if t.frames and shifts[i] > self.config.catch_up]
        # A crop half off the face gives points that only go part of the way: follow them until
        # they stop moving (or CATCH_UP_PASSES).
        for _ in range(self.CATCH_UP_PASSES):
            if not moved:
                break
            used = {i: landed[i] for i in moved}
            points[moved], confidence[moved] = aligner.predict(frame, [landed[i] for i in moved], timings)
            for i in moved:
                landed[i] = aligner.crop_around(points[i])
            moved = [
                i for i in moved if np.hypot(*(landed[i].centre - used[i].centre)) / used[i].side > self.config.catch_up
            ]
        unsure = [
            i
            for i, t in enumerate(tracks)
            if self.is_unsure(t, float(confidence[i].mean())) or (t.frames and shifts[i] > self.config.jump)
        ]
        if not unsure:
            return landed
        started = perf_counter()
        found = [aligner.crop_for(d) for d in detector.detect(frame)]
        timings["detect"] = timings.get("detect", 0.0) + 1000 * (perf_counter() - started)
        for i in unsure:
            near = max(found, key=lambda c: c.iou(crops[i]), default=None)
            if near is None or near.iou(crops[i]) < self.config.catch_up_iou:
                continue
            p, c = aligner.predict(frame, [near], timings)
            p, c = aligner.predict(frame, [aligner.crop_around(p[0])], timings)
            if c.mean() > confidence[i].mean():
                points[i], confidence[i] = p[0], c[0]
                landed[i] = aligner.crop_around(points[i])
        return landed

    def update(self, track: Track, points: np.ndarray, confidence: np.ndarray, crop: CropBox, timestamp: float) -> bool:
        """Record a track's landmarks and the crop around them; a track whose confidence collapsed
        is dropped (False)."""
        mean = float(confidence.mean())
        if mean < self.config.min_confidence:
            self.drop(track)
            return False
        if track.frames and track.time is not None:
            track.previous = (track.crop, track.time)
        track.points, track.time = points, timestamp
        track.crop = crop.snapped()
        update = self.config.confidence_update
        track.usual_confidence = mean if not track.frames else (1 - update) * track.usual_confidence + update * mean
        track.frames += 1
        return True

    def drop(self, track: Track) -> None:
        """A face no longer followed (lost, or a detection the model rejected): look again next frame."""
        self.tracks.remove(track)
        self._lost = True

    def is_unsure(self, track: Track, confidence: float) -> bool:
        """A tracked face whose confidence fell well below its own usual level (or below the floor):
        its crop probably missed a fast move."""
        return track.frames > 0 and (
            confidence < self.config.min_confidence or confidence < self.config.unsure_fraction * track.usual_confidence
        )

    def drop_duplicates(self) -> None:
        """Two tracks that converged on one face: keep the older id (in a still, the higher
        detector score)."""
        kept: list[Track] = []
        # New faces last, in detector-score order (a stable sort keeps it).
        for track in sorted(self.tracks, key=lambda t: (t.id == self.UNCONFIRMED, t.id)):
            if all(track.crop.iou(other.crop) < self.config.duplicate_iou for other in kept):
                kept.append(track)
        self.tracks = kept

    def name_new_faces(self) -> None:
        """Ids for the new tracks that the model accepted and that duplicate no other: ids count
        faces, so nothing else uses one up."""
        for track in self.tracks:
            if track.id == self.UNCONFIRMED:
                track.id, self._next_id = self._next_id, self._next_id + 1


# What a video state (``Landmarker.video_state``) is made of: the classes a saved one may hold, and
# what each of their fields may hold (``state_codec.from_plain`` checks a state read back).
_FILTER_STATE = {"_value": optional(np.ndarray), "_time": NUMBER}
TRACKER_STATE = {
    Tracker: {
        "max_faces": optional(int),
        "config": TrackerConfig,
        "tracks": lambda v: isinstance(v, list) and all(isinstance(t, Track) for t in v),
        "frame_number": int,
        "_next_id": int,
        "_lost": bool,
        "_empty_frames": int,
    },
    TrackerConfig: {f.name: NUMBER for f in fields(TrackerConfig)},
    Track: {
        "id": int,
        "crop": CropBox,
        "detector_score": NUMBER,
        "smoother": optional(LandmarkSmoother),
        "frames": int,
        "unconfirmed": int,
        "points": lambda v: v is None or float_array(None, 2)(v),
        "time": optional(NUMBER),
        "previous": lambda v: v is None or tuple_of(CropBox, NUMBER)(v),
        "usual_confidence": NUMBER,
    },
    CropBox: {f.name: NUMBER for f in fields(CropBox)},
    LandmarkSmoother: {
        "reference": float_array(None, 2),
        "reference_size": NUMBER,
        "motion": AlphaBetaFilter,
        "shape": OneEuroFilter,
    },
    AlphaBetaFilter: {"gain": NUMBER, "_velocity": optional(np.ndarray), **_FILTER_STATE},
    OneEuroFilter: {
        "min_cutoff": NUMBER,
        "beta": NUMBER,
        "derivative_cutoff": NUMBER,
        "_speed": optional(np.ndarray),
        **_FILTER_STATE,
    },
}

"""The real-time pipeline: frame -> detect/track -> crop -> landmarks -> smooth -> pose.

    from pipnet_core import Landmarker
    with Landmarker() as landmarker:               # the shipped model, BlazeFace, smoothing on
        for face in landmarker.process(frame_bgr, timestamp):
            print(face.id, face.points[36], face.pose.yaw)

``Landmarker`` joins a ``FaceAligner`` (crops -> points, no state; align.py) and a ``Tracker``
(which faces, where next, ids: a video's state; tracking.py), and adds smoothing and head pose.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from time import perf_counter

import numpy as np

from pipnet_core.base.errors import PipnetError
from pipnet_core.base.geometry import fit_similarity
from pipnet_core.base.lifetime import Closing
from pipnet_core.base.records import Face, points_box
from pipnet_core.detection.calibration import DetectorCalibration
from pipnet_core.detection.detector import FaceDetector
from pipnet_core.detection.registry import create_detector
from pipnet_core.detection.search import GivenFaces, QuarterTurnDetector, TiledDetector
from pipnet_core.io.frames import as_bgr
from pipnet_core.io.state_codec import from_plain, to_plain
from pipnet_core.model.interface import LandmarkModel
from pipnet_core.pipeline.align import FaceAligner
from pipnet_core.pipeline.plausibility import plausibility
from pipnet_core.pipeline.pose import camera_matrix, estimate_pose
from pipnet_core.pipeline.smoothing import LandmarkSmoother, SmoothingParams
from pipnet_core.pipeline.tracking import TRACKER_STATE, Observation, Tracker, TrackerConfig

STAGES = ("detect", "track", "crop", "infer", "decode", "smooth", "pose")
# How many faces each use looks for unless told: video (process, the GUI, `pipnet annotate` on a
# video, `pipnet bench`) follows one face, the cheapest; stills (process_image, `pipnet detect`,
# `pipnet annotate` on an image) report every face found.
VIDEO_MAX_FACES = 1


def _load_model(model: str | Path | LandmarkModel | None, threads: int) -> LandmarkModel:
    if isinstance(model, LandmarkModel):
        return model
    from pipnet_core.model.onnx import OnnxLandmarkModel

    return OnnxLandmarkModel(model, threads)


def _detector(spec: str | FaceDetector, threshold: float, min_size: int, threads: int) -> FaceDetector:
    return spec if not isinstance(spec, str) else create_detector(spec, threshold, min_size, threads)


class Landmarker(Closing):
    """``detector`` finds faces in video (the short-range BlazeFace by default: fast, made for a
    webcam); ``still_detector`` finds them in stills (``process_image``: both BlazeFace ranges, so
    far and small faces too) and is loaded on first use. ``calibration`` names a detector box
    calibration file (`pipnet calibrate --out`); by default the shipped one. ``tracking``: how
    video faces are followed (``TrackerConfig``).

    It holds ONNX Runtime sessions (the model's, the detectors'): ``close()`` it, or use it as a
    context manager. It closes what it made from names and paths; a model or detector passed in
    as an object stays the caller's to close."""

    def __init__(
        self,
        model: str | Path | LandmarkModel | None = None,
        detector: str | FaceDetector = "blazeface",
        smoothing: SmoothingParams | bool = True,
        max_faces: int | None = VIDEO_MAX_FACES,
        tracking: TrackerConfig = TrackerConfig(),
        detector_threshold: float = 0.5,
        min_face_size: int = 24,
        threads: int = 2,
        pose: bool = True,
        calibration: str | Path | None = None,
        still_detector: str | FaceDetector = "blazeface-both",
        still_threshold: float = 0.6,
        rgb: bool = False,
    ):
        self.aligner = FaceAligner(_load_model(model, threads), DetectorCalibration.load(calibration))
        self.threads = threads
        self.detector = _detector(detector, detector_threshold, min_face_size, threads)
        self._owned = {
            "model": not isinstance(model, LandmarkModel),
            "detector": isinstance(detector, str),
            "still_detector": isinstance(still_detector, str),
        }
        self._still_spec = still_detector
        self._still_detector: FaceDetector | None = None
        # Stills search up to 56 windows (two models, tiles, four turns): a higher score per window
        # keeps their false detections rarer. 99% of real faces score 0.6 or more, also when small
        # (HELEN training faces, 40-90 px tall in a 1280x720 frame).
        self._still_options = (still_threshold, min_face_size)
        self.smoothing = SmoothingParams() if smoothing is True else smoothing or None
        self.tracker = Tracker(max_faces, tracking)
        self.min_face_size = min_face_size
        self.with_pose = pose
        self.rgb = rgb  # frames come in RGB order (PIL, imageio, most deep-learning code), not OpenCV's BGR
        self.timings: dict[str, float] = dict.fromkeys(STAGES, 0.0)  # the last video frame's, in ms
        self._given_intrinsics: tuple[float | None, ...] = (None, None, None, None)
        self._intrinsics: tuple[tuple[int, int], np.ndarray] = ((0, 0), np.eye(3))

    @property
    def model(self) -> LandmarkModel:
        return self.aligner.model

    @property
    def calibration(self) -> DetectorCalibration:
        return self.aligner.calibration

    @property
    def still_detector(self) -> FaceDetector:
        """The detector for stills: tiles of a large image for small faces, and all four quarter
        turns of it for faces on their side or upside down."""
        if self._still_detector is None:
            detector = _detector(self._still_spec, *self._still_options, self.threads)
            self._still_detector = QuarterTurnDetector(TiledDetector(detector))
        return self._still_detector

    # -- settings the GUI changes live ------------------------------------------------------------
    def set_smoothing(self, params: SmoothingParams | None) -> None:
        """Smoothing on, off or retuned; tracked faces keep their filter state (no jump, no reset)."""
        self.smoothing = params
        for track in self.tracker.tracks:
            if track.smoother is not None:
                track.smoother.set_params(params or SmoothingParams())

    def set_max_faces(self, count: int | None) -> None:
        self.tracker.max_faces = count
        if count is not None:
            del self.tracker.tracks[count:]

    def set_camera(
        self, fx: float | None = None, fy: float | None = None, cx: float | None = None, cy: float | None = None
    ) -> None:
        """The camera's intrinsics in pixels, for head pose; None: guessed from the frame size."""
        self._given_intrinsics = (fx, fy, cx, cy)
        self._intrinsics = ((0, 0), np.eye(3))

    def set_detector(self, detector: str | FaceDetector, threshold: float = 0.5) -> None:
        """Another video detector or threshold; the model session and tracked faces stay, the
        old detector is closed (if this landmarker made it)."""
        new = _detector(detector, threshold, self.min_face_size, self.threads)
        if self._owned["detector"]:
            self.detector.close()
        self.detector, self._owned["detector"] = new, isinstance(detector, str)

    def reset(self, restart_ids: bool = False, first_frame: int = 0) -> None:
        """Forget all faces (a jump in time); ``restart_ids``: a new video, whose ids count from 0,
        and whose next frame is number ``first_frame`` (not 0 when a video is taken up in its
        middle: the detector's schedule goes by frame numbers)."""
        self.tracker.reset(restart_ids, first_frame)

    def close(self) -> None:
        """Release the detectors' and the model's sessions (those it made); the object is done."""
        if self._owned["detector"]:
            self.detector.close()
        if self._still_detector is not None and self._owned["still_detector"]:
            self._still_detector.close()
        self._still_detector = None
        if self._owned["model"]:
            self.model.close()

    def video_state(self) -> dict:
        """Everything a video's next frame depends on besides the frame: the tracker (tracks with
        their crops, smoothers and ids, the detection schedule), as plain values and arrays (a
        ``state_codec`` document). An export that stops and goes on restores it
        (``restore_video_state``) and continues exactly as if it had never stopped."""
        return to_plain(self.tracker, TRACKER_STATE)

    def restore_video_state(self, state: dict) -> None:
        """Continue from ``video_state()`` (of a landmarker with the same model and settings)."""
        try:
            tracker = from_plain(state, TRACKER_STATE)
        except (ValueError, TypeError, KeyError):
            tracker = None
        if not isinstance(tracker, Tracker):
            raise PipnetError("the saved video state is not a tracker of this version of pipnet-live")
        self.tracker = tracker

    # -- the pipeline -------------------------------------------------------------------------------
    def process(self, frame: np.ndarray, timestamp: float | None = None) -> list[Face]:
        """Faces in one video frame; ``timestamp`` in seconds drives the smoothing (default 30 fps)."""
        if timestamp is None:
            timestamp = self.tracker.frame_number / 30.0
        self.timings = dict.fromkeys(STAGES, 0.0)
        return self._process(frame, timestamp, self.detector, self.tracker, self.smoothing, self.timings)

    def process_image(self, image: np.ndarray, max_faces: int | None = None, detected_faces=None) -> list[Face]:
        """Faces in a still image: every face the still detector finds (up to ``max_faces``), or
        those the caller found (``detected_faces``: boxes x, y, w, h in pixels, or Detections),
        fresh detection, no tracking history, no smoothing; ids count from 0 in each image.
        Detections whose landmarks score below ``tracking.min_confidence`` are not faces the model
        recognises and are left out. The video state (tracks, ids, schedule) is left as it was."""
        if detected_faces is not None and not len(detected_faces):
            return []
        detector = self.still_detector if detected_faces is None else GivenFaces(detected_faces)
        config = self.tracker.config
        tracker = Tracker(max_faces, replace(config, duplicate_iou=config.still_duplicate_iou))
        faces = self._process(image, 0.0, detector, tracker, None, dict.fromkeys(STAGES, 0.0))
        return [face for face in faces if face.success]

    def _process(
        self,
        frame: np.ndarray,
        timestamp: float,
        detector: FaceDetector,
        tracker: Tracker,
        smoothing: SmoothingParams | None,
        timings: dict[str, float],
    ) -> list[Face]:
        frame = as_bgr(frame, self.rgb)
        if min(frame.shape[:2]) < self.min_face_size:
            tracker.skip_frame()
            return []
        seen = tracker.follow(frame, timestamp, self.aligner, detector, timings)
        return self._faces(tracker, seen, timestamp, frame.shape[1::-1], smoothing, timings)

    def _faces(
        self,
        tracker: Tracker,
        seen: list[Observation],
        timestamp: float,
        frame_size: tuple[int, int],
        smoothing: SmoothingParams | None,
        timings: dict[str, float],
    ) -> list[Face]:
        """Record every track's result, smooth, estimate pose; a lost face is reported once,
        unsuccessful; a duplicate of another track is not reported. In video (the landmarker's own
        tracker, not a still's), a new detection becomes a face (and gets an id) only if its shape
        is plausible too: a rejected one is looked for again in the next frame, whereas a still
        has one chance."""
        video = tracker is self.tracker
        reference = self.aligner.reference
        results, track_ms, smooth_ms, pose_ms = [], 0.0, 0.0, 0.0
        for track, pts, conf, crop in seen:
            t1 = perf_counter()
            # One similarity fit of the mean face per face: the smoother and the plausibility share it.
            fit = fit_similarity(reference, pts.astype(np.float64))
            if video and track.id == tracker.UNCONFIRMED and not self._plausible(pts, conf, fit, frame_size):
                tracker.drop(track)
                continue
            success = tracker.update(track, pts, conf, crop, timestamp)
            t2 = perf_counter()
            if smoothing and success:
                if track.smoother is None:
                    track.smoother = LandmarkSmoother(self.model.info.codec.mean_face, smoothing)
                shown = track.smoother(pts, timestamp, fit)
            else:
                shown = pts
            t3 = perf_counter()
            pose = estimate_pose(shown, self.camera(frame_size)) if self.with_pose else None
            reported = conf * plausibility(pts, reference, pose.yaw if pose else None, fit)
            t4 = perf_counter()
            track_ms, smooth_ms, pose_ms = track_ms + t2 - t1, smooth_ms + t3 - t2, pose_ms + t4 - t3
            results.append((track, shown, reported, pose, success))
        t5 = perf_counter()
        tracker.drop_duplicates()
        tracker.name_new_faces()
        timings.update(track=1000 * (track_ms + perf_counter() - t5), smooth=1000 * smooth_ms, pose=1000 * pose_ms)
        live = {id(t) for t in tracker.tracks}
        faces = []
        for track, shown, reported, pose, success in results:
            # A lost face is reported once; a duplicate, or a detection the model rejected, never.
            if id(track) in live or (not success and track.id != tracker.UNCONFIRMED):
                faces.append(Face(track.id, points_box(shown), track.detector_score, shown, reported, pose, success))
        return faces

    def _plausible(self, points: np.ndarray, confidence: np.ndarray, fit, frame_size: tuple[int, int]) -> bool:
        """Confident once lowered for a near-profile view or a shape unlike a face: drawings and
        face-like patterns score 0.4 raw but 0.2 here, real faces entering a video 0.78 or more."""
        yaw = estimate_pose(points, self.camera(frame_size)).yaw if self.with_pose else None
        factor = plausibility(points, self.aligner.reference, yaw, fit)
        return float(confidence.mean()) * factor >= self.tracker.config.min_confidence

    def camera(self, frame_size: tuple[int, int]) -> np.ndarray:
        """The intrinsics head pose assumes for frames of this size: those given to
        ``set_camera``, the rest guessed (``pose.camera_matrix``). Kept: a video's frames share them."""
        if self._intrinsics[0] != frame_size:
            self._intrinsics = (frame_size, camera_matrix(*frame_size, *self._given_intrinsics))
        return self._intrinsics[1]

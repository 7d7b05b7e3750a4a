"""The real-time pipeline: frame -> detect/track -> crop -> landmarks -> smooth -> pose.

    from pipnet_core import Landmarker
    with Landmarker() as landmarker:               # the shipped model, BlazeFace, smoothing on
        for face in landmarker.process(frame_bgr, timestamp):
            print(face.id, face.points[36], face.pose.yaw)
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter

import numpy as np

from .crop import CropBox, crop_matrix, warp
from .detect import (Closing, Detection, DetectorCalibration, FaceDetector, GivenFaces, QuarterTurnDetector, TiledDetector,
                     create_detector)
from .frames import as_bgr
from .model_interface import LandmarkModel
from .plausibility import plausibility
from .pose import HeadPose, camera_matrix, estimate_pose
from .smooth import LandmarkSmoother, SmoothingParams, centred, fit_similarity
from .track import Tracker

STAGES = ("detect", "track", "crop", "infer", "decode", "smooth", "pose")
# How many faces each use looks for unless told: video (process, the GUI, `pipnet annotate` on a
# video, `pipnet bench`) follows one face, the cheapest; stills (process_image, `pipnet detect`,
# `pipnet annotate` on an image) report every face found.
VIDEO_MAX_FACES = 1


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


def _load_model(model: str | Path | LandmarkModel | None, threads: int) -> LandmarkModel:
    if isinstance(model, LandmarkModel):
        return model
    from .onnx_runner import OnnxLandmarkModel

    return OnnxLandmarkModel(model, threads)


def _detector(spec: str | FaceDetector, threshold: float, min_size: int, threads: int) -> FaceDetector:
    return spec if not isinstance(spec, str) else create_detector(spec, threshold, min_size, threads)


class Landmarker(Closing):
    """``detector`` finds faces in video (the short-range BlazeFace by default: fast, made for a
    webcam); ``still_detector`` finds them in stills (``process_image``: both BlazeFace ranges, so
    far and small faces too) and is loaded on first use. ``calibration`` names a detector box
    calibration file (`pipnet calibrate --out`); by default the shipped one.

    It holds ONNX Runtime sessions (the model's, the detectors'): ``close()`` it, or use it as a
    context manager. It closes what it made from names and paths; a model or detector passed in
    as an object stays the caller's to close."""

    # A fresh face whose roll moved more than this between its first two passes gets a third.
    REFINE_ROLL_DEG = 10.0
    # A fresh face scoring below this may be cropped upside down or on its side: other turns are
    # tried. Upright real faces score 0.67 and up on 99% of HELEN and 0.54 of YouTube Faces test.
    UNSURE_CONFIDENCE = 0.55
    # A tracked face whose new points' crop centre is this far (fraction of the crop side) from the
    # crop it was found in moved faster than predicted: a second pass from its points.
    CATCH_UP = 0.08
    # A jump this large (fraction of the crop side) may have followed the wrong thing: the detector
    # looks in the same frame too.
    JUMP = 0.25

    def __init__(self, model: str | Path | LandmarkModel | None = None, detector: str | FaceDetector = "blazeface",
                 smoothing: SmoothingParams | bool = True, max_faces: int | None = VIDEO_MAX_FACES, redetect_interval: int = 10,
                 min_confidence: float = 0.4, detector_threshold: float = 0.5, min_face_size: int = 24,
                 threads: int = 2, pose: bool = True, calibration: str | Path | None = None,
                 still_detector: str | FaceDetector = "blazeface-both", still_threshold: float = 0.6, rgb: bool = False):
        self.model = _load_model(model, threads)
        self.threads = threads
        self.detector = _detector(detector, detector_threshold, min_face_size, threads)
        self._owned = {"model": not isinstance(model, LandmarkModel), "detector": isinstance(detector, str),
                       "still_detector": isinstance(still_detector, str)}
        self._still_spec = still_detector
        self._still_detector: FaceDetector | None = None
        # Stills search up to 56 windows (two models, tiles, four turns): a higher score per window
        # keeps their false detections rarer. 99% of real faces score 0.6 or more, also when small
        # (HELEN training faces, 40-90 px tall in a 1280x720 frame).
        self._still_options = (still_threshold, min_face_size)
        self.calibration = DetectorCalibration.load(calibration)
        self.smoothing = SmoothingParams() if smoothing is True else smoothing or None
        self.tracker = Tracker(max_faces, redetect_interval, min_confidence)
        self.min_face_size = min_face_size
        self.with_pose = pose
        self.rgb = rgb  # frames come in RGB order (PIL, imageio, most deep-learning code), not OpenCV's BGR
        self.timings: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self._frames = 0
        self._empty_frames = 0  # frames since a face was last tracked or detected
        self._given_intrinsics: tuple[float | None, ...] = (None, None, None, None)
        self._intrinsics: tuple[tuple[int, int], np.ndarray] = ((0, 0), np.eye(3))
        self._reference = centred(self.model.info.codec.mean_face)  # what shapes are fitted to

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
            track.smoother.set_params(params or SmoothingParams())

    def set_max_faces(self, count: int | None) -> None:
        self.tracker.max_faces = count
        if count is not None:
            del self.tracker.tracks[count:]

    def set_camera(self, fx: float | None = None, fy: float | None = None, cx: float | None = None,
                   cy: float | None = None) -> None:
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

    def _new_smoother(self) -> LandmarkSmoother:
        return LandmarkSmoother(self.model.info.codec.mean_face, self.smoothing or SmoothingParams())

    def reset(self, restart_ids: bool = False, first_frame: int = 0) -> None:
        """Forget all faces (a jump in time); ``restart_ids``: a new video, whose ids count from 0,
        and whose next frame is number ``first_frame`` (not 0 when a video is taken up in its
        middle: the detector's schedule goes by frame numbers)."""
        self.tracker.reset(restart_ids)
        if restart_ids:
            self._frames, self._empty_frames = first_frame, 0

    def close(self) -> None:
        """Release the detectors' and the model's sessions (those it made); the object is done."""
        if self._owned["detector"]:
            self.detector.close()
        if self._still_detector is not None and self._owned["still_detector"]:
            self._still_detector.close()
        self._still_detector = None
        if self._owned["model"]:
            self.model.close()

    # -- the pipeline -------------------------------------------------------------------------------
    def detector_crop(self, detection: Detection) -> CropBox:
        """The model crop a detection implies, through its detector's calibrated box mapping."""
        box = self.calibration.landmark_box(detection)
        return CropBox(box.cx, box.cy, box.side * self.model.info.crop_scale, box.roll)

    def process(self, frame: np.ndarray, timestamp: float | None = None) -> list[Face]:
        """Faces in one video frame; ``timestamp`` in seconds drives the smoothing (default 30 fps)."""
        return self._process(frame, timestamp, self.detector, video=True)

    def _process(self, frame: np.ndarray, timestamp: float | None, detector: FaceDetector, video: bool) -> list[Face]:
        timings = dict.fromkeys(STAGES, 0.0)
        self.timings = timings
        frame = as_bgr(frame, self.rgb)
        if timestamp is None:
            timestamp = self._frames / 30.0
        number, self._frames = self._frames, self._frames + 1
        if min(frame.shape[:2]) < self.min_face_size:
            self.tracker.reset()
            return []
        t0 = perf_counter()
        if self.tracker.needs_detection(number):
            self._detect(frame, detector)
        timings["detect"] = 1000 * (perf_counter() - t0)
        tracks = list(self.tracker.tracks)
        if not tracks:
            return []
        crops = [t.predicted_crop(timestamp) for t in tracks]
        points, confidence = self._predict(frame, crops)
        fresh = [i for i, t in enumerate(tracks) if t.frames == 0]
        if fresh:
            self._refine(frame, points, confidence, fresh, [tracks[i].crop.roll for i in fresh])
            self._try_other_turns(frame, points, confidence, fresh)
        landed = self._catch_up(frame, points, confidence, tracks, crops, detector)
        return self._faces(tracks, points, confidence, landed, timestamp, frame.shape[1::-1], timings, video)

    def _predict(self, frame: np.ndarray, crops: list[CropBox]) -> tuple[np.ndarray, np.ndarray]:
        """The model on crops of one frame as one batch; its time counts in this frame's stages."""
        size = self.model.info.input_size
        return self.model.predict_in_frames([frame] * len(crops), [crop_matrix(c, size) for c in crops], self.timings)

    def _detect(self, frame: np.ndarray, detector: FaceDetector) -> None:
        """New faces from the detector; tracks it does not match get a second look, upright."""
        tracker = self.tracker
        detections = detector.detect(frame)
        if not detections and not tracker.tracks and not isinstance(detector, QuarterTurnDetector):
            # No face anywhere: every redetect_interval frames, look for one lying on its side or
            # upside down as well (four times the detector's time).
            if self._empty_frames % tracker.redetect_interval == 0:
                detections = QuarterTurnDetector(detector).detect(frame)
            self._empty_frames += 1
        else:
            self._empty_frames = 0
        missed = tracker.add_detections([self.detector_crop(d) for d in detections], [d.score for d in detections],
                                        self._new_smoother)
        for track in missed:
            tracker.confirm(track, self._seen_upright(frame, track.crop, detector))

    def _catch_up(self, frame: np.ndarray, points: np.ndarray, confidence: np.ndarray, tracks: list,
                  crops: list[CropBox], detector: FaceDetector) -> list[CropBox]:
        """Tracked faces that moved faster than their crop predicted: one whose points landed far
        from its crop's centre gets a second pass from those points; one the model is then unsure
        of is looked for by the detector in this same frame (not the next), keeping its id.
        Returns the crop around each face's final points (the next frame's, before snapping)."""
        scale = self.model.info.crop_scale
        landed = [CropBox.around_points(p, scale) for p in points]
        shifts = [np.hypot(*(new.centre - old.centre)) / old.side for new, old in zip(landed, crops)]
        moved = [i for i, t in enumerate(tracks) if t.frames and shifts[i] > self.CATCH_UP]
        if moved:
            points[moved], confidence[moved] = self._predict(frame, [landed[i] for i in moved])
            for i in moved:
                landed[i] = CropBox.around_points(points[i], scale)
        unsure = [i for i, t in enumerate(tracks) if self.tracker.is_unsure(t, float(confidence[i].mean()))
                  or (t.frames and shifts[i] > self.JUMP)]
        if not unsure:
            return landed
        started = perf_counter()
        found = [self.detector_crop(d) for d in detector.detect(frame)]
        self.timings["detect"] += 1000 * (perf_counter() - started)
        for i in unsure:
            near = max(found, key=lambda c: c.iou(crops[i]), default=None)
            if near is None or near.iou(crops[i]) < 0.1:
                continue
            p, c = self._predict(frame, [near])
            again = CropBox.around_points(p[0], scale)
            p, c = self._predict(frame, [again])
            if c.mean() > confidence[i].mean():
                points[i], confidence[i] = p[0], c[0]
                landed[i] = CropBox.around_points(points[i], scale)
        return landed

    def _faces(self, tracks: list, points: np.ndarray, confidence: np.ndarray, crops: list[CropBox], timestamp: float,
               frame_size: tuple[int, int], timings: dict[str, float], video: bool) -> list[Face]:
        """Record every track's result, smooth, estimate pose; a lost face is reported once,
        unsuccessful; a duplicate of another track is not reported. In video, a new detection
        becomes a face (and gets an id) only if its shape is plausible too: a rejected one is
        looked for again in the next frame, whereas a still has one chance."""
        tracker = self.tracker
        results, track_ms, smooth_ms, pose_ms = [], 0.0, 0.0, 0.0
        for track, pts, conf, crop in zip(tracks, points, confidence, crops):
            t1 = perf_counter()
            # One similarity fit of the mean face per face: the smoother and the plausibility share it.
            fit = fit_similarity(self._reference, pts.astype(np.float64))
            if video and track.id == tracker.UNCONFIRMED and not self._plausible(pts, conf, fit, frame_size):
                tracker.drop(track)
                continue
            success = tracker.update(track, pts, conf, crop, timestamp)
            t2 = perf_counter()
            shown = track.smoother(pts, timestamp, fit) if self.smoothing and success else pts
            t3 = perf_counter()
            pose = estimate_pose(shown, self.camera(frame_size)) if self.with_pose else None
            reported = conf * plausibility(pts, self._reference, pose.yaw if pose else None, fit)
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
        factor = plausibility(points, self._reference, yaw, fit)
        return float(confidence.mean()) * factor >= self.tracker.min_confidence

    def camera(self, frame_size: tuple[int, int]) -> np.ndarray:
        """The intrinsics head pose assumes for frames of this size: those given to
        ``set_camera``, the rest guessed (``pose.camera_matrix``). Kept: a video's frames share them."""
        if self._intrinsics[0] != frame_size:
            self._intrinsics = (frame_size, camera_matrix(*frame_size, *self._given_intrinsics))
        return self._intrinsics[1]

    def _seen_upright(self, frame: np.ndarray, crop: CropBox, detector: FaceDetector) -> bool:
        """Does the detector find a face in this crop turned upright (with some margin)? Faces the
        frame-wide search misses because they are tilted are found here, so only a track that
        follows no face goes unconfirmed."""
        size = 2 * self.model.info.input_size
        view = CropBox(crop.cx, crop.cy, crop.side * 1.5, crop.roll)
        return bool(detector.detect(warp(frame, crop_matrix(view, size), size)))

    def video_state(self) -> bytes:
        """Everything a video's next frame depends on besides the frame: the tracks with their
        crops, smoothers and ids, and the detection schedule. An export that stops and goes on
        restores it (``restore_video_state``) and continues exactly as if it had never stopped."""
        return pickle.dumps((self.tracker, self._frames, self._empty_frames))

    def restore_video_state(self, state: bytes) -> None:
        """Continue from ``video_state()`` (of a landmarker with the same model and settings)."""
        self.tracker, self._frames, self._empty_frames = pickle.loads(state)

    def _refine(self, frame: np.ndarray, points: np.ndarray, confidence: np.ndarray, indices: list[int],
                rolls: list[float]) -> None:
        """Run faces whose crop came from the detector again, from their own landmarks: the crop
        the model was trained on, upright by the points' own eye line. When that roll differs much
        from the detector's (rough eye keypoints on a tilted face), once more."""
        scale = self.model.info.crop_scale
        for _ in range(2):
            crops = [CropBox.around_points(points[i], scale) for i in indices]
            points[indices], confidence[indices] = self._predict(frame, crops)
            moved = [abs((c.roll - r + 180) % 360 - 180) > self.REFINE_ROLL_DEG for c, r in zip(crops, rolls)]
            indices, rolls = [i for i, m in zip(indices, moved) if m], [c.roll for c, m in zip(crops, moved) if m]
            if not indices:
                return

    def _try_other_turns(self, frame: np.ndarray, points: np.ndarray, confidence: np.ndarray, indices: list[int]) -> None:
        """A fresh face the model is unsure of may be cropped upside down or on its side (a hit
        in a turned frame, rough eye keypoints): crop it turned by 180, 90 and -90 degrees (every
        unsure face's turns in one batch), run the most confident turn once more from its own
        points, and keep that if the model is surer of it than of the first crop."""
        scale = self.model.info.crop_scale
        unsure = [i for i in indices if confidence[i].mean() < self.UNSURE_CONFIDENCE]
        if not unsure:
            return
        turns = (180.0, 90.0, -90.0)
        boxes = [CropBox.around_points(points[i], scale) for i in unsure]
        p, c = self._predict(frame, [CropBox(b.cx, b.cy, b.side, b.roll + turn) for b in boxes for turn in turns])
        best = [k * len(turns) + int(np.argmax(c[k * len(turns):(k + 1) * len(turns)].mean(axis=1)))
                for k in range(len(unsure))]
        p, c = self._predict(frame, [CropBox.around_points(p[m], scale) for m in best])
        for k, i in enumerate(unsure):
            if c[k].mean() > confidence[i].mean():
                points[i], confidence[i] = p[k], c[k]

    def process_image(self, image: np.ndarray, max_faces: int | None = None, detected_faces=None) -> list[Face]:
        """Faces in a still image: every face the still detector finds (up to ``max_faces``), or
        those the caller found (``detected_faces``: boxes x, y, w, h in pixels, or Detections),
        fresh detection, no tracking history, no smoothing; ids count from 0 in each image.
        Detections whose landmarks score below ``min_confidence`` are not faces the model
        recognises and are left out. The video state (tracks, ids, schedule) is left as it was."""
        if detected_faces is not None and not len(detected_faces):
            return []
        detector = self.still_detector if detected_faces is None else GivenFaces(detected_faces)
        video = (self.tracker, self._frames, self._empty_frames, self.smoothing, self.timings)
        # Two crops of one face (found by both ranges, in tiles and turns) overlap by a third or
        # more; two people in a photo rarely do.
        self.tracker = Tracker(max_faces, self.tracker.redetect_interval, self.tracker.min_confidence, duplicate_iou=0.3)
        self.smoothing = None
        try:
            return [face for face in self._process(image, 0.0, detector, video=False) if face.success]
        finally:
            self.tracker, self._frames, self._empty_frames, self.smoothing, self.timings = video

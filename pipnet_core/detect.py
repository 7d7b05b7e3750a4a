"""Face detection: MediaPipe's BlazeFace by default, OpenCV's Haar cascade as fallback.

BlazeFace comes in two models, both bundled with mediapipe: short range (faces within about 2 m
of a webcam, 128 px input) and full range (small and far faces, 192 px input). Each is best where
the other is weak, so "mediapipe-both" runs the two and merges what they find.

BlazeFace also places the two eyes, which give the face's roll, so the first crop of a new face is
already upright. For stills, ``QuarterTurnDetector`` also searches the frame turned by 90, 180 and
270 degrees, where a detector made for upright faces finds faces lying on their side or upside
down, and ``TiledDetector`` searches overlapping tiles of a large frame for small, far faces.

Detector boxes are not the crop the landmark model was trained on (a box around the 68 points,
enlarged, upright). ``BoxCalibration`` maps one to the other with offsets (in the face's upright
frame) and a scale measured on training data by ``pipnet calibrate``; the shipped mappings are in
models/detector_calibration.json, one entry per detector model, and a user's own calibration is a
file of the same form passed explicitly (``--calibration``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from .crop import CropBox, box_iou, rotation
from .errors import PipnetError
from .resources import calibration_file

log = logging.getLogger(__name__)
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


class Closing:
    """``with detector:`` closes it at the end (native graphs and their threads)."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class BoxCalibration:
    """Landmark box (centre, longer side) relative to a detector box, in units of the box size,
    with the centre offset measured in the face's upright frame."""

    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0

    def landmark_box(self, detection: Detection) -> CropBox:
        """The detector's estimate of the upright landmark box: centre, longer side and roll."""
        x, y, w, h = detection.box
        size = np.sqrt(w * h)
        offset = rotation(detection.roll) @ (self.dx * size, self.dy * size)
        return CropBox(x + w / 2 + offset[0], y + h / 2 + offset[1], self.scale * size, detection.roll)

    @classmethod
    def fit(cls, detections: list[Detection], landmark_boxes: list[CropBox]) -> "BoxCalibration":
        """Medians over matched pairs: robust to the odd wrong detection."""
        rel = []
        for det, box in zip(detections, landmark_boxes):
            x, y, w, h = det.box
            size = np.sqrt(w * h)
            offset = rotation(det.roll).T @ (box.cx - x - w / 2, box.cy - y - h / 2)
            rel.append((offset[0] / size, offset[1] / size, box.side / size))
        dx, dy, scale = np.median(np.array(rel), axis=0)
        return cls(round(float(dx), 4), round(float(dy), 4), round(float(scale), 4))


@dataclass(frozen=True)
class DetectorCalibration:
    """The box mappings of every detector model, from one file: the shipped one, or a user's own
    written by `pipnet calibrate --out` (used only when named). Exports record which, by sha256."""

    path: Path
    mappings: dict[str, BoxCalibration]
    sha256: str
    shipped: bool

    @classmethod
    def load(cls, path: str | Path | None = None) -> "DetectorCalibration":
        """A missing or foreign file is an error, and so is a user's file without a mapping the
        shipped file has: without it every crop of that detector would be off by up to 15% of the face."""
        shipped_path = calibration_file()
        path = Path(path) if path else shipped_path
        try:
            data = path.read_bytes()
            mappings = {name: BoxCalibration(**values) for name, values in json.loads(data).items()}
        except OSError as exc:
            raise PipnetError(f"{path}: cannot read the detector calibration ({exc.strerror})") from None
        except (ValueError, TypeError, AttributeError) as exc:
            raise PipnetError(f"{path}: not a detector calibration ({exc})") from None
        shipped = path.resolve() == shipped_path.resolve()
        if not shipped:
            missing = sorted(set(cls.load().mappings) - set(mappings))
            if missing:
                raise PipnetError(f"{path}: no mapping for detector {missing[0]} (`pipnet calibrate --out` writes every one)")
        return cls(path, mappings, hashlib.sha256(data).hexdigest(), shipped)

    def landmark_box(self, detection: Detection) -> CropBox:
        """The detection's landmark box through its detector model's mapping."""
        return self.mappings.get(detection.source, BoxCalibration()).landmark_box(detection)

    def fields(self) -> dict:
        """What an export says of it."""
        return {"detector_calibration": "shipped" if self.shipped else str(self.path),
                "detector_calibration_sha256": self.sha256}


def save_calibration(fitted: dict[str, BoxCalibration], path: Path) -> None:
    """Write a calibration file for ``Landmarker(calibration=path)``: the mappings ``path`` already
    holds (else the shipped ones), with the fitted detectors' replaced. Never the shipped file:
    a package that changed under its users would change every later run without a trace."""
    from .writers import write_json

    path = Path(path)
    if path.resolve() == calibration_file().resolve():
        raise PipnetError(f"{path}: is the shipped calibration; write a file of your own and pass it with --calibration")
    current = DetectorCalibration.load(path if path.is_file() else None)
    write_json(path, {name: asdict(mapping) for name, mapping in (current.mappings | fitted).items()})


@contextmanager
def quiet_native_stderr():
    """MediaPipe's C++ (glog, TFLite) writes start-up chatter straight to file descriptor 2;
    hide it while the graph loads so users see only our messages."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class MediaPipeDetector(Closing):
    """BlazeFace via mediapipe's bundled models (no download): short or full range."""

    RANGES = {"short": 0, "full": 1}

    def __init__(self, min_score: float = 0.5, min_size: int = 24, model_range: str = "short"):
        os.environ.setdefault("GLOG_minloglevel", "2")
        self.name = "mediapipe" if model_range == "short" else f"mediapipe-{model_range}"
        self.min_size, self.min_score = min_size, min_score
        with quiet_native_stderr():
            import mediapipe as mp

            self._detector = mp.solutions.face_detection.FaceDetection(
                model_selection=self.RANGES[model_range], min_detection_confidence=min_score)
            self._detector.process(np.zeros((64, 64, 3), np.uint8))  # warm-up: loads the TFLite graph

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        h, w = frame_bgr.shape[:2]
        result = self._detector.process(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
        found = []
        for det in result.detections or ():
            rel = det.location_data.relative_bounding_box
            box = (rel.xmin * w, rel.ymin * h, rel.width * w, rel.height * h)
            # Keypoints 0 and 1: the eye on the left of an upright face in the picture (the
            # person's right eye), then the other.
            right, left = det.location_data.relative_keypoints[:2]
            eyes = (right.x * w, right.y * h, left.x * w, left.y * h)
            # MediaPipe's own threshold lets lower scores through (0.52 at a 0.6 setting, seen
            # on a turned photo): check again.
            if min(box[2], box[3]) >= self.min_size and det.score[0] >= self.min_score:
                found.append(Detection(box, float(det.score[0]), self.name, eyes))
        return found

    def close(self) -> None:
        self._detector.close()


class HaarDetector(Closing):
    """OpenCV's frontal-face Haar cascade: slower and less robust, but needs only OpenCV."""

    name = "haar"

    def __init__(self, min_score: float = 0.5, min_size: int = 24):
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise PipnetError(f"{path}: Haar cascade not found (OpenCV 4 ships it; OpenCV 5 does not)")
        self.min_size = min_size
        # The cascade's score is a neighbour count; map the 0..1 threshold onto 3..8 neighbours.
        self.min_neighbours = int(round(3 + 5 * min_score))

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        grey = cv2.equalizeHist(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY))
        boxes, _, weights = self._cascade.detectMultiScale3(
            grey, scaleFactor=1.1, minNeighbors=self.min_neighbours, minSize=(self.min_size, self.min_size),
            outputRejectLevels=True)
        return [Detection(tuple(float(v) for v in box), float(1 / (1 + np.exp(-wt))), self.name)
                for box, wt in zip(boxes, np.ravel(weights))]


def merge_detections(detections: list[Detection], overlap: float = 0.3) -> list[Detection]:
    """One detection per face: the highest-scoring of those whose boxes overlap."""
    kept: list[Detection] = []
    for det in sorted(detections, key=lambda d: -d.score):
        if all(box_iou(det.box, other.box) < overlap for other in kept):
            kept.append(det)
    return kept


class CombinedDetector(Closing):
    """Several detectors on the same frame, their detections merged (short + full range BlazeFace)."""

    def __init__(self, name: str, detectors: list[FaceDetector]):
        self.name, self.detectors = name, detectors

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        return merge_detections([d for detector in self.detectors for d in detector.detect(frame_bgr)])

    def close(self) -> None:
        for detector in self.detectors:
            detector.close()


class _WiderSearch(Closing):
    """A detector run on the whole frame and on more views of it (each subclass says which),
    its detections mapped back to the frame and merged."""

    def __init__(self, detector: FaceDetector):
        self.detector = detector
        self.name = detector.name

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        return merge_detections(list(self.detector.detect(frame_bgr)) + self._more(frame_bgr))

    def _more(self, frame_bgr: np.ndarray) -> list[Detection]:
        raise NotImplementedError

    def close(self) -> None:
        self.detector.close()


class TiledDetector(_WiderSearch):
    """A detector on the whole frame and, when the frame is large, on overlapping tiles of it.
    BlazeFace sees the whole frame shrunk to its input (128 or 192 px), where a face a few
    percent of a large frame's width is a few pixels; in a tile it is 2-3 times larger. A tile
    detection touching the tile's inner edge is a cut face and is dropped: faces larger than a
    tile are the whole-frame pass's."""

    TILE_FRACTION = 0.75  # tile side / the frame's shorter side
    MIN_FRAME_SIDE = 480  # smaller frames: the whole-frame pass only

    def _more(self, frame_bgr: np.ndarray) -> list[Detection]:
        height, width = frame_bgr.shape[:2]
        if min(height, width) < self.MIN_FRAME_SIDE:
            return []
        side = int(min(height, width) * self.TILE_FRACTION)
        found = []
        for x in _tile_starts(width, side):
            for y in _tile_starts(height, side):
                tile = (x, y, side, width, height)
                found += [_shift(d, x, y) for d in self.detector.detect(frame_bgr[y:y + side, x:x + side])
                          if _inside_tile(d.box, tile)]
        return found


def _tile_starts(length: int, side: int) -> list[int]:
    """Tile offsets along one axis, overlapping by at least a quarter of a tile."""
    count = int(np.ceil((length - side) / (0.75 * side))) + 1
    return sorted({int(round(v)) for v in np.linspace(0, length - side, count)})


def _inside_tile(box: tuple[float, ...], tile: tuple[int, int, int, int, int]) -> bool:
    """Clear of every tile edge that is not also the frame's edge (a face cut there is partial)."""
    x, y, side, width, height = tile
    margin = 0.02 * side
    bx, by, bw, bh = box
    return ((x == 0 or bx > margin) and (y == 0 or by > margin)
            and (x + side >= width or bx + bw < side - margin) and (y + side >= height or by + bh < side - margin))


def _shift(det: Detection, dx: int, dy: int) -> Detection:
    x, y, w, h = det.box
    eyes = None if det.eyes is None else tuple(v + (dx if i % 2 == 0 else dy) for i, v in enumerate(det.eyes))
    return replace(det, box=(x + dx, y + dy, w, h), eyes=eyes)


# cv2.rotate codes for the frame turned clockwise by 90, 180 and 270 degrees.
_TURNS = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


class QuarterTurnDetector(_WiderSearch):
    """A detector run on the frame and on the frame turned by 90, 180 and 270 degrees: detectors
    made for upright faces miss faces lying on their side or upside down. Four times the
    detector's time: stills use it, video only now and then while no face is tracked (see
    ``Landmarker``)."""

    def _more(self, frame_bgr: np.ndarray) -> list[Detection]:
        height, width = frame_bgr.shape[:2]
        found = []
        for degrees, code in _TURNS.items():
            to_frame = _from_turned(degrees, width, height)
            found += [_turn_back(d, to_frame, degrees) for d in self.detector.detect(cv2.rotate(frame_bgr, code))]
        return found


def _from_turned(degrees: int, width: int, height: int) -> np.ndarray:
    """2x3 matrix from coordinates in the frame turned clockwise by ``degrees`` back to the
    frame's own, continuous (0..width), as detector boxes are."""
    return {90: np.array([[0.0, 1, 0], [-1, 0, height]]),
            180: np.array([[-1.0, 0, width], [0, -1, height]]),
            270: np.array([[0.0, -1, width], [1, 0, 0]])}[degrees]


def _turn_back(det: Detection, to_frame: np.ndarray, degrees: int) -> Detection:
    """A detection in the turned frame, in the original frame's pixels."""
    x, y, w, h = det.box
    corners = np.array([[x, y], [x + w, y + h]]) @ to_frame[:, :2].T + to_frame[:, 2]
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    eyes = None
    if det.eyes is not None:
        eyes = tuple((np.reshape(det.eyes, (2, 2)) @ to_frame[:, :2].T + to_frame[:, 2]).ravel().tolist())
    # A face upright in the frame turned clockwise by d degrees has a roll of -d in the original.
    return replace(det, box=(float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])),
                   eyes=eyes, roll_hint=float(-degrees))


DETECTORS = ("mediapipe", "mediapipe-full", "mediapipe-both", "haar")


def _build(name: str, min_score: float, min_size: int) -> FaceDetector:
    if name == "haar":
        return HaarDetector(min_score, min_size)
    if name == "mediapipe-both":
        return CombinedDetector(name, [MediaPipeDetector(min_score, min_size, "short"),
                                       MediaPipeDetector(min_score, min_size, "full")])
    return MediaPipeDetector(min_score, min_size, "full" if name == "mediapipe-full" else "short")


def create_detector(name: str = "mediapipe", min_score: float = 0.5, min_size: int = 24) -> FaceDetector:
    """The named detector ("mediapipe": BlazeFace short range, "mediapipe-full": full range,
    "mediapipe-both": the two merged, "haar"); if MediaPipe cannot load, the Haar cascade with a
    visible warning."""
    if name not in DETECTORS:
        raise PipnetError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}")
    try:
        return _build(name, min_score, min_size)
    except PipnetError:
        raise
    except Exception as exc:  # an import or model-loading failure inside mediapipe
        if name == "haar":
            raise PipnetError(f"{name} detector failed to load: {exc}") from None
        message = f"MediaPipe face detector unavailable ({type(exc).__name__}: {exc}); using OpenCV's Haar cascade"
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        log.warning(message)
        return HaarDetector(min_score, min_size)


def match_detection(detections: list[Detection], landmark_box: CropBox, calibration: BoxCalibration) -> Detection | None:
    """The detection whose implied landmark box overlaps the given one most (IoU >= 0.3)."""
    scored = [(calibration.landmark_box(d).iou(landmark_box), d) for d in detections]
    best = max(scored, key=lambda pair: pair[0], default=(0.0, None))
    return best[1] if best[0] >= 0.3 else None


def calibrate(detector: FaceDetector, samples, progress=None) -> dict[str, tuple[BoxCalibration, int]]:
    """Fit the detector-box -> landmark-box mapping on labeled faces, for each detector model
    that found them ("mediapipe-both" fits both ranges); returns each mapping and the number of
    faces it was fitted on. A first pass with a generic mapping picks the right detection."""
    from .data import load_image

    rough = BoxCalibration(0.0, 0.0, 1.0)
    matched: dict[str, tuple[list[Detection], list[CropBox]]] = {}
    for i, sample in enumerate(samples, start=1):
        box = CropBox.around_points(sample.points, 1.0)
        image = load_image(sample.image_path)
        # Each model's own detections: a merged list would keep only one model's box per face.
        for model in getattr(detector, "detectors", [detector]):
            found = match_detection(model.detect(image), box, rough)
            if found is not None:
                detections, boxes = matched.setdefault(found.source, ([], []))
                detections.append(found)
                boxes.append(box)
        if progress:
            progress(i, len(samples))
    fitted = {source: (BoxCalibration.fit(dets, boxes), len(dets)) for source, (dets, boxes) in matched.items()
              if len(dets) >= 10}
    if not fitted:
        raise PipnetError("the detector matched fewer than 10 faces; cannot calibrate")
    return fitted

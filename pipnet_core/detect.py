"""Face detection: MediaPipe's BlazeFace (short range) by default, OpenCV's Haar cascade as fallback.

Detector boxes are not the crop the landmark model was trained on (a box around the 68 points,
enlarged). ``BoxCalibration`` maps one to the other with offsets and a scale measured on training
data by ``pipnet calibrate``; the result is kept in models/detector_calibration.json.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from .crop import CropBox
from .errors import PipnetError

log = logging.getLogger(__name__)
CALIBRATION_FILE = Path(__file__).resolve().parent.parent / "models" / "detector_calibration.json"


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x, y, w, h in frame pixels
    score: float


class FaceDetector(Protocol):
    name: str

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]: ...


@dataclass(frozen=True)
class BoxCalibration:
    """Landmark box (centre, longer side) relative to a detector box, in units of the box size."""

    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0

    def landmark_box(self, detection: Detection) -> CropBox:
        """The detector's estimate of the landmark bounding box, as centre and longer side."""
        x, y, w, h = detection.box
        size = np.sqrt(w * h)
        return CropBox(x + w / 2 + self.dx * size, y + h / 2 + self.dy * size, self.scale * size)

    @classmethod
    def fit(cls, detections: list[Detection], landmark_boxes: list[CropBox]) -> "BoxCalibration":
        """Medians over matched pairs: robust to the odd wrong detection."""
        rel = []
        for det, box in zip(detections, landmark_boxes):
            x, y, w, h = det.box
            size = np.sqrt(w * h)
            rel.append(((box.cx - x - w / 2) / size, (box.cy - y - h / 2) / size, box.side / size))
        dx, dy, scale = np.median(np.array(rel), axis=0)
        return cls(round(float(dx), 4), round(float(dy), 4), round(float(scale), 4))


def load_calibrations(path: Path = CALIBRATION_FILE) -> dict[str, BoxCalibration]:
    if not path.is_file():
        return {}
    return {name: BoxCalibration(**values) for name, values in json.loads(path.read_text()).items()}


def save_calibration(name: str, calibration: BoxCalibration, path: Path = CALIBRATION_FILE) -> None:
    data = {k: asdict(v) for k, v in load_calibrations(path).items()}
    data[name] = asdict(calibration)
    path.write_text(json.dumps(data, indent=2) + "\n")


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


class MediaPipeDetector:
    """BlazeFace short range via mediapipe's bundled model (no download)."""

    name = "mediapipe"

    def __init__(self, min_score: float = 0.5, min_size: int = 24):
        os.environ.setdefault("GLOG_minloglevel", "2")
        self.min_size = min_size
        with quiet_native_stderr():
            import mediapipe as mp

            self._detector = mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=min_score)
            self._detector.process(np.zeros((64, 64, 3), np.uint8))  # warm-up: loads the TFLite graph

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        h, w = frame_bgr.shape[:2]
        result = self._detector.process(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
        found = []
        for det in result.detections or ():
            rel = det.location_data.relative_bounding_box
            box = (rel.xmin * w, rel.ymin * h, rel.width * w, rel.height * h)
            if min(box[2], box[3]) >= self.min_size:
                found.append(Detection(box, float(det.score[0])))
        return found

    def close(self) -> None:
        self._detector.close()


class HaarDetector:
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
        return [Detection(tuple(float(v) for v in box), float(1 / (1 + np.exp(-wt)))) for box, wt in zip(boxes, np.ravel(weights))]

    def close(self) -> None:
        pass


DETECTORS = {"mediapipe": MediaPipeDetector, "haar": HaarDetector}


def create_detector(name: str = "mediapipe", min_score: float = 0.5, min_size: int = 24) -> FaceDetector:
    """The named detector; if MediaPipe cannot load, the Haar cascade with a visible warning."""
    if name not in DETECTORS:
        raise PipnetError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}")
    try:
        return DETECTORS[name](min_score, min_size)
    except PipnetError:
        raise
    except Exception as exc:  # an import or model-loading failure inside mediapipe
        if name != "mediapipe":
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


def calibrate(detector: FaceDetector, samples, progress=None) -> tuple[BoxCalibration, int]:
    """Fit the detector-box -> landmark-box mapping on labeled faces; returns it and the number
    of faces it was fitted on. A first pass with a generic mapping picks the right detection."""
    from .data import load_image

    rough = BoxCalibration(0.0, 0.0, 1.0)
    detections, boxes = [], []
    for i, sample in enumerate(samples, start=1):
        box = CropBox.around_points(sample.points, 1.0)
        found = match_detection(detector.detect(load_image(sample.image_path)), box, rough)
        if found is not None:
            detections.append(found)
            boxes.append(box)
        if progress:
            progress(i, len(samples))
    if len(detections) < 10:
        raise PipnetError(f"the detector matched only {len(detections)} faces; cannot calibrate")
    return BoxCalibration.fit(detections, boxes), len(detections)

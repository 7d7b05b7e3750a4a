"""Face detection: MediaPipe's BlazeFace through ONNX Runtime.

BlazeFace comes in two models, both converted from the TFLite files MediaPipe publishes (Apache-2.0;
tools/convert_blazeface.py) and shipped as package data: short range (faces within about 2 m of a
webcam, 128 px input) and full range (small and far faces, 192 px input). Each is best where the
other is weak, so "blazeface-both" runs the two and merges what they find. MediaPipe itself is not
needed: the models run on the same ONNX Runtime as the landmark model.

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
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from .crop import CropBox, box_iou, rotation
from .errors import PipnetError
from .lifetime import Closing
from .resources import calibration_file, packaged_model


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
    def fit(cls, detections: list[Detection], landmark_boxes: list[CropBox]) -> BoxCalibration:
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
    def load(cls, path: str | Path | None = None) -> DetectorCalibration:
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
                raise PipnetError(
                    f"{path}: no mapping for detector {missing[0]} (`pipnet calibrate --out` writes every one)"
                )
        return cls(path, mappings, hashlib.sha256(data).hexdigest(), shipped)

    def landmark_box(self, detection: Detection) -> CropBox:
        """The detection's landmark box through its detector model's mapping."""
        return self.mappings.get(detection.source, BoxCalibration()).landmark_box(detection)

    def fields(self) -> dict:
        """What an export says of it."""
        return {
            "detector_calibration": "shipped" if self.shipped else str(self.path),
            "detector_calibration_sha256": self.sha256,
        }


def save_calibration(fitted: dict[str, BoxCalibration], path: Path) -> None:
    """Write a calibration file for ``Landmarker(calibration=path)``: the mappings ``path`` already
    holds (else the shipped ones), with the fitted detectors' replaced. Never the shipped file:
    a package that changed under its users would change every later run without a trace."""
    from .files import write_json

    path = Path(path)
    if path.resolve() == calibration_file().resolve():
        raise PipnetError(
            f"{path}: is the shipped calibration; write a file of your own and pass it with --calibration"
        )
    current = DetectorCalibration.load(path if path.is_file() else None)
    write_json(path, {name: asdict(mapping) for name, mapping in (current.mappings | fitted).items()})


@dataclass(frozen=True)
class BlazeFaceModel:
    """One BlazeFace model as MediaPipe configures it (face_detection_{short,full}_range.pbtxt)."""

    file: str
    size: int  # square input, pixels
    strides: tuple[int, ...]  # one per SSD layer; layers of one stride share a grid
    interpolated_anchor: bool  # an extra anchor per cell and layer (short range)
    # The graph decodes only scores above this: a lower threshold finds nothing more, and the
    # weighted suppression averages over these boxes only.
    decode_threshold: float


BLAZEFACE = {
    "short": BlazeFaceModel("blazeface_short_range.onnx", 128, (8, 16, 16, 16), True, 0.5),
    "full": BlazeFaceModel("blazeface_full_range.onnx", 192, (4,), False, 0.6),
}


def ssd_anchor_centres(spec: BlazeFaceModel) -> np.ndarray:
    """(anchors, 2) anchor centres in [0, 1], in the models' output order; every anchor is 1x1."""
    centres = []
    layer = 0
    while layer < len(spec.strides):
        same = sum(1 for stride in spec.strides[layer:] if stride == spec.strides[layer])
        per_cell = same * (1 + spec.interpolated_anchor)
        cells = int(np.ceil(spec.size / spec.strides[layer]))
        grid = (np.stack(np.meshgrid(np.arange(cells), np.arange(cells)), axis=-1).reshape(-1, 2) + 0.5) / cells
        centres.append(np.repeat(grid, per_cell, axis=0))
        layer += same
    return np.concatenate(centres).astype(np.float32)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, overlap: float = 0.3):
    """MediaPipe's weighted non-maximum suppression: the best box and every box overlapping it by
    more than ``overlap`` (IoU) become one detection, their corners and keypoints averaged by
    score, with the best score. ``boxes`` (N, 4) as x0, y0, x1, y1."""
    order = np.argsort(-scores, kind="stable")
    kept = []
    while len(order):
        best = boxes[order[0]]
        x0, y0 = np.maximum(best[:2], boxes[order, :2]).T
        x1, y1 = np.minimum(best[2:], boxes[order, 2:]).T
        inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        areas = np.prod(boxes[order, 2:] - boxes[order, :2], axis=1)
        iou = inter / np.maximum(areas + np.prod(best[2:] - best[:2]) - inter, 1e-12)
        close = iou > overlap
        close[0] = True  # the best box leads its group even if it has no area (MediaPipe keeps it too)
        group, order = order[close], order[~close]
        weights = scores[group][:, None]
        kept.append(
            (
                (weights * boxes[group]).sum(0) / weights.sum(),
                (weights[:, :, None] * keypoints[group]).sum(0) / weights.sum(),
                float(scores[group[0]]),
            )
        )
    return kept


class BlazeFaceDetector(Closing):
    """MediaPipe's BlazeFace (short or full range) converted to ONNX (tools/convert_blazeface.py)
    and run by ONNX Runtime, with MediaPipe's own pre- and post-processing: the frame letterboxed
    into the square input, SSD anchors, box and keypoint decoding, weighted non-maximum
    suppression. Boxes and eyes agree with mediapipe's detector within a pixel
    (tests/test_blazeface.py)."""

    def __init__(self, min_score: float = 0.5, min_size: int = 24, model_range: str = "short", threads: int = 2):
        import onnxruntime as ort

        self.name = "blazeface" if model_range == "short" else f"blazeface-{model_range}"
        self.min_size, self.min_score = min_size, min_score
        self.spec = BLAZEFACE[model_range]
        options = ort.SessionOptions()
        # The landmark model's threads: detection and landmarks run one after the other (2 threads:
        # 1.9 / 3.2 ms short / full, against 2.1 / 4.0 with one, on this 2-core machine). Idle
        # threads must not spin: they would take the cores from the landmark model's run that
        # follows (its inference went from 3.3 to 5.4 ms per frame).
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        path = packaged_model(self.spec.file)
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ONNX Runtime reports a bad file through several exception types
            raise PipnetError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0][:120]})") from None
        self._anchors = ssd_anchor_centres(self.spec)

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        height, width = frame_bgr.shape[:2]
        size = self.spec.size
        # The frame's longer side fills the input, centred; the rest is black (-1 after scaling).
        side = max(width, height)
        x0, y0 = (width - side) / 2, (height - side) / 2
        scale = size / side
        to_input = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]])
        rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        tensor = cv2.warpAffine(rgb, to_input, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
        batch = (tensor.astype(np.float32) / 127.5 - 1.0)[None]
        regressors, classificators = self._session.run(["regressors", "classificators"], {"input": batch})
        scores = 1 / (1 + np.exp(-np.clip(classificators[0, :, 0].astype(np.float64), -100, 100)))
        keep = np.flatnonzero(scores >= self.spec.decode_threshold)
        if not len(keep):
            return []
        raw, anchors = regressors[0, keep] / size, self._anchors[keep]
        centre, half = raw[:, :2] + anchors, raw[:, 2:4] / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        keypoints = raw[:, 4:].reshape(len(keep), -1, 2) + anchors[:, None]
        found = []
        for box, points, score in weighted_nms(boxes, keypoints, scores[keep]):
            # Input [0, 1] -> frame pixels.
            (bx0, by0, bx1, by1), pts = box * side + (x0, y0, x0, y0), points * side + (x0, y0)
            if min(bx1 - bx0, by1 - by0) >= self.min_size and score >= self.min_score:
                # Keypoints 0 and 1: the person's right eye (image left when upright), then the left.
                found.append(
                    Detection(
                        (float(bx0), float(by0), float(bx1 - bx0), float(by1 - by0)),
                        score,
                        self.name,
                        tuple(float(v) for v in pts[:2].ravel()),
                    )
                )
        return found

    def close(self) -> None:
        self._session = None


class GivenFaces(Closing):
    """Faces the caller already found, as a detector that returns them: Detections, or boxes
    (x, y, w, h) or (x, y, w, h, score) in pixels (``Landmarker.process_image(detected_faces=)``)."""

    name = "given"

    def __init__(self, faces):
        self.detections = [face if isinstance(face, Detection) else self._box(face) for face in faces]

    @staticmethod
    def _box(face) -> Detection:
        values = np.asarray(face, np.float64).ravel()
        if values.size not in (4, 5) or not np.isfinite(values).all() or values[2] <= 0 or values[3] <= 0:
            raise PipnetError(f"a face box is x, y, width, height (and a score), in pixels: got {face!r}")
        return Detection(tuple(values[:4]), float(values[4]) if values.size == 5 else 1.0)

    def detect(self, frame: np.ndarray) -> list[Detection]:
        return list(self.detections)


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
                found += [
                    _shift(d, x, y)
                    for d in self.detector.detect(frame_bgr[y : y + side, x : x + side])
                    if _inside_tile(d.box, tile)
                ]
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
    return (
        (x == 0 or bx > margin)
        and (y == 0 or by > margin)
        and (x + side >= width or bx + bw < side - margin)
        and (y + side >= height or by + bh < side - margin)
    )


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
    return {
        90: np.array([[0.0, 1, 0], [-1, 0, height]]),
        180: np.array([[-1.0, 0, width], [0, -1, height]]),
        270: np.array([[0.0, -1, width], [1, 0, 0]]),
    }[degrees]


def _turn_back(det: Detection, to_frame: np.ndarray, degrees: int) -> Detection:
    """A detection in the turned frame, in the original frame's pixels."""
    x, y, w, h = det.box
    corners = np.array([[x, y], [x + w, y + h]]) @ to_frame[:, :2].T + to_frame[:, 2]
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    eyes = None
    if det.eyes is not None:
        eyes = tuple((np.reshape(det.eyes, (2, 2)) @ to_frame[:, :2].T + to_frame[:, 2]).ravel().tolist())
    # A face upright in the frame turned clockwise by d degrees has a roll of -d in the original.
    return replace(
        det,
        box=(float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])),
        eyes=eyes,
        roll_hint=float(-degrees),
    )


# OpenCV's Haar cascade was the fallback while MediaPipe might not load; BlazeFace now loads like
# the landmark model, and the cascade missed 21 of HELEN's 330 test faces where BlazeFace misses
# none (`pipnet eval --detector`, docs/results.md), with no eyes to set a crop's roll: it is gone.
DETECTORS = ("blazeface", "blazeface-full", "blazeface-both")


def create_detector(
    name: str = "blazeface", min_score: float = 0.5, min_size: int = 24, threads: int = 2
) -> FaceDetector:
    """The named detector: "blazeface" (short range), "blazeface-full" (full range) or
    "blazeface-both" (the two merged)."""
    if name == "blazeface-both":
        return CombinedDetector(
            name,
            [
                BlazeFaceDetector(min_score, min_size, "short", threads),
                BlazeFaceDetector(min_score, min_size, "full", threads),
            ],
        )
    if name in ("blazeface", "blazeface-full"):
        return BlazeFaceDetector(min_score, min_size, "full" if name == "blazeface-full" else "short", threads)
    raise PipnetError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}")


def match_detection(
    detections: list[Detection], landmark_box: CropBox, calibration: BoxCalibration
) -> Detection | None:
    """The detection whose implied landmark box overlaps the given one most (IoU >= 0.3)."""
    scored = [(calibration.landmark_box(d).iou(landmark_box), d) for d in detections]
    best = max(scored, key=lambda pair: pair[0], default=(0.0, None))
    return best[1] if best[0] >= 0.3 else None


def calibrate(detector: FaceDetector, samples, progress=None) -> dict[str, tuple[BoxCalibration, int]]:
    """Fit the detector-box -> landmark-box mapping on labeled faces, for each detector model
    that found them ("blazeface-both" fits both ranges); returns each mapping and the number of
    faces it was fitted on. A first pass with a generic mapping picks the right detection."""
    from .images import load_image

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
    fitted = {
        source: (BoxCalibration.fit(dets, boxes), len(dets))
        for source, (dets, boxes) in matched.items()
        if len(dets) >= 10
    }
    if not fitted:
        raise PipnetError("the detector matched fewer than 10 faces; cannot calibrate")
    return fitted

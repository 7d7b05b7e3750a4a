"""Detectors made of detectors: two models merged ("blazeface-both": each is best where the other
is weak), faces the caller found (``GivenFaces``), and the searches stills get:
``QuarterTurnDetector`` also looks at the frame turned by 90, 180 and 270 degrees, where a detector
made for upright faces finds faces lying on their side or upside down, and ``TiledDetector``
searches overlapping tiles of a large frame for small, far faces.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from pipnet_core.base.errors import PipnetError
from pipnet_core.base.lifetime import Closing
from pipnet_core.detection.detector import Detection, FaceDetector, merge_detections


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

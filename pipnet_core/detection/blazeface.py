"""MediaPipe's BlazeFace through ONNX Runtime.

BlazeFace comes in two models, both converted from the TFLite files MediaPipe publishes (Apache-2.0;
tools/convert_blazeface.py) and shipped as package data: short range (faces within about 2 m of a
webcam, 128 px input) and full range (small and far faces, 192 px input). MediaPipe itself is not
needed: the models run on the same ONNX Runtime as the landmark model. BlazeFace also places the
two eyes, which give the face's roll, so the first crop of a new face is already upright.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipnet_core.base.errors import PipnetError
from pipnet_core.base.lifetime import Closing
from pipnet_core.detection.detector import Detection
from pipnet_core.io.resources import packaged_model


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

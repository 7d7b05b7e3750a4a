"""Detector boxes to landmark crops.

A detector's box is not the crop the landmark model was trained on (a box around the 68 points,
enlarged, upright). ``BoxCalibration`` maps one to the other with offsets (in the face's upright
frame) and a scale measured on training data by ``pipnet calibrate``; the shipped mappings are in
models/detector_calibration.json, one entry per detector model, and a user's own calibration is a
file of the same form passed explicitly (``--calibration``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipnet_core.base.crop import CropBox, rotation
from pipnet_core.base.errors import PipnetError
from pipnet_core.detection.detector import Detection, FaceDetector
from pipnet_core.io.files import write_json
from pipnet_core.io.images import load_image
from pipnet_core.io.resources import calibration_file


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
    path = Path(path)
    if path.resolve() == calibration_file().resolve():
        raise PipnetError(
            f"{path}: is the shipped calibration; write a file of your own and pass it with --calibration"
        )
    current = DetectorCalibration.load(path if path.is_file() else None)
    write_json(path, {name: asdict(mapping) for name, mapping in (current.mappings | fitted).items()})


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

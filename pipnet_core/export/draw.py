"""The overlay: landmarks, contours, indices, boxes, ids and head-pose axes drawn on a BGR frame."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipnet_core.base.records import Face
from pipnet_core.base.scheme import CONTOURS
from pipnet_core.pipeline.pose import camera_matrix

# Per-id colours (BGR), so two faces are told apart at a glance.
_PALETTE = ((80, 220, 80), (255, 170, 40), (60, 160, 255), (220, 80, 220), (40, 220, 220), (200, 200, 200))


@dataclass(frozen=True)
class OverlayOptions:
    points: bool = True
    contours: bool = True
    indices: bool = False
    box: bool = True
    face_id: bool = True
    pose_axes: bool = False


def face_colour(face_id: int) -> tuple[int, int, int]:
    return _PALETTE[face_id % len(_PALETTE)]


def draw_faces(image: np.ndarray, faces: list[Face], options: OverlayOptions = OverlayOptions()) -> np.ndarray:
    """Draw in place on ``image`` (BGR uint8) and return it; unsuccessful faces are not drawn."""
    for face in faces:
        if not face.success:
            continue
        colour = face_colour(face.id)
        size = max(face.box[2], face.box[3])
        thickness = 1 if size < 150 else 2
        pts = face.points
        if options.contours:
            for _, idx, closed in CONTOURS:
                poly = np.round(pts[list(idx)] * 4).astype(np.int32)  # 2 fractional bits: smooth lines
                cv2.polylines(image, [poly], closed, colour, thickness, cv2.LINE_AA, shift=2)
        if options.points:
            radius = max(1, int(round(size / 120)))
            for x, y in np.round(pts * 4).astype(np.int32):
                cv2.circle(image, (int(x), int(y)), radius * 4, (255, 255, 255), -1, cv2.LINE_AA, shift=2)
        if options.indices:
            for i, (x, y) in enumerate(pts):
                cv2.putText(
                    image, str(i), (int(x) + 2, int(y) - 2), cv2.FONT_HERSHEY_PLAIN, 0.7, (0, 255, 255), 1, cv2.LINE_AA
                )
        x, y, w, h = (int(round(v)) for v in face.box)
        if options.box:
            cv2.rectangle(image, (x, y), (x + w, y + h), colour, 1, cv2.LINE_AA)
        if options.face_id:
            label = f"#{face.id} {face.mean_confidence:.2f}"
            cv2.putText(image, label, (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
        if options.pose_axes and face.pose is not None:
            _draw_axes(image, face, size)
    return image


def _draw_axes(image: np.ndarray, face: Face, size: float) -> None:
    """x (red), y (green) and z (blue) axes of the head, from the nose tip."""
    height, width = image.shape[:2]
    length = 60.0  # millimetres in the 3D face model
    axes = np.array([[0, 0, 0], [length, 0, 0], [0, -length, 0], [0, 0, -length]], dtype=np.float64)
    rvec = cv2.Rodrigues(face.pose.rotation)[0]
    projected, _ = cv2.projectPoints(axes, rvec, face.pose.translation, camera_matrix(width, height), None)
    origin, *ends = np.round(projected.reshape(-1, 2)).astype(int)
    for end, colour in zip(ends, ((0, 0, 255), (0, 255, 0), (255, 0, 0))):
        cv2.arrowedLine(image, tuple(origin), tuple(end), colour, 2, cv2.LINE_AA, tipLength=0.15)

"""A face as the values every output writes: the one place that measures a face for a table (pose
angles, eye and mouth aspect ratios) and formats it, for the CSV, OpenFace's CSV, JSON (`pipnet
detect`'s files, JSON Lines) and blink rows. `detect`, `annotate`, the cluster and the app's export
all come here."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from pipnet_core.base.records import Face
from pipnet_core.base.scheme import NUM_POINTS
from pipnet_core.offline.measures import Blink, eye_aspect_ratios, mouth_aspect_ratio
from pipnet_core.pipeline.pose import estimate_pose, openface_angles, openface_geometry

CSV_COLUMNS = (
    [
        "frame",
        "timestamp",
        "face_id",
        "confidence",
        "success",
        "box_x",
        "box_y",
        "box_w",
        "box_h",
        "pose_yaw",
        "pose_pitch",
        "pose_roll",
        "ear_right",
        "ear_left",
        "mar",
    ]
    + [f"x_{i}" for i in range(NUM_POINTS)]
    + [f"y_{i}" for i in range(NUM_POINTS)]
    + [f"c_{i}" for i in range(NUM_POINTS)]
)


# What OpenFace 2.x FeatureExtraction writes with -2Dfp -3Dfp -pose (RecorderCSV.cpp), in order.
OPENFACE_COLUMNS = [
    "frame",
    "face_id",
    "timestamp",
    "confidence",
    "success",
    "pose_Tx",
    "pose_Ty",
    "pose_Tz",
    "pose_Rx",
    "pose_Ry",
    "pose_Rz",
] + [f"{axis}_{i}" for axis in ("x", "y", "X", "Y", "Z") for i in range(NUM_POINTS)]


BLINK_COLUMNS = ["face_id", "eye", "start_frame", "end_frame", "start_time", "end_time", "min_ear"]


class FaceMeasures(NamedTuple):
    angles: tuple[float, float, float] | None  # yaw, pitch, roll in degrees; None without a pose
    ear_right: float
    ear_left: float
    mar: float


def measure(face: Face) -> FaceMeasures:
    pose = face.pose
    right, left = eye_aspect_ratios(face.points)
    angles = None if pose is None else (pose.yaw, pose.pitch, pose.roll)
    return FaceMeasures(angles, right, left, mouth_aspect_ratio(face.points))


def face_to_dict(face: Face) -> dict:
    """A face as JSON: `pipnet detect`'s files and each frame of a JSON Lines table."""
    measured = measure(face)
    return {
        "face_id": face.id,
        "success": face.success,
        "confidence": round(face.mean_confidence, 4),
        "detector_score": round(face.score, 4),
        "box": [round(v, 2) for v in face.box],
        "pose": None
        if measured.angles is None
        else dict(zip(("yaw", "pitch", "roll"), (round(angle, 2) for angle in measured.angles))),
        "eye_aspect_ratio": {"right": round(measured.ear_right, 4), "left": round(measured.ear_left, 4)},
        "mouth_aspect_ratio": round(measured.mar, 4),
        "points": [[round(float(x), 2), round(float(y), 2)] for x, y in face.points],
        "point_confidence": [round(float(c), 3) for c in face.confidence],
    }


def still_record(image_path, image: np.ndarray, faces: list[Face]) -> dict:
    """A still's faces as `pipnet detect` writes them (IMAGE.json)."""
    return {
        "image": str(image_path),
        "width": image.shape[1],
        "height": image.shape[0],
        "faces": [face_to_dict(f) for f in faces],
    }


def csv_row(frame: int, timestamp: float, face: Face) -> list:
    """A face as a row of CSV_COLUMNS."""
    measured = measure(face)
    angles = ["", "", ""] if measured.angles is None else [f"{v:.2f}" for v in measured.angles]
    return (
        [frame, f"{timestamp:.4f}", face.id, f"{face.mean_confidence:.4f}", int(face.success)]
        + [f"{v:.2f}" for v in face.box]
        + angles
        + [f"{v:.4f}" for v in (measured.ear_right, measured.ear_left, measured.mar)]
        + [f"{v:.2f}" for v in face.points[:, 0]]
        + [f"{v:.2f}" for v in face.points[:, 1]]
        + [f"{v:.3f}" for v in face.confidence]
    )


def csv_empty_row(frame: int, timestamp: float) -> list:
    """A frame without a face, in CSV_COLUMNS: face id -1."""
    return [frame, f"{timestamp:.4f}", -1, 0, 0] + [""] * (len(CSV_COLUMNS) - 5)


def openface_row(number: int, timestamp: float, face: Face, camera: np.ndarray) -> list:
    """A face as a row of OPENFACE_COLUMNS (``number``: OpenFace's, from 1). Faces come with their
    pose fitted with these intrinsics (the run's landmarker has them); a face without one is fitted here."""
    pose = face.pose if face.pose is not None else estimate_pose(face.points, camera)
    if pose is None:  # no fit: the 2D points, zeros for the rest
        centre, angles, landmarks = np.zeros(3), (0.0, 0.0, 0.0), np.zeros((NUM_POINTS, 3))
    else:
        centre, landmarks = openface_geometry(face.points, pose, camera)
        angles = openface_angles(pose.rotation)
    return (
        [number, face.id, f"{timestamp:.3f}", f"{face.mean_confidence:.2f}", int(face.success)]
        + [f"{v:.1f}" for v in centre]
        + [f"{v:.3f}" for v in angles]
        + [f"{v:.1f}" for v in face.points.T.ravel()]
        + [f"{v:.1f}" for v in landmarks.T.ravel()]
    )


def openface_empty_row(number: int, timestamp: float) -> list:
    """A frame without a face as OpenFace writes it: success 0 and zeros."""
    return [number, 0, f"{timestamp:.3f}", "0.00", 0] + ["0.0"] * 3 + ["0.000"] * 3 + ["0.0"] * (5 * NUM_POINTS)


def blink_row(blink: Blink) -> list:
    """A blink event as a row of BLINK_COLUMNS."""
    b = blink
    return [
        b.face_id,
        b.eye,
        b.start_frame,
        b.end_frame,
        f"{b.start_time:.4f}",
        f"{b.end_time:.4f}",
        f"{b.min_ear:.4f}",
    ]

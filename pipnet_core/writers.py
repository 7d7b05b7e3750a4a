"""Landmark records out: one face as a dict (JSON), shared by `pipnet detect`, the annotation
exporter and the GUI's export."""
from __future__ import annotations

from .landmarker import Face


def face_to_dict(face: Face) -> dict:
    pose = face.pose
    return {
        "face_id": face.id,
        "success": face.success,
        "confidence": round(face.mean_confidence, 4),
        "detector_score": round(face.score, 4),
        "box": [round(v, 2) for v in face.box],
        "pose": None if pose is None else {"yaw": round(pose.yaw, 2), "pitch": round(pose.pitch, 2), "roll": round(pose.roll, 2)},
        "points": [[round(float(x), 2), round(float(y), 2)] for x, y in face.points],
        "point_confidence": [round(float(c), 3) for c in face.confidence],
    }

"""Head pose (yaw, pitch, roll in degrees) from 68 points by PnP against a generic 3D face."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Approximate adult face geometry in millimetres, for the landmarks that are stable under
# expression: x to the image's right, y down, z away from the camera, origin at the nose tip.
_MODEL_POINTS = {
    0: (-72, -25, 90), 4: (-62, 30, 65), 8: (0, 68, 25), 12: (62, 30, 65), 16: (72, -25, 90),
    17: (-50, -55, 25), 21: (-12, -60, 12), 22: (12, -60, 12), 26: (50, -55, 25),
    27: (0, -40, 14), 30: (0, 0, 0), 31: (-14, 10, 14), 33: (0, 12, 9), 35: (14, 10, 14),
    36: (-45, -35, 30), 39: (-15, -33, 22), 42: (15, -33, 22), 45: (45, -35, 30),
    48: (-25, 36, 22), 51: (0, 28, 11), 54: (25, 36, 22), 57: (0, 46, 15),
}
MODEL_INDEX = np.array(list(_MODEL_POINTS))
MODEL_3D = np.array(list(_MODEL_POINTS.values()), dtype=np.float64)


@dataclass(frozen=True)
class HeadPose:
    yaw: float  # > 0: the face turns towards the image's right
    pitch: float  # > 0: the face looks up
    roll: float  # > 0: the head tilts clockwise in the image
    rotation: np.ndarray  # 3x3, model -> camera
    translation: np.ndarray  # (3,), millimetres


def camera_matrix(width: int, height: int) -> np.ndarray:
    """A pinhole guess for an ordinary webcam: focal length about the image width."""
    return np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1]], dtype=np.float64)


def euler_from_rotation(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees for rotation = Rz(roll') Ry(yaw') Rx(pitch'), signs as in HeadPose."""
    yaw = np.degrees(np.arcsin(np.clip(-rotation[2, 0], -1, 1)))
    pitch = np.degrees(np.arctan2(rotation[2, 1], rotation[2, 2]))
    roll = np.degrees(np.arctan2(rotation[1, 0], rotation[0, 0]))
    # Positive rotation about y turns the face to the image's left and about x makes it look down.
    return float(-yaw), float(-pitch), float(roll)


def estimate_pose(points: np.ndarray, frame_size: tuple[int, int]) -> HeadPose | None:
    """Pose of one face from its 68 points; None if PnP fails."""
    width, height = frame_size
    camera = camera_matrix(width, height)
    # Start from a frontal face at the distance its eye span implies: without a guess the iterative
    # solver can settle on the mirror solution behind the camera.
    eye_span_px = max(float(np.linalg.norm(points[45] - points[36])), 1.0)
    depth = camera[0, 0] * (MODEL_3D[MODEL_INDEX == 45][0, 0] - MODEL_3D[MODEL_INDEX == 36][0, 0]) / eye_span_px
    nose = points[30]
    guess_t = np.array([(nose[0] - camera[0, 2]) * depth / camera[0, 0], (nose[1] - camera[1, 2]) * depth / camera[1, 1], depth])
    ok, rvec, tvec = cv2.solvePnP(MODEL_3D, points[MODEL_INDEX].astype(np.float64), camera, None,
                                  np.zeros(3), guess_t, useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return None
    rotation = cv2.Rodrigues(rvec)[0]
    yaw, pitch, roll = euler_from_rotation(rotation)
    return HeadPose(yaw, pitch, roll, rotation, tvec.ravel())

"""Head pose (yaw, pitch, roll in degrees) from 68 points by PnP against a generic 3D face; the
same pose in OpenFace's terms (translation in mm, Euler angles in radians, 3D landmarks)."""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np

from pipnet_core.base.records import HeadPose

# Approximate adult face geometry in millimetres, for the landmarks that are stable under
# expression: x to the image's right, y down, z away from the camera, origin at the nose tip.
_MODEL_POINTS = {
    0: (-72, -25, 90),
    4: (-62, 30, 65),
    8: (0, 68, 25),
    12: (62, 30, 65),
    16: (72, -25, 90),
    17: (-50, -55, 25),
    21: (-12, -60, 12),
    22: (12, -60, 12),
    26: (50, -55, 25),
    27: (0, -40, 14),
    30: (0, 0, 0),
    31: (-14, 10, 14),
    33: (0, 12, 9),
    35: (14, 10, 14),
    36: (-45, -35, 30),
    39: (-15, -33, 22),
    42: (15, -33, 22),
    45: (45, -35, 30),
    48: (-25, 36, 22),
    51: (0, 28, 11),
    54: (25, 36, 22),
    57: (0, 46, 15),
}
MODEL_INDEX = np.array(list(_MODEL_POINTS))
MODEL_3D = np.array(list(_MODEL_POINTS.values()), dtype=np.float64)


def camera_matrix(
    width: int,
    height: int,
    fx: float | None = None,
    fy: float | None = None,
    cx: float | None = None,
    cy: float | None = None,
) -> np.ndarray:
    """Pinhole intrinsics; what is not given is OpenFace's guess for an ordinary webcam (500 px of
    focal length at 640x480, scaled with the image; the centre in the middle), so poses compare
    with OpenFace's on the same video."""
    if fx is None:  # one focal length given: square pixels
        fx = 250.0 * (width / 640 + height / 480) if fy is None else fy
    fy = fx if fy is None else fy
    cx = width / 2 if cx is None else cx
    cy = height / 2 if cy is None else cy
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)


def euler_from_rotation(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees for rotation = Rz(roll') Ry(yaw') Rx(pitch'), signs as in HeadPose."""
    yaw = np.degrees(np.arcsin(np.clip(-rotation[2, 0], -1, 1)))
    pitch = np.degrees(np.arctan2(rotation[2, 1], rotation[2, 2]))
    roll = np.degrees(np.arctan2(rotation[1, 0], rotation[0, 0]))
    # Positive rotation about y turns the face to the image's left and about x makes it look down.
    return float(-yaw), float(-pitch), float(roll)


def estimate_pose(points: np.ndarray, camera: np.ndarray) -> HeadPose | None:
    """Pose of one face from its 68 points seen by a camera of these intrinsics (3x3); None if
    PnP fails."""
    # Start from a frontal face at the distance its eye span implies: without a guess the iterative
    # solver can settle on the mirror solution behind the camera.
    eye_span_px = max(float(np.linalg.norm(points[45] - points[36])), 1.0)
    depth = camera[0, 0] * (MODEL_3D[MODEL_INDEX == 45][0, 0] - MODEL_3D[MODEL_INDEX == 36][0, 0]) / eye_span_px
    nose = points[30]
    # ...and turned in the picture by the eye line's angle: from an upright guess, the solver can
    # settle a face that lies on its side or upside down at a wrong yaw of 50-60 degrees.
    eyes = points[45] - points[36]
    guess_r = np.array([0.0, 0.0, float(np.arctan2(eyes[1], eyes[0]))])
    guess_t = np.array(
        [(nose[0] - camera[0, 2]) * depth / camera[0, 0], (nose[1] - camera[1, 2]) * depth / camera[1, 1], depth]
    )
    ok, rvec, tvec = cv2.solvePnP(
        MODEL_3D,
        points[MODEL_INDEX].astype(np.float64),
        camera,
        None,
        guess_r,
        guess_t,
        useExtrinsicGuess=True,
        flags=cv2.SOLVEPNP_ITERATIVE,
    )
    if not ok:
        return None
    rotation = cv2.Rodrigues(rvec)[0]
    yaw, pitch, roll = euler_from_rotation(rotation)
    return HeadPose(yaw, pitch, roll, rotation, tvec.ravel())


@cache
def face_model_3d() -> np.ndarray:
    """A generic 68-point face, (68, 3) mm in the pose model's frame (assets/face_model_3d.txt)."""
    from pipnet_core.io.resources import asset

    return np.loadtxt(asset("face_model_3d.txt"))


def openface_angles(rotation: np.ndarray) -> tuple[float, float, float]:
    """OpenFace's pose_Rx, pose_Ry, pose_Rz in radians: rotation = Rx(rx) Ry(ry) Rz(rz)."""
    ry = float(np.arcsin(np.clip(rotation[0, 2], -1, 1)))
    rx = float(np.arctan2(-rotation[1, 2], rotation[2, 2]))
    rz = float(np.arctan2(-rotation[0, 1], rotation[0, 0]))
    return rx, ry, rz


def openface_geometry(points: np.ndarray, pose: HeadPose, camera: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenFace's head position and 3D landmarks for a pose: the camera-frame position (mm) of the
    generic face's centroid (OpenFace's pose_T is its own face model's origin, which is that
    model's centroid), and (68, 3) landmarks that project exactly onto the 2D points, at the
    depths of the generic face turned and placed by the pose (as OpenFace places its own)."""
    model = face_model_3d()
    depth = (model @ pose.rotation[2] + pose.translation[2])[:, None]
    fx, fy, cx, cy = camera[0, 0], camera[1, 1], camera[0, 2], camera[1, 2]
    xy = (np.asarray(points, np.float64) - (cx, cy)) / (fx, fy) * depth
    centre = pose.rotation @ model.mean(axis=0) + pose.translation
    return centre, np.hstack([xy, depth])

"""MediaPipe as a reference, never as a dependency: Face Mesh for `pipnet bench` and `pipnet
bench-quality`, and MediaPipe's own BlazeFace for the parity tests of ours.

MediaPipe is optional (`pip install pipnet-live[reference]`, Python <= 3.12). Releases after
0.10.21 dropped ``mp.solutions``; their Tasks API needs model files downloaded at run time, which
pipnet-live never does, so there the comparison is skipped with the reason.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

import cv2
import numpy as np

from pipnet_core.base.errors import PipnetError
from pipnet_core.base.lifetime import Closing


@contextmanager
def quiet_native_stderr():
    """MediaPipe's C++ (glog, TFLite) writes start-up chatter straight to file descriptor 2;
    hide it while a graph loads so users see only our messages."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def solutions():
    """``mediapipe.solutions``, or a PipnetError saying in one line why the reference is unavailable."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        with quiet_native_stderr():
            import mediapipe as mp
    except ImportError:
        raise PipnetError("MediaPipe is not installed (pip install 'pipnet-live[reference]', Python <= 3.12)") from None
    if not hasattr(mp, "solutions"):
        raise PipnetError(
            f"mediapipe {getattr(mp, '__version__', '?')} has no mp.solutions, and its Tasks API would "
            "download model files: install mediapipe==0.10.21 for the reference"
        )
    return mp.solutions


# Face Mesh's outermost cheek vertices, on the image's left and right of a frontal face.
CHEEK_LEFT, CHEEK_RIGHT = 234, 454


def mesh_yaw(mesh: np.ndarray) -> float:
    """A face's yaw in degrees from Face Mesh's 3D points (``FaceMesh.meshes_3d``), +: turned
    towards the image's right (the pose convention): the line between the cheeks turns in depth
    by the yaw, whatever the camera."""
    across = mesh[CHEEK_RIGHT] - mesh[CHEEK_LEFT]
    return float(np.degrees(np.arctan2(across[2], across[0])))


class FaceMesh(Closing):
    """Face Mesh (468 points) in video mode, warmed up, its graph's first-run chatter hidden: the
    one wrapper the benchmarks, the quality measures and the tests use."""

    def __init__(self, max_faces: int = 1, stills: bool = False):
        """``stills``: every image on its own (no tracking between calls), as for a data set."""
        mp_solutions = solutions()
        with quiet_native_stderr():
            self._mesh = mp_solutions.face_mesh.FaceMesh(static_image_mode=stills, max_num_faces=max_faces)
            self._mesh.process(np.zeros((64, 64, 3), np.uint8))

    def process_rgb(self, rgb: np.ndarray):
        """MediaPipe's own result for an RGB frame (what `pipnet bench` times)."""
        return self._mesh.process(rgb)

    def points(self, frame_bgr: np.ndarray, indices: list[int]) -> np.ndarray | None:
        """The first face's mesh points ``indices`` in frame pixels, (len(indices), 2); None: no face."""
        result = self._mesh.process(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
        if not result.multi_face_landmarks:
            return None
        height, width = frame_bgr.shape[:2]
        marks = result.multi_face_landmarks[0].landmark
        return np.array([[marks[m].x * width, marks[m].y * height] for m in indices], np.float32)

    def meshes_3d(self, frame_bgr: np.ndarray) -> list[np.ndarray]:
        """Every face's 468 points (468, 3) in frame pixels, depth in the scale of x, from the head's
        centre (smaller: nearer the camera)."""
        result = self._mesh.process(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
        width, height = frame_bgr.shape[1], frame_bgr.shape[0]
        return [
            np.array([[m.x * width, m.y * height, m.z * width] for m in face.landmark])
            for face in result.multi_face_landmarks or ()
        ]

    def close(self) -> None:
        self._mesh.close()


class MediaPipeFaceDetection:
    """MediaPipe's BlazeFace through mp.solutions: boxes, eye keypoints and scores in frame pixels,
    the reference that ``detection.blazeface.BlazeFaceDetector`` is measured against."""

    def __init__(self, model_range: str = "short", min_score: float = 0.5):
        mp_solutions = solutions()
        with quiet_native_stderr():
            self._detector = mp_solutions.face_detection.FaceDetection(
                model_selection={"short": 0, "full": 1}[model_range], min_detection_confidence=min_score
            )
            self._detector.process(np.zeros((64, 64, 3), np.uint8))

    def detect(self, frame_bgr: np.ndarray) -> list[tuple[tuple[float, ...], tuple[float, ...], float]]:
        """(box x, y, w, h), (right eye x, y, left eye x, y) and score per face."""
        height, width = frame_bgr.shape[:2]
        result = self._detector.process(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
        found = []
        for detection in result.detections or ():
            box = detection.location_data.relative_bounding_box
            right, left = detection.location_data.relative_keypoints[:2]
            found.append(
                (
                    (box.xmin * width, box.ymin * height, box.width * width, box.height * height),
                    (right.x * width, right.y * height, left.x * width, left.y * height),
                    float(detection.score[0]),
                )
            )
        return found

    def close(self) -> None:
        self._detector.close()

"""A face that moves fast: a sudden jump between two frames, and a fast steady glide. The tracker
must not lose it, and neither the crops nor the smoothing may leave the points behind. The truth
is Face Mesh's points on the photo, moved with it; the mean-face model and a lagging filter must
fail."""

from dataclasses import replace

import cv2
import numpy as np
import pytest
from synthetic import MeanFaceModel, moved_reference, reference_error

from pipnet_core.io.sample_clip import FACE_CENTRE, HEAD_ELLIPSE, face_photo
from pipnet_core.pipeline.landmarker import Landmarker

FPS = 30.0
FACE_WIDTH = 110.0  # the photo's face, jaw to jaw, at scale 1


def head_frames(centres: list[tuple[float, float]], seed: int = 0):
    """640x480 frames with the astronaut's head pasted so its face centre is at each position,
    with sensor noise; returns frames and each frame's photo->frame matrix."""
    photo = face_photo()
    mask = np.zeros(photo.shape[:2], np.float32)
    cv2.ellipse(mask, HEAD_ELLIPSE[0], HEAD_ELLIPSE[1], 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), 4)[..., None]
    rng = np.random.default_rng(seed)
    frames, matrices = [], []
    for cx, cy in centres:
        matrix = np.array([[1.0, 0.0, cx - FACE_CENTRE[0]], [0.0, 1.0, cy - FACE_CENTRE[1]]])
        warped = cv2.warpAffine(photo, matrix, (640, 480)).astype(np.float32)
        alpha = cv2.warpAffine(mask, matrix, (640, 480))[..., None]
        frame = 90 * (1 - alpha) + warped * alpha + rng.normal(0, 3, (480, 640, 3))
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
        matrices.append(matrix)
    return frames, matrices


class LowPass:
    """A plausible wrong answer: the raw points through a plain exponential low-pass filter (a
    smoother that lags behind motion) instead of the motion-compensated smoothing."""

    def __init__(self, model, keep: float = 0.7):
        self.landmarker, self.keep, self.points = Landmarker(model, smoothing=False), keep, None

    def process(self, frame, timestamp):
        faces = self.landmarker.process(frame, timestamp)
        if len(faces) == 1:
            new = faces[0].points
            self.points = new if self.points is None else self.keep * self.points + (1 - self.keep) * new
            faces = [replace(faces[0], points=self.points)]
        return faces


def landmarker_for(model, control):
    return {
        None: lambda: Landmarker(model),
        "mean face": lambda: Landmarker(MeanFaceModel(model.info)),
        "low-pass": lambda: LowPass(model),
    }[control]()


def errors_along(landmarker, centres):
    """Each frame's error against the moved reference (inf where the face is not found), and
    the ids seen."""
    frames, matrices = head_frames(centres)
    errors, ids = [], []
    for i, (frame, truth) in enumerate(zip(frames, moved_reference(matrices))):
        faces = [f for f in landmarker.process(frame, i / FPS) if f.success]
        errors.append(reference_error(faces[0].points, truth) if len(faces) == 1 else np.inf)
        ids += [f.id for f in faces]
    return np.array(errors), set(ids)


# Controls that must fail: the mean-face model (wrong points everywhere) and a smoother that lags.
CONTROL = pytest.mark.parametrize(
    "control", [None, "mean face", "low-pass"], ids=["shipped model", "mean-face control", "low-pass control"]
)


@CONTROL
def test_a_face_jumping_half_a_face_width_is_back_within_two_frames(model, control):
    """Ours: 2.1% of the eye distance or less on every frame; the mean face: over 100%; the
    low-pass filter still trails the jump by about a third of the eye distance two frames on."""
    jump = 0.5 * FACE_WIDTH
    # At frame 23: not one of the frames the detector is scheduled for (every 10th).
    centres = [(250.0, 240.0)] * 23 + [(250.0 + jump, 240.0)] * 15
    errors, ids = errors_along(landmarker_for(model, control), centres)
    assert (errors[25:].max() < 0.04) != bool(control), np.round(errors[21:29], 3)
    if not control:
        assert ids == {0} and np.isfinite(errors).all()  # never lost, one id
        assert errors[5:23].max() < 0.04  # settled before the jump


@CONTROL
def test_a_face_gliding_at_three_face_widths_per_second_is_not_trailed(model, control):
    """Ours: 2.0% or less on every frame of the glide; the mean face drifts off (over 30%); the
    low-pass filter trails by about 26 px."""
    speed = 3 * FACE_WIDTH / FPS  # pixels per frame
    centres = [(140.0, 240.0)] * 10 + [(140.0 + speed * (i + 1), 240.0) for i in range(30)]
    errors, ids = errors_along(landmarker_for(model, control), centres)
    assert (errors[12:].max() < 0.04) != bool(control), np.round(errors[8:20], 3)  # the glide starts at frame 10
    if not control:
        assert ids == {0} and np.isfinite(errors).all()

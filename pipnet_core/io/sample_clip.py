"""A synthetic face video with known motion: the public-domain astronaut photo in assets/, moved
along a smooth path (translation, scale, small rotation).

Used as the GUI's first-launch clip when no camera opens, by `pipnet bench`, and by tests that
need ground truth: every frame's similarity transform is known, so reference landmarks on the
still photo give each frame's true landmarks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

FRAME_SIZE = (640, 480)


def face_photo() -> np.ndarray:
    """The public-domain NASA portrait of Eileen Collins (as scikit-image ships it), BGR 512x512."""
    from pipnet_core.io.resources import asset

    return cv2.imread(str(asset("face_photo.png")), cv2.IMREAD_COLOR)


@dataclass(frozen=True)
class ClipSpec:
    frames: int = 300
    fps: float = 30.0
    faces: int = 1
    noise: float = 3.0  # grey levels of per-frame sensor noise, so trackers see realistic jitter
    seed: int = 0
    roll_speed: float = 0.0  # degrees per second the head turns clockwise, on top of its sway


# Where the face is in the photo, and the head region pasted when a clip shows several faces.
FACE_CENTRE = (222.0, 128.0)
HEAD_ELLIPSE = ((222, 135), (78, 102))  # centre, half-axes, photo pixels


def photo_to_frame(t: float, face_index: int, faces: int, roll_speed: float = 0.0) -> np.ndarray:
    """2x3 similarity matrix, photo pixels -> frame pixels, at time t (seconds) for one face.

    Faces stay large enough for BlazeFace short range (boxes of about 90 px and up at 640x480)."""
    width, height = FRAME_SIZE
    phase = 2 * np.pi * face_index / max(faces, 1)
    scale = (1.3 if faces == 1 else 1.0) * (1 + 0.12 * np.sin(2 * np.pi * t / 7 + phase))
    angle = 8 * np.sin(2 * np.pi * t / 5 + phase) - roll_speed * t  # OpenCV turns counter-clockwise
    cx = width * (face_index + 0.5) / faces + (60 if faces == 1 else 15) * np.sin(2 * np.pi * t / 6 + phase)
    cy = height * 0.45 + 30 * np.sin(2 * np.pi * t / 4 + phase)
    matrix = cv2.getRotationMatrix2D(FACE_CENTRE, angle, scale)
    matrix[:, 2] += (cx - FACE_CENTRE[0], cy - FACE_CENTRE[1])
    return matrix


def _paste_mask(photo: np.ndarray, faces: int) -> np.ndarray:
    """Where each pasted photo covers the frame: all of it for one face, a soft-edged head for several."""
    if faces == 1:
        return np.full(photo.shape[:2], 1.0, np.float32)
    mask = np.zeros(photo.shape[:2], np.float32)
    cv2.ellipse(mask, HEAD_ELLIPSE[0], HEAD_ELLIPSE[1], 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), 6)


def render_frame(
    photo: np.ndarray, t: float, spec: ClipSpec, rng: np.random.Generator
) -> tuple[np.ndarray, list[np.ndarray]]:
    """One frame and the photo->frame matrix of each face in it."""
    width, height = FRAME_SIZE
    matrices = [photo_to_frame(t, i, spec.faces, spec.roll_speed) for i in range(spec.faces)]
    if spec.faces == 1:
        # The whole photo over a grey background: the warp's constant border is that blend.
        frame = cv2.warpAffine(photo, matrices[0], (width, height), flags=cv2.INTER_LINEAR, borderValue=(90, 90, 90))
    else:
        mask = _paste_mask(photo, spec.faces)
        blended = np.full((height, width, 3), 90, np.float32)
        for matrix in matrices:
            warped = cv2.warpAffine(photo, matrix, (width, height), flags=cv2.INTER_LINEAR).astype(np.float32)
            alpha = cv2.warpAffine(mask, matrix, (width, height))[..., None]
            blended = blended * (1 - alpha) + warped * alpha
        frame = np.clip(blended, 0, 255).astype(np.uint8)
    if spec.noise:
        # OpenCV's generator, seeded from ``rng``: three times faster than numpy's normal here,
        # which made the first launch's clip take 15 s.
        noise = np.empty(frame.shape, np.float32)
        cv2.setRNGSeed(int(rng.integers(2**31)))
        cv2.randn(noise, (0.0,) * 3, (float(spec.noise),) * 3)  # a scalar would reach the first channel only
        frame = cv2.add(frame, noise, dtype=cv2.CV_8U)
    return frame, matrices


def generate(spec: ClipSpec = ClipSpec()):
    """Yields (frame, timestamp, matrices) for every frame of the clip."""
    photo = face_photo()
    rng = np.random.default_rng(spec.seed)
    for index in range(spec.frames):
        t = index / spec.fps
        frame, matrices = render_frame(photo, t, spec, rng)
        yield frame, t, matrices


def write_clip(path: Path, spec: ClipSpec = ClipSpec()) -> Path:
    """Write the clip as MJPEG in an .avi (OpenCV writes it everywhere, no codec pack needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".partial" + path.suffix)
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), spec.fps, FRAME_SIZE)
    for frame, _, _ in generate(spec):
        writer.write(frame)
    writer.release()
    tmp.replace(path)
    return path


def cache_dir() -> Path:
    """The user's cache folder for pipnet-live (XDG_CACHE_HOME, else ~/.cache)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pipnet-live"


def cached_clip(spec: ClipSpec = ClipSpec()) -> Path:
    """The sample clip, made on first use and kept in the user's cache folder."""
    path = (
        cache_dir()
        / f"sample_{spec.faces}face_{spec.frames}f{f'_roll{spec.roll_speed:g}' if spec.roll_speed else ''}.avi"
    )
    return path if path.is_file() else write_clip(path, spec)

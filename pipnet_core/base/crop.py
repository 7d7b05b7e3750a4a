"""Face crop geometry shared by training, evaluation and the runtime.

A crop is a square around the face, turned so the face is upright, mapped to ``size`` x ``size``
pixels by one similarity warp. The 2x3 matrix maps frame pixels to crop pixels; its inverse brings
predicted points back to the frame. Because the model always sees an upright face, a face tilted
by any angle (someone lying down, a phone on its side) is as easy as an upright one, provided the
roll of the crop is roughly right: from the detector's eye keypoints for a new face, from the
previous frame's landmarks for a tracked one.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipnet_core.base.scheme import LEFT_EYE, NUM_POINTS, RIGHT_EYE


def face_roll(points: np.ndarray) -> float:
    """The angle of the line from the right eye's centre to the left eye's (68-point scheme), in
    degrees: 0 for an upright face, positive when it tilts clockwise on screen (y points down).
    Other point schemes have no known eyes: 0."""
    if len(points) != NUM_POINTS:
        return 0.0
    dx, dy = points[list(LEFT_EYE)].mean(axis=0) - points[list(RIGHT_EYE)].mean(axis=0)
    return float(np.degrees(np.arctan2(dy, dx)))


def rotation(degrees: float) -> np.ndarray:
    """2x2 matrix turning vectors by ``degrees`` clockwise on screen (y points down)."""
    theta = np.deg2rad(degrees)
    return np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])


@dataclass(frozen=True)
class CropBox:
    """A square face region in frame pixels: centre, side length, and roll (degrees, as
    ``face_roll``): the crop is turned by the roll so that the face in it is upright."""

    cx: float
    cy: float
    side: float
    roll: float = 0.0

    @classmethod
    def around_points(cls, points: np.ndarray, scale: float) -> CropBox:
        """The model's crop: upright by the eye line; centre and longer edge of the landmark box
        measured in the face's upright frame; side = scale * that edge."""
        roll = face_roll(points)
        turn = rotation(roll)
        upright = points @ turn  # row vectors: points turned by -roll
        lo, hi = upright.min(axis=0), upright.max(axis=0)
        centre = turn @ ((lo + hi) / 2)
        return cls(float(centre[0]), float(centre[1]), float(scale * max(hi - lo)), roll)

    def snapped(self) -> CropBox:
        """On a grid of whole pixels and degrees: a tracked face's crops. Two runs of a video whose
        tracks differ by a fraction of a pixel (a chunk warmed up on a few frames against the same
        frames run from the start) then fall onto the same crop within a few frames and go on
        identically; the model does not notice half a pixel."""
        return CropBox(float(round(self.cx)), float(round(self.cy)), float(round(self.side)), float(round(self.roll)))

    @property
    def centre(self) -> np.ndarray:
        return np.array([self.cx, self.cy])

    def as_xywh(self) -> tuple[float, float, float, float]:
        return (self.cx - self.side / 2, self.cy - self.side / 2, self.side, self.side)

    def iou(self, other: CropBox) -> float:
        """Intersection over union of the two squares, both taken unturned: close enough to match
        faces, whose boxes overlap far more than a difference in roll changes."""
        return box_iou(self.as_xywh(), other.as_xywh())


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two axis-aligned boxes (x, y, w, h)."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    return w * h / (a[2] * a[3] + b[2] * b[3] - w * h)


def crop_matrix(box: CropBox, size: int, extra_roll: float = 0.0, flip: bool = False) -> np.ndarray:
    """Similarity frame->crop matrix: the box fills the crop, turned counter-clockwise on screen by
    its roll plus ``extra_roll`` degrees (training's rotation augmentation), so a face whose roll
    is the box's comes out upright; optionally mirrored left-right."""
    scale = size / box.side
    theta = np.deg2rad(box.roll + extra_roll)
    cos, sin = scale * np.cos(theta), scale * np.sin(theta)
    linear = np.array([[cos, sin], [-sin, cos]])
    if flip:
        linear[0] = -linear[0]
    half = size / 2 - 0.5  # crop centre in pixel-centre coordinates
    shift = np.array([half, half]) - linear @ np.array([box.cx, box.cy])
    return np.hstack([linear, shift[:, None]]).astype(np.float64)


def warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The crop itself; outside the frame is black, like the training crops."""
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to points of shape (..., 2)."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(matrix)


def landmark_crop_matrix(points: np.ndarray, crop_scale: float, size: int) -> np.ndarray:
    """The frame->crop matrix of the crop the model was trained on, made from known landmarks."""
    return crop_matrix(CropBox.around_points(points, crop_scale), size)


def landmark_crop(image: np.ndarray, points: np.ndarray, crop_scale: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """That crop and its matrix."""
    matrix = landmark_crop_matrix(points, crop_scale, size)
    return warp(image, matrix, size), matrix


def to_network_input(crops: np.ndarray) -> np.ndarray:
    """BGR uint8 crops (B, S, S, 3) -> float32 (B, 3, S, S) in 0..255.

    Channel order and ImageNet normalisation are part of the network itself (see model.Normalise),
    so every caller feeds the same raw pixels and none can forget a step.
    """
    return np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32)

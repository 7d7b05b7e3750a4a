"""Face crop geometry shared by training, evaluation and the runtime.

A crop is a square around the face, mapped to ``size`` x ``size`` pixels by one affine warp. The
2x3 matrix maps frame pixels to crop pixels; its inverse brings predicted points back to the frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class CropBox:
    """A square face region in frame pixels: centre and side length."""

    cx: float
    cy: float
    side: float

    @classmethod
    def around_points(cls, points: np.ndarray, scale: float) -> "CropBox":
        """The model's crop: the landmark bounding box's centre, side = scale * its longer edge."""
        lo, hi = points.min(axis=0), points.max(axis=0)
        centre = (lo + hi) / 2
        return cls(float(centre[0]), float(centre[1]), float(scale * max(hi - lo)))

    def as_xywh(self) -> tuple[float, float, float, float]:
        return (self.cx - self.side / 2, self.cy - self.side / 2, self.side, self.side)

    def iou(self, other: "CropBox") -> float:
        """Intersection over union of two squares."""
        x0, y0, ox0, oy0 = self.cx - self.side / 2, self.cy - self.side / 2, other.cx - other.side / 2, other.cy - other.side / 2
        w = min(x0 + self.side, ox0 + other.side) - max(x0, ox0)
        h = min(y0 + self.side, oy0 + other.side) - max(y0, oy0)
        if w <= 0 or h <= 0:
            return 0.0
        inter = w * h
        return inter / (self.side ** 2 + other.side ** 2 - inter)


def crop_matrix(box: CropBox, size: int, angle_deg: float = 0.0, flip: bool = False) -> np.ndarray:
    """Affine frame->crop matrix: the box fills the crop, rotated by ``angle_deg`` about its centre
    (counter-clockwise in the picture) and optionally mirrored left-right."""
    scale = size / box.side
    theta = np.deg2rad(angle_deg)
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

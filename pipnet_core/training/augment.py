"""Training crops: the paper's augmentations around the landmark-box crop.

Geometry (scale, translation, rotation, mirror) is folded into the one affine warp that makes the
crop, so every sample costs a single warpAffine; photometric changes (occlusion box, blur,
greyscale, brightness/contrast, low resolution) follow on the small crop.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipnet_core.base.crop import CropBox, crop_matrix, transform_points, warp
from pipnet_core.base.scheme import FLIP_INDEX
from pipnet_core.training.config import AugmentConfig


def training_crop(
    image: np.ndarray,
    points: np.ndarray,
    crop_scale: float,
    size: int,
    cfg: AugmentConfig,
    rng: np.random.Generator,
    targets: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """An augmented crop around ``points`` and ``targets`` (default: the points; a teacher's points
    when distilling) in crop pixels, re-indexed when mirrored."""
    box = CropBox.around_points(points, crop_scale)
    side = box.side * rng.uniform(cfg.scale_min, cfg.scale_max)
    shift = rng.uniform(-cfg.translate, cfg.translate, size=2) * side
    box = CropBox(box.cx + shift[0], box.cy + shift[1], side, box.roll)
    angle = rng.uniform(-cfg.rotation_deg, cfg.rotation_deg) if rng.random() < cfg.rotation_prob else 0.0
    flip = rng.random() < cfg.flip_prob
    matrix = crop_matrix(box, size, angle, flip)
    crop = warp(image, matrix, size)
    crop_points = transform_points(points if targets is None else targets, matrix)
    if flip:
        crop_points = crop_points[FLIP_INDEX]
    return _photometric(crop, cfg, rng), crop_points.astype(np.float32)


def negative_crop(patch: np.ndarray, size: int, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """An augmented view of a patch with no face (training/negatives.py): the same geometry and
    photometric changes as a face crop, around the patch's centre."""
    full = patch.shape[0]
    side = full * rng.uniform(0.8, 1.0)
    shift = rng.uniform(-(full - side) / 2, (full - side) / 2, size=2)
    box = CropBox(full / 2 + shift[0], full / 2 + shift[1], side)
    angle = rng.uniform(-cfg.rotation_deg, cfg.rotation_deg) if rng.random() < cfg.rotation_prob else 0.0
    crop = warp(patch, crop_matrix(box, size, angle, rng.random() < cfg.flip_prob), size)
    return _photometric(crop, cfg, rng)


def _photometric(crop: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    size = crop.shape[0]
    if rng.random() < cfg.occlusion_prob:
        w, h = (rng.uniform(0.1, 0.4, size=2) * size).astype(int)
        x, y = rng.integers(0, size - w), rng.integers(0, size - h)
        crop[y : y + h, x : x + w] = rng.integers(0, 256, size=3, dtype=np.uint8)
    if rng.random() < cfg.lowres_prob:
        side = max(int(size * rng.uniform(cfg.lowres_min, cfg.lowres_max)), 8)
        small = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
        crop = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    if rng.random() < cfg.blur_prob:
        sigma = rng.uniform(0.5, 2.0)
        crop = cv2.GaussianBlur(crop, (0, 0), sigma)
    if rng.random() < cfg.grey_prob:
        crop = cv2.cvtColor(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    if rng.random() < cfg.colour_prob:
        contrast, brightness = rng.uniform(0.7, 1.3), rng.uniform(-30, 30)
        crop = cv2.convertScaleAbs(crop, alpha=contrast, beta=brightness)
    return crop

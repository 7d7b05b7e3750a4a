"""`pipnet prepare-data --negatives`: crops with no face in them, for training to empty score maps
and for measuring how often a non-face passes as a face.

Two kinds. Background patches of the labelled pictures, of the sizes the faces in them have, kept
clear of every labelled face and refused when BlazeFace finds a face in them at a low threshold
(pictures hold people nobody labelled, and a face trained as "no face" would teach the model to
miss faces). And drawn textures (smooth noise, stripes, checks, blobs), the patterns a detector
mistakes for faces on clothes, walls and dashboards. Each patch is written as a square image that
the model sees whole (``PATCH_SIZE``, a little above the input size so that training can crop,
turn and scale within it), listed in ``negatives.csv``. Seeded: the same inputs give the same folder.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipnet_core.base.crop import CropBox, crop_matrix, warp
from pipnet_core.io.files import write_file, write_image
from pipnet_core.io.images import load_image
from pipnet_core.io.labels import NEGATIVES_FILE, Sample

PATCH_SIZE = 240
# x, y, side: the square of the source picture a background patch shows (pixels; empty for textures).
NEGATIVES_COLUMNS = ["image", "source", "x", "y", "side", "kind", "purpose"]
# A patch's side against the picture's face crops, drawn evenly in log scale: the 300-W pictures are
# cut close around their faces, so most of the background there is in patches smaller than a face.
SIDE_RANGE = (0.15, 1.5)
MIN_SIDE = 32  # pixels: the smallest face the runtime looks for is 24
OUTSIDE = 0.25  # of a patch's side that may lie beyond the picture (black, as the runtime's crops there)
MAX_FACE_OVERLAP = 0.1  # of a labelled face's box, and of the patch, that the two may share
DETECTOR_THRESHOLD = 0.3  # below the runtime's 0.5: a doubtful face is not a negative either
ATTEMPTS = 30  # placements tried per patch before the picture gives up on it


@dataclass(frozen=True)
class NegativePlan:
    per_image: int = 2  # background patches of each picture
    textures: float = 0.2  # drawn textures, as a share of the background patches
    seed: int = 0
    purpose: str = "training"  # or "evaluation": training refuses such a folder (training/sources.py)


def prepare_negatives(
    samples: list[Sample], out: Path, plan: NegativePlan, progress: Callable[[int, int], None] | None = None
) -> dict[str, int]:
    """Patches with no face in ``out``, with negatives.csv; counts written by kind, and placements
    refused because the detector saw a face."""
    from pipnet_core.detection.registry import create_detector

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(plan.seed)
    faces_by_image: dict[Path, list[np.ndarray]] = defaultdict(list)
    for sample in samples:
        faces_by_image[sample.image_path].append(sample.points)
    rows, counts = [], {"background": 0, "texture": 0, "refused by the detector": 0}
    with create_detector("blazeface-both", DETECTOR_THRESHOLD, min_size=8, threads=2) as detector:
        for number, (path, faces) in enumerate(sorted(faces_by_image.items()), start=1):
            image = load_image(path)
            for copy in range(plan.per_image):
                patch, square, refused = _background_patch(image, faces, detector, rng)
                counts["refused by the detector"] += refused
                if patch is not None:
                    name = f"{path.stem}_n{copy}.jpg"
                    write_image(out / name, patch)
                    where = ",".join(f"{v:.1f}" for v in square)
                    rows.append(f"{name},{path.resolve()},{where},background,{plan.purpose}")
                    counts["background"] += 1
            if progress:
                progress(number, len(faces_by_image))
    for number in range(round(plan.textures * counts["background"])):
        name = f"texture_{number:05d}.jpg"
        write_image(out / name, drawn_texture(rng, PATCH_SIZE))
        rows.append(f"{name},,,,,texture,{plan.purpose}")
        counts["texture"] += 1
    write_file(out / NEGATIVES_FILE, ("\n".join([",".join(NEGATIVES_COLUMNS), *rows]) + "\n").encode())
    return counts


def _background_patch(image: np.ndarray, faces: list[np.ndarray], detector, rng):
    """A square of the picture clear of its labelled faces and of any face the detector finds,
    scaled to ``PATCH_SIZE``, and the square (x, y, side); None, None when no placement works.
    Also the placements the detector refused."""
    height, width = image.shape[:2]
    face_side = float(np.median([CropBox.around_points(points, 1.2).side for points in faces]))
    face_boxes = [CropBox.around_points(points, 1.0).as_xywh() for points in faces]
    refused = 0
    for _ in range(ATTEMPTS):
        side = max(face_side * np.exp(rng.uniform(*np.log(SIDE_RANGE))), MIN_SIDE)
        if side > min(width, height):
            continue
        x = rng.uniform(-OUTSIDE * side, width - (1 - OUTSIDE) * side)
        y = rng.uniform(-OUTSIDE * side, height - (1 - OUTSIDE) * side)
        if any(_covered(box, (x, y, side)) > MAX_FACE_OVERLAP for box in face_boxes):
            continue
        patch = warp(image, crop_matrix(CropBox(x + side / 2, y + side / 2, side), PATCH_SIZE), PATCH_SIZE)
        if detector.detect(patch):
            refused += 1
            continue
        return patch, (x, y, side), refused
    return None, None, refused


def _covered(face: tuple[float, float, float, float], patch: tuple[float, float, float]) -> float:
    """What a face box (x, y, w, h) and a square patch (x, y, side) share, as the larger of its
    shares of either: a small patch inside a face (an eye, the lips) is a part of a face, not a
    background."""
    fx, fy, fw, fh = face
    px, py, side = patch
    across = max(0.0, min(fx + fw, px + side) - max(fx, px))
    down = max(0.0, min(fy + fh, py + side) - max(fy, py))
    return across * down / max(min(fw * fh, side * side), 1e-6)


def drawn_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """One of four drawn patterns, in random colours: smooth noise, stripes, checks or blobs."""
    kind = rng.integers(4)
    colours = rng.integers(0, 256, size=(2, 3)).astype(np.float32)
    if kind == 0:  # smooth noise: a few random cells, enlarged
        cells = int(rng.integers(3, 24))
        weight = cv2.resize(rng.random((cells, cells), dtype=np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    elif kind in (1, 2):  # stripes, or checks (stripes both ways), at a random angle and period
        angle, period = rng.uniform(0, np.pi), rng.uniform(8, size / 2)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        along = (xx * np.cos(angle) + yy * np.sin(angle)) / period
        weight = (np.sin(2 * np.pi * along) > 0).astype(np.float32)
        if kind == 2:
            across = (-xx * np.sin(angle) + yy * np.cos(angle)) / period
            weight = np.abs(weight - (np.sin(2 * np.pi * across) > 0))
    else:  # blobs: filled ellipses on a plain ground
        weight = np.zeros((size, size), np.float32)
        for _ in range(int(rng.integers(2, 9))):
            centre = tuple(int(v) for v in rng.integers(0, size, 2))
            axes = tuple(int(v) for v in rng.integers(size // 16, size // 3, 2))
            cv2.ellipse(weight, centre, axes, float(rng.uniform(0, 180)), 0, 360, float(rng.random()), -1)
    weight = np.clip(weight, 0, 1)[..., None]
    texture = colours[0] * (1 - weight) + colours[1] * weight
    return np.clip(texture + rng.normal(0, 6, texture.shape), 0, 255).astype(np.uint8)

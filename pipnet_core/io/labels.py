"""Readers for labeled and unlabeled face images.

Two labeled layouts, both as they ship:
* 300-W folders: ``name.jpg`` (or .png) beside ``name.pts``; .pts coordinates are 1-based
  (MATLAB convention) and are converted to 0-based here, and back when written.
* Landmark CSV: a header row, then ``image_name,x0,y0,...,x67,y67``; images live in the folder
  named like the CSV without its extension (``train.csv`` -> ``train/``), or in ``image_dir``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from pipnet_core.base.crop import CropBox
from pipnet_core.base.errors import PipnetError
from pipnet_core.base.scheme import NUM_POINTS
from pipnet_core.io.media import IMAGE_SUFFIXES


@dataclass(frozen=True)
class Sample:
    """One labeled face: its image file and points (N, 2), 0-based frame pixels."""

    image_path: Path
    points: np.ndarray


def read_pts(path: Path, num_points: int = NUM_POINTS) -> np.ndarray:
    """Points (N, 2) from a 300-W .pts file, converted to 0-based pixels."""
    try:
        lines = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
        start, end = lines.index("{") + 1, lines.index("}")
        points = np.array([[float(v) for v in line.split()] for line in lines[start:end]], dtype=np.float32)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise PipnetError(f"{path}: not a valid .pts file ({exc})") from None
    if points.shape != (num_points, 2):
        raise PipnetError(f"{path}: expected {num_points} points of 2 coordinates, found shape {points.shape}")
    return points - 1.0


def write_pts(path: Path, points: np.ndarray) -> None:
    """A 300-W .pts file (1-based) from 0-based points."""
    body = "\n".join(f"{x + 1:.3f} {y + 1:.3f}" for x, y in points)
    Path(path).write_text(f"version: 1\nn_points:  {len(points)}\n{{\n{body}\n}}\n")


def read_300w_folder(folder: Path, num_points: int = NUM_POINTS) -> list[Sample]:
    """Every image in ``folder`` that has a .pts file beside it."""
    samples = []
    for image_path in sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        pts_path = image_path.with_suffix(".pts")
        if pts_path.exists():
            samples.append(Sample(image_path, read_pts(pts_path, num_points)))
    if not samples:
        raise PipnetError(f"{folder}: no images with .pts labels found")
    return samples


def read_landmark_csv(csv_path: Path, image_dir: Path | None = None, num_points: int = NUM_POINTS) -> list[Sample]:
    """Samples from ``name,x0,y0,...`` rows after a header row."""
    csv_path = Path(csv_path)
    image_dir = Path(image_dir) if image_dir else csv_path.with_suffix("")
    samples = []
    try:
        with csv_path.open(newline="") as handle:
            rows = csv.reader(handle)
            next(rows, None)  # header
            for line_no, row in enumerate(rows, start=2):
                if not row:
                    continue
                if len(row) != 1 + 2 * num_points:
                    raise PipnetError(f"{csv_path}:{line_no}: expected {1 + 2 * num_points} columns, found {len(row)}")
                try:
                    coords = np.array(row[1:], dtype=np.float32).reshape(num_points, 2)
                except ValueError:
                    raise PipnetError(f"{csv_path}:{line_no}: coordinates are not numbers") from None
                samples.append(Sample(image_dir / row[0], coords))
    except OSError as exc:
        raise PipnetError(f"{csv_path}: cannot read ({exc.strerror})") from None
    if not samples:
        raise PipnetError(f"{csv_path}: no labeled rows")
    return samples


def conflicting_labels(samples: list[Sample], tolerance_px: float = 1.0) -> set[Path]:
    """Images labeled twice for the same face with different points. Several faces of one image
    are fine; two labelings of one face cannot both be right. (``ytf68`` has such rows: frames of
    different videos of one person share a file name, and only one of them is the file on disk.)"""
    by_image: dict[Path, list[np.ndarray]] = {}
    for sample in samples:
        by_image.setdefault(sample.image_path, []).append(sample.points)
    conflicting = set()
    for path, labelings in by_image.items():
        boxes = [CropBox.around_points(points, 1.0) for points in labelings]
        for i in range(len(labelings)):
            for j in range(i):
                same_face = boxes[i].iou(boxes[j]) >= 0.3
                if same_face and np.abs(labelings[i] - labelings[j]).mean() > tolerance_px:
                    conflicting.add(path)
    return conflicting


def read_labeled(path: Path, num_points: int = NUM_POINTS) -> list[Sample]:
    """Labeled samples from either layout: a .csv file, a folder of images + .pts, or a folder
    with a same-named .csv beside it (``ytf68/test`` -> ``ytf68/test.csv``)."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return read_landmark_csv(path, num_points=num_points)
    if not path.is_dir():
        raise PipnetError(f"{path}: no such folder or CSV file")
    sibling_csv = path.with_suffix(".csv")
    if sibling_csv.is_file() and not any(path.glob("*.pts")):
        return read_landmark_csv(sibling_csv, path, num_points)
    return read_300w_folder(path, num_points)


def list_images(folder: Path) -> list[Path]:
    """Image files in an unlabeled folder, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PipnetError(f"{folder}: no such folder")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise PipnetError(f"{folder}: no images found")
    return images


TURNS_FILE = "turns.csv"  # beside a folder of turned faces (`pipnet prepare-data`): what each image is


class TurnedFace(NamedTuple):
    yaw: float  # degrees the face ends at (+: towards the image's right)
    eye_distance: float  # between the outer eye corners in 3D, pixels: what the turn leaves unchanged
    purpose: str  # "training", or "evaluation": turned test faces, which no training may read
    source: str  # the labelled picture it was made from


def read_turns(folder: Path) -> dict[str, TurnedFace]:
    """What each image of a folder of turned faces is, by image name."""
    try:
        with (Path(folder) / TURNS_FILE).open() as handle:
            return {
                row["image"]: TurnedFace(float(row["yaw"]), float(row["eye_distance"]), row["purpose"], row["source"])
                for row in csv.DictReader(handle)
            }
    except (OSError, KeyError, ValueError) as exc:
        raise PipnetError(f"{folder}: no readable {TURNS_FILE} (`pipnet prepare-data` writes one): {exc}") from None


NEGATIVES_FILE = "negatives.csv"  # beside a folder of crops with no face (`pipnet prepare-data --negatives`)


class NegativePatch(NamedTuple):
    image_path: Path  # the patch, already cropped: the whole image is the model's view
    kind: str  # "background" (of a labelled picture) or "texture" (drawn)
    purpose: str  # "training", or "evaluation": patches of test pictures, which no training may read


def read_negatives(folder: Path) -> list[NegativePatch]:
    """The patches of a folder of negatives, in file order."""
    folder = Path(folder)
    try:
        with (folder / NEGATIVES_FILE).open() as handle:
            return [NegativePatch(folder / row["image"], row["kind"], row["purpose"]) for row in csv.DictReader(handle)]
    except (OSError, KeyError) as exc:
        raise PipnetError(
            f"{folder}: no readable {NEGATIVES_FILE} (`pipnet prepare-data --negatives` writes one): {exc}"
        ) from None

"""Faces read back from the files the writers made (CSV, OpenFace's CSV, JSON Lines, a .pts folder):
for drawing a resumed video and for comparing runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from pipnet_core.base.records import Face, points_box
from pipnet_core.base.scheme import NUM_POINTS
from pipnet_core.export.writers import OpenFaceWriter, PtsWriter
from pipnet_core.io.labels import read_pts

NOT_WRITTEN = float("nan")  # the detector score, which only JSON Lines keeps


def read_records(path: Path) -> dict[int, list[Face]]:
    """Faces per frame from a CSV, JSON Lines or .pts folder the writers made, lost ones (``success``
    False) included; frames with no face map to [] (in a .pts folder they are absent)."""
    if path.is_dir():
        return _read_pts_folder(path)
    frames: dict[int, list[Face]] = {}
    with path.open() as handle:
        if path.suffix == ".csv":
            reader = csv.DictReader(handle, skipinitialspace=True)  # OpenFace's: ", " between fields
            if reader.fieldnames and "pose_Tx" in reader.fieldnames:
                return _read_openface(reader)
            for row in reader:
                faces = frames.setdefault(int(row["frame"]), [])
                if row["face_id"] != "-1":
                    xs = [float(row[f"x_{i}"]) for i in range(NUM_POINTS)]
                    ys = [float(row[f"y_{i}"]) for i in range(NUM_POINTS)]
                    faces.append(
                        Face(
                            id=int(row["face_id"]),
                            box=tuple(float(row[k]) for k in ("box_x", "box_y", "box_w", "box_h")),
                            score=NOT_WRITTEN,
                            points=np.stack([xs, ys], axis=1),
                            confidence=np.array([float(row[f"c_{i}"]) for i in range(NUM_POINTS)]),
                            pose=None,
                            success=row["success"] == "1",
                        )
                    )
        else:
            next(handle)  # header
            for line in handle:
                record = json.loads(line)
                frames[record["frame"]] = [
                    Face(
                        id=f["face_id"],
                        box=tuple(f["box"]),
                        score=f["detector_score"],
                        points=np.array(f["points"]),
                        confidence=np.array(f["point_confidence"]),
                        pose=None,
                        success=f["success"],
                    )
                    for f in record["faces"]
                ]
    return frames


def _read_openface(reader) -> dict[int, list[Face]]:
    frames: dict[int, list[Face]] = {}
    for row in reader:
        faces = frames.setdefault(int(row["frame"]) - OpenFaceWriter.FIRST_FRAME, [])
        points = np.array([[float(row[f"x_{i}"]), float(row[f"y_{i}"])] for i in range(NUM_POINTS)])
        if row["success"] == "1" or points.any():  # a frame without a face: one row of zeros
            faces.append(
                Face(
                    id=int(row["face_id"]),
                    box=points_box(points),
                    score=NOT_WRITTEN,
                    points=points,
                    confidence=np.full(NUM_POINTS, float(row["confidence"])),
                    pose=None,
                    success=row["success"] == "1",
                )
            )
    return frames


def _read_pts_folder(folder: Path) -> dict[int, list[Face]]:
    frames: dict[int, list[Face]] = {}
    for path, frame in sorted(PtsWriter.written(folder)):
        face_id = int(path.stem.split("_", 1)[1])
        points = read_pts(path)
        frames.setdefault(frame, []).append(
            Face(face_id, points_box(points), NOT_WRITTEN, points, np.ones(NUM_POINTS, np.float32), None, True)
        )
    return frames

"""Landmark records out: CSV (OpenFace-style columns), JSON Lines and 300-W .pts files.

Shared by `pipnet detect`, `pipnet annotate` and the GUI's export. Every row is written with one
unbuffered write as soon as its frame is done, so a killed run leaves files whose every line
parses; ``resume_point`` trims a torn last line and says which frame to continue from.
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import write_pts
from .errors import PipnetError
from .landmarker import Face
from .scheme import NUM_POINTS

CSV_COLUMNS = (
    ["frame", "timestamp", "face_id", "confidence", "success", "box_x", "box_y", "box_w", "box_h",
     "pose_yaw", "pose_pitch", "pose_roll"]
    + [f"x_{i}" for i in range(NUM_POINTS)] + [f"y_{i}" for i in range(NUM_POINTS)]
    + [f"c_{i}" for i in range(NUM_POINTS)]
)


def face_to_dict(face: Face) -> dict:
    pose = face.pose
    return {
        "face_id": face.id,
        "success": face.success,
        "confidence": round(face.mean_confidence, 4),
        "detector_score": round(face.score, 4),
        "box": [round(v, 2) for v in face.box],
        "pose": None if pose is None else {"yaw": round(pose.yaw, 2), "pitch": round(pose.pitch, 2), "roll": round(pose.roll, 2)},
        "points": [[round(float(x), 2), round(float(y), 2)] for x, y in face.points],
        "point_confidence": [round(float(c), 3) for c in face.confidence],
    }


@dataclass(frozen=True)
class FaceRecord:
    """A face as read back from a written file (enough to redraw it)."""

    id: int
    box: tuple[float, float, float, float]
    points: np.ndarray
    confidence: np.ndarray
    success: bool = True  # False: the frame where the face was lost (drawing skips it)
    pose = None

    @property
    def mean_confidence(self) -> float:
        return float(self.confidence.mean())


class _LineFile:
    """Append-only text file written one whole line per system call."""

    def __init__(self, path: Path, append: bool):
        self.path = path
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC), 0o644)
        except OSError as exc:
            raise PipnetError(f"{path}: cannot write ({exc.strerror})") from None

    def write(self, text: str) -> None:
        os.write(self._fd, text.encode())

    def close(self) -> None:
        os.close(self._fd)


def _csv_line(values: list) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def export_header(model, **fields) -> dict:
    """What every export says about how it was made: the model's name, version and sha256 (so a
    table can be traced to the exact weights) plus the caller's fields (source, frame rate, ...)."""
    from .onnx_runner import describe_model

    described = describe_model(model)
    return {key: described[key] for key in ("model", "model_version", "model_precision", "model_sha256")} | fields


def sidecar_path(table: Path) -> Path:
    """Where a CSV table's header lives: ``name.csv`` -> ``name.csv.json`` (CSV has no comment syntax
    every reader accepts, so the header is not inside the table)."""
    return table.with_name(table.name + ".json")


class CsvWriter:
    """OpenFace-style columns, one row per face per frame; ``header`` goes to the sidecar."""

    def __init__(self, path: Path, header: dict | None = None, append: bool = False):
        self.file = _LineFile(path, append)
        if not append:
            self.file.write(_csv_line(CSV_COLUMNS))
        if header is not None and not append:
            sidecar_path(path).write_text(json.dumps(header, indent=1) + "\n")

    def write_frame(self, frame: int, timestamp: float, faces: list[Face]) -> None:
        rows = [self._row(frame, timestamp, f) for f in faces] or [[frame, f"{timestamp:.4f}", -1, 0, 0] + [""] * (len(CSV_COLUMNS) - 5)]
        self.file.write("".join(_csv_line(r) for r in rows))

    @staticmethod
    def _row(frame: int, timestamp: float, face: Face) -> list:
        pose = face.pose
        angles = [f"{pose.yaw:.2f}", f"{pose.pitch:.2f}", f"{pose.roll:.2f}"] if pose else ["", "", ""]
        return ([frame, f"{timestamp:.4f}", face.id, f"{face.mean_confidence:.4f}", int(face.success)]
                + [f"{v:.2f}" for v in face.box] + angles
                + [f"{v:.2f}" for v in face.points[:, 0]] + [f"{v:.2f}" for v in face.points[:, 1]]
                + [f"{v:.3f}" for v in face.confidence])

    def close(self) -> None:
        self.file.close()


class JsonLinesWriter:
    """First line: the file's header (model, frame rate, size, frame count); then one line per frame."""

    def __init__(self, path: Path, header: dict, append: bool = False):
        self.file = _LineFile(path, append)
        if not append:
            self.file.write(json.dumps({"type": "header", **header}) + "\n")

    def write_frame(self, frame: int, timestamp: float, faces: list[Face]) -> None:
        record = {"frame": frame, "timestamp": round(timestamp, 4), "faces": [face_to_dict(f) for f in faces]}
        self.file.write(json.dumps(record, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self.file.close()


class PtsWriter:
    """One 300-W .pts file per face per frame: FOLDER/FRAME_FACEID.pts (written whole, then renamed)."""

    def __init__(self, folder: Path):
        self.folder = folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PipnetError(f"{folder}: cannot write ({exc.strerror})") from None

    def write_frame(self, frame: int, timestamp: float, faces: list[Face]) -> None:
        for face in faces:
            path = self.folder / f"{frame:06d}_{face.id}.pts"
            tmp = path.with_suffix(".tmp")
            write_pts(tmp, face.points)
            tmp.replace(path)

    def close(self) -> None:
        pass


def video_writer(path: Path, fps: float, size: tuple[int, int]):
    """An annotated-video writer: .avi as Motion JPEG, anything else as MPEG-4 Part 2 in the given
    container (.mp4 by default); a PipnetError if the path cannot take it."""
    import cv2

    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, size)
    if not writer.isOpened():
        raise PipnetError(f"{path}: cannot write a video there")
    return writer


def _frame_of(line: str, suffix: str) -> int:
    return int(line.split(",", 1)[0]) if suffix == ".csv" else int(json.loads(line)["frame"])


def resume_point(path: Path) -> int:
    """The first frame still to do in a CSV or JSON Lines file written above; 0 means start over.

    Each frame goes out in one write, so every complete line belongs to a complete frame; a torn
    tail (from a crash mid-write on a system where writes can tear) is cut off first."""
    if not path.is_file():
        return 0
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with path.open("r+b") as handle:
            handle.truncate(len(complete))
    lines = complete.decode().splitlines()
    return _frame_of(lines[-1], path.suffix) + 1 if len(lines) > 1 else 0


def read_records(path: Path) -> dict[int, list[FaceRecord]]:
    """Faces per frame from a CSV or JSON Lines file written above, lost ones (``success`` False)
    included; frames with no face map to []."""
    frames: dict[int, list[FaceRecord]] = {}
    with path.open() as handle:
        if path.suffix == ".csv":
            for row in csv.DictReader(handle):
                faces = frames.setdefault(int(row["frame"]), [])
                if row["face_id"] != "-1":
                    xs = [float(row[f"x_{i}"]) for i in range(NUM_POINTS)]
                    ys = [float(row[f"y_{i}"]) for i in range(NUM_POINTS)]
                    faces.append(FaceRecord(int(row["face_id"]), tuple(float(row[k]) for k in ("box_x", "box_y", "box_w", "box_h")),
                                            np.stack([xs, ys], axis=1), np.array([float(row[f"c_{i}"]) for i in range(NUM_POINTS)]),
                                            row["success"] == "1"))
        else:
            next(handle)  # header
            for line in handle:
                record = json.loads(line)
                frames[record["frame"]] = [FaceRecord(f["face_id"], tuple(f["box"]), np.array(f["points"]),
                                                      np.array(f["point_confidence"]), f["success"])
                                           for f in record["faces"]]
    return frames

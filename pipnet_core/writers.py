"""Landmark records out: CSV (OpenFace-style columns), JSON Lines and 300-W .pts files.

Shared by `pipnet detect`, `pipnet annotate` and the GUI's export. Each frame is written with one
unbuffered write as soon as it is done, so a killed run leaves files whose every complete line
parses. For `--resume`, each writer says which frame it surely completed (``last_complete``) and
continues from a given frame after trimming what came later (a torn tail included).
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import uuid
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
    """An append-only text file written one whole frame per call. Short writes are looped; a
    write that fails (no space, quota, file-size limit) is undone by truncating back to where the
    frame began, so the file never ends in a torn line."""

    def __init__(self, path: Path, append: bool):
        self.path = path
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC), 0o644)
            self._size = os.fstat(self._fd).st_size
        except OSError as exc:
            raise PipnetError(f"{path}: cannot write ({exc.strerror})") from None

    def write(self, text: str) -> None:
        encoded = text.encode()
        data = memoryview(encoded)
        try:
            while data:
                data = data[os.write(self._fd, data):]
        except OSError as exc:
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                pass
            raise PipnetError(f"{self.path}: cannot write ({exc.strerror}); complete up to the frame before "
                              "(--resume continues it)") from None
        self._size += len(encoded)

    def close(self) -> None:
        os.close(self._fd)


def _csv_line(values: list) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def write_file(path: Path, data: bytes, shared: bool = False) -> None:
    """A file replaced whole: written under a temporary name, then renamed (never half-written).
    ``shared``: other processes may write the same file at once (a cluster task that Dask runs
    again while its first run goes on): each writes its own temporary file."""
    partial = path.with_name(path.name + (f".{uuid.uuid4().hex}" if shared else "") + ".partial")
    try:
        partial.write_bytes(data)
        partial.replace(path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise PipnetError(f"{path}: cannot write ({exc.strerror})") from None


def write_json(path: Path, value: dict) -> None:
    write_file(path, (json.dumps(value, indent=1) + "\n").encode())


def write_image(path: Path, image: np.ndarray) -> None:
    """An image file in the format its suffix names."""
    import cv2

    ok, encoded = cv2.imencode(path.suffix, image)
    if not ok:
        raise PipnetError(f"{path}: cannot encode an image with this suffix")
    write_file(path, encoded.tobytes())


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def export_header(model, **fields) -> dict:
    """What every export says about how it was made: the model's name, version and sha256 (so a
    table can be traced to the exact weights) plus the caller's fields (source, frame rate,
    settings, ...)."""
    from .onnx_runner import describe_model

    described = describe_model(model)
    return {key: described[key] for key in ("model", "model_version", "model_precision", "model_sha256")} | fields


def sidecar_path(table: Path) -> Path:
    """Where a CSV table's header lives: ``name.csv`` -> ``name.csv.json`` (CSV has no comment syntax
    every reader accepts, so the header is not inside the table)."""
    return table.with_name(table.name + ".json")


class _Table:
    """A header line, then records in frame order, each starting with its frame number."""

    @staticmethod
    def _parse_frame(line: bytes) -> int:
        raise NotImplementedError

    @classmethod
    def _frame_of(cls, line: bytes, path: Path) -> int:
        try:
            return cls._parse_frame(line)
        except (ValueError, KeyError, TypeError):
            raise PipnetError(f"{path}: a line that is not a record of this program ({line[:40]!r}); "
                              "cannot resume it") from None

    @classmethod
    def has_records(cls, path: Path) -> bool:
        return len(cls._complete_lines(path)) > 1

    @classmethod
    def _complete_lines(cls, path: Path) -> list[bytes]:
        """The file's complete lines (a torn tail left by a crash is not one)."""
        try:
            data = path.read_bytes()
        except OSError:
            return []
        return data[: data.rfind(b"\n") + 1].splitlines(keepends=True)

    @classmethod
    def trim(cls, path: Path, start: int) -> None:
        """Keep the header and the records of frames before ``start``; drop the rest, torn tail included."""
        lines = cls._complete_lines(path)
        keep = len(lines[0]) if lines else 0
        for line in lines[1:]:
            if cls._frame_of(line, path) >= start:
                break
            keep += len(line)
        try:
            os.truncate(path, keep)
        except OSError as exc:
            raise PipnetError(f"{path}: cannot trim to frame {start} ({exc.strerror})") from None


class CsvWriter(_Table):
    """OpenFace-style columns, one row per face per frame; ``header`` goes to the sidecar.
    ``start`` > 0 continues a file: it is trimmed to the frames before ``start`` and appended to."""

    def __init__(self, path: Path, header: dict | None = None, start: int = 0):
        if start:
            self.trim(path, start)
        else:
            # Old sidecar gone before the table is emptied, new one after: a kill in between
            # leaves no table whose rows disagree with its header.
            sidecar_path(path).unlink(missing_ok=True)
        self.file = _LineFile(path, append=bool(start))
        if not start:
            self.file.write(_csv_line(CSV_COLUMNS))
            if header is not None:
                write_json(sidecar_path(path), header)

    @staticmethod
    def _parse_frame(line: bytes) -> int:
        return int(line.split(b",", 1)[0])

    @classmethod
    def last_complete(cls, path: Path) -> int:
        """The last frame surely complete; -1 for none. A frame's rows go out in one write, but a
        kill can cut a long write at a page boundary, and nothing in a row says how many faces its
        frame had: the last frame present is taken as unfinished, and done again."""
        lines = cls._complete_lines(path)
        return cls._frame_of(lines[-1], path) - 1 if len(lines) > 1 else -1

    @staticmethod
    def read_header(path: Path) -> dict | None:
        return _read_json(sidecar_path(path))

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


class JsonLinesWriter(_Table):
    """First line: the file's header (model, frame rate, size, frame count); then one line per
    frame. ``start`` as for ``CsvWriter``."""

    def __init__(self, path: Path, header: dict, start: int = 0):
        if start:
            self.trim(path, start)
        self.file = _LineFile(path, append=bool(start))
        if not start:
            self.file.write(json.dumps({"type": "header", **header}) + "\n")

    @staticmethod
    def _parse_frame(line: bytes) -> int:
        return int(json.loads(line)["frame"])

    @classmethod
    def last_complete(cls, path: Path) -> int:
        """The last frame written: each frame is one line, whole or torn."""
        lines = cls._complete_lines(path)
        return cls._frame_of(lines[-1], path) if len(lines) > 1 else -1

    @staticmethod
    def read_header(path: Path) -> dict | None:
        try:
            with path.open("rb") as handle:
                header = json.loads(handle.readline())
        except (OSError, ValueError):
            return None
        return header if isinstance(header, dict) and header.get("type") == "header" else None

    def write_frame(self, frame: int, timestamp: float, faces: list[Face]) -> None:
        record = {"frame": frame, "timestamp": round(timestamp, 4), "faces": [face_to_dict(f) for f in faces]}
        self.file.write(json.dumps(record, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self.file.close()


_PTS_NAME = re.compile(r"(\d+)_(\d+)\.pts")  # FRAME_FACEID.pts


class PtsWriter:
    """One 300-W .pts file per face per frame: FOLDER/FRAME_FACEID.pts (written whole, then
    renamed), and the header as FOLDER/header.json. ``start`` > 0 continues a folder: files of
    frames from ``start`` on are removed; 0 starts it afresh."""

    HEADER = "header.json"

    def __init__(self, folder: Path, header: dict, start: int = 0):
        self.folder = folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for path in folder.glob("*.pts.partial"):
                path.unlink()
            for path, frame in self._written(folder):
                if frame >= start:
                    path.unlink()
        except OSError as exc:
            raise PipnetError(f"{folder}: cannot write ({exc.strerror})") from None
        if not start:
            write_json(folder / self.HEADER, header)

    @staticmethod
    def _written(folder: Path) -> list[tuple[Path, int]]:
        """This writer's files and their frames (anything else in the folder is left alone)."""
        found = (_PTS_NAME.fullmatch(path.name) for path in folder.glob("*.pts")) if folder.is_dir() else ()
        return [(folder / match.group(0), int(match.group(1))) for match in found if match]

    @classmethod
    def last_complete(cls, folder: Path) -> int:
        """As ``CsvWriter.last_complete``: the last frame with a file is taken as unfinished."""
        frames = [frame for _, frame in cls._written(folder)]
        return max(frames) - 1 if frames else -1

    @classmethod
    def has_records(cls, folder: Path) -> bool:
        return bool(cls._written(folder))

    @classmethod
    def read_header(cls, folder: Path) -> dict | None:
        return _read_json(folder / cls.HEADER)

    def write_frame(self, frame: int, timestamp: float, faces: list[Face]) -> None:
        for face in faces:
            path = self.folder / f"{frame:06d}_{face.id}.pts"
            partial = path.with_name(path.name + ".partial")
            try:
                write_pts(partial, face.points)
                partial.replace(path)
            except OSError as exc:
                partial.unlink(missing_ok=True)
                raise PipnetError(f"{path}: cannot write ({exc.strerror})") from None

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


def read_records(path: Path) -> dict[int, list[FaceRecord]]:
    """Faces per frame from a CSV, JSON Lines or .pts folder written above, lost ones (``success``
    False) included; frames with no face map to [] (in a .pts folder they are absent)."""
    if path.is_dir():
        return _read_pts_folder(path)
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


def _read_pts_folder(folder: Path) -> dict[int, list[FaceRecord]]:
    from .data import read_pts

    frames: dict[int, list[FaceRecord]] = {}
    for path, frame in sorted(PtsWriter._written(folder)):
        face_id = int(path.stem.split("_", 1)[1])
        points = read_pts(path)
        lo, hi = points.min(axis=0), points.max(axis=0)
        box = (float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1]))
        frames.setdefault(frame, []).append(FaceRecord(face_id, box, points, np.ones(NUM_POINTS, np.float32)))
    return frames

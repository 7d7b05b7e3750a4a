"""Landmark records out: CSV (OpenFace-style columns), OpenFace 2.x's own CSV, JSON Lines, 300-W
.pts files and blink events.

Shared by `pipnet detect`, `pipnet annotate` and the GUI's export. Each frame is written with one
unbuffered write as soon as it is done, so a killed run leaves files whose every complete line
parses. For `--resume`, each writer says which frame it surely completed (``last_complete``) and
continues from a given frame after trimming what came later (a torn tail included).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipnet_core.base.errors import PipnetError
from pipnet_core.base.records import Face, FrameFaces, points_box
from pipnet_core.base.scheme import NUM_POINTS
from pipnet_core.io.files import write_file, write_json
from pipnet_core.io.labels import write_pts
from pipnet_core.model.interface import describe_model
from pipnet_core.offline.measures import Blink, eye_aspect_ratios, mouth_aspect_ratio
from pipnet_core.pipeline.pose import camera_matrix, estimate_pose, openface_angles, openface_geometry

CSV_COLUMNS = (
    [
        "frame",
        "timestamp",
        "face_id",
        "confidence",
        "success",
        "box_x",
        "box_y",
        "box_w",
        "box_h",
        "pose_yaw",
        "pose_pitch",
        "pose_roll",
        "ear_right",
        "ear_left",
        "mar",
    ]
    + [f"x_{i}" for i in range(NUM_POINTS)]
    + [f"y_{i}" for i in range(NUM_POINTS)]
    + [f"c_{i}" for i in range(NUM_POINTS)]
)
# What OpenFace 2.x FeatureExtraction writes with -2Dfp -3Dfp -pose (RecorderCSV.cpp), in order.
OPENFACE_COLUMNS = [
    "frame",
    "face_id",
    "timestamp",
    "confidence",
    "success",
    "pose_Tx",
    "pose_Ty",
    "pose_Tz",
    "pose_Rx",
    "pose_Ry",
    "pose_Rz",
] + [f"{axis}_{i}" for axis in ("x", "y", "X", "Y", "Z") for i in range(NUM_POINTS)]
BLINK_COLUMNS = ["face_id", "eye", "start_frame", "end_frame", "start_time", "end_time", "min_ear"]


def face_to_dict(face: Face) -> dict:
    pose = face.pose
    right, left = eye_aspect_ratios(face.points)
    return {
        "face_id": face.id,
        "success": face.success,
        "confidence": round(face.mean_confidence, 4),
        "detector_score": round(face.score, 4),
        "box": [round(v, 2) for v in face.box],
        "pose": None
        if pose is None
        else {"yaw": round(pose.yaw, 2), "pitch": round(pose.pitch, 2), "roll": round(pose.roll, 2)},
        "eye_aspect_ratio": {"right": round(right, 4), "left": round(left, 4)},
        "mouth_aspect_ratio": round(mouth_aspect_ratio(face.points), 4),
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
                data = data[os.write(self._fd, data) :]
        except OSError as exc:
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                pass
            raise PipnetError(
                f"{self.path}: cannot write ({exc.strerror}); complete up to the frame before (--resume continues it)"
            ) from None
        self._size += len(encoded)

    def close(self) -> None:
        os.close(self._fd)


def _csv_line(values: list) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def export_header(model, **fields) -> dict:
    """What every export says about how it was made: the model's name, version and sha256 (so a
    table can be traced to the exact weights) plus the caller's fields (source, frame rate,
    settings, ...)."""

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
            raise PipnetError(
                f"{path}: a line that is not a record of this program ({line[:40]!r}); cannot resume it"
            ) from None

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

    COLUMNS = CSV_COLUMNS
    FIRST_FRAME = 0  # the number a video's first frame has in the file

    def __init__(self, path: Path, header: dict | None = None, start: int = 0):
        if start:
            self.trim(path, start)
        else:
            # Old sidecar gone before the table is emptied, new one after: a kill in between
            # leaves no table whose rows disagree with its header.
            sidecar_path(path).unlink(missing_ok=True)
        self.file = _LineFile(path, append=bool(start))
        if not start:
            self.file.write(self._line(self.COLUMNS))
            if header is not None:
                write_json(sidecar_path(path), header)

    @classmethod
    def _parse_frame(cls, line: bytes) -> int:
        return int(line.split(b",", 1)[0]) - cls.FIRST_FRAME

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

    @staticmethod
    def _line(values: list) -> str:
        return _csv_line(values)

    def write_frame(self, frame: int, timestamp: float, faces: list[Face]) -> None:
        rows = [self._row(frame, timestamp, f) for f in faces] or [self._empty_row(frame, timestamp)]
        self.file.write("".join(self._line(row) for row in rows))

    def _empty_row(self, frame: int, timestamp: float) -> list:
        return [frame, f"{timestamp:.4f}", -1, 0, 0] + [""] * (len(self.COLUMNS) - 5)

    def _row(self, frame: int, timestamp: float, face: Face) -> list:
        pose = face.pose
        angles = [f"{pose.yaw:.2f}", f"{pose.pitch:.2f}", f"{pose.roll:.2f}"] if pose else ["", "", ""]
        measures = [*eye_aspect_ratios(face.points), mouth_aspect_ratio(face.points)]
        return (
            [frame, f"{timestamp:.4f}", face.id, f"{face.mean_confidence:.4f}", int(face.success)]
            + [f"{v:.2f}" for v in face.box]
            + angles
            + [f"{v:.4f}" for v in measures]
            + [f"{v:.2f}" for v in face.points[:, 0]]
            + [f"{v:.2f}" for v in face.points[:, 1]]
            + [f"{v:.3f}" for v in face.confidence]
        )

    def close(self) -> None:
        self.file.close()


class OpenFaceWriter(CsvWriter):
    """The CSV of OpenFace 2.x ``FeatureExtraction -2Dfp -3Dfp -pose``, as its RecorderCSV writes
    it: the same header, ", " between fields, frames numbered from 1, its number formats. Head
    pose and 3D landmarks are fitted to the points with the camera intrinsics the header names
    (``camera``: fx, fy, cx, cy; OpenFace's own guess unless given). A frame without a face gets one
    row with success 0 and zeros."""

    COLUMNS = OPENFACE_COLUMNS
    FIRST_FRAME = 1

    def __init__(self, path: Path, header: dict, start: int = 0):
        self.camera = camera_matrix(header["width"], header["height"], *header["camera"])
        super().__init__(path, header, start)

    @staticmethod
    def _line(values: list) -> str:
        return ", ".join(map(str, values)) + "\n"

    def _empty_row(self, frame: int, timestamp: float) -> list:
        return (
            [frame + self.FIRST_FRAME, 0, f"{timestamp:.3f}", "0.00", 0]
            + ["0.0"] * 3
            + ["0.000"] * 3
            + ["0.0"] * (5 * NUM_POINTS)
        )

    def _row(self, frame: int, timestamp: float, face: Face) -> list:
        # Faces come with their pose fitted with these intrinsics (the run's landmarker has them).
        pose = face.pose if face.pose is not None else estimate_pose(face.points, self.camera)
        if pose is None:  # no fit: the 2D points, zeros for the rest
            centre, angles, landmarks = np.zeros(3), (0.0, 0.0, 0.0), np.zeros((NUM_POINTS, 3))
        else:
            centre, landmarks = openface_geometry(face.points, pose, self.camera)
            angles = openface_angles(pose.rotation)
        return (
            [frame + self.FIRST_FRAME, face.id, f"{timestamp:.3f}", f"{face.mean_confidence:.2f}", int(face.success)]
            + [f"{v:.1f}" for v in centre]
            + [f"{v:.3f}" for v in angles]
            + [f"{v:.1f}" for v in face.points.T.ravel()]
            + [f"{v:.1f}" for v in landmarks.T.ravel()]
        )


def write_blinks(path: Path, blinks: list[Blink]) -> None:
    """A video's blink events, one row each (written whole)."""
    rows = [
        [b.face_id, b.eye, b.start_frame, b.end_frame, f"{b.start_time:.4f}", f"{b.end_time:.4f}", f"{b.min_ear:.4f}"]
        for b in blinks
    ]
    write_file(path, "".join(_csv_line(row) for row in [BLINK_COLUMNS] + rows).encode())


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


def _packed(values: np.ndarray) -> str:
    """float32 values as base64 text: exact, and far quicker to write and read than JSON numbers."""
    return base64.b64encode(np.ascontiguousarray(values, "<f4").tobytes()).decode()


def _unpacked(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), "<f4").astype(np.float32)


class RawTrackWriter(JsonLinesWriter):
    """A video's faces as measured, at full precision, one JSON line per frame: what offline
    smoothing reads back once the video is done (NAME.raw.jsonl, removed then)."""

    def write_frame(self, frame: int, timestamp: float, faces: list[Face]) -> None:
        record = {
            "frame": frame,
            "timestamp": timestamp,
            "faces": [
                {
                    "id": f.id,
                    "score": f.score,
                    "success": f.success,
                    "points": _packed(f.points),
                    "confidence": _packed(f.confidence),
                }
                for f in faces
            ],
        }
        self.file.write(json.dumps(record, separators=(",", ":")) + "\n")

    @staticmethod
    def read_frames(path: Path) -> list[FrameFaces]:
        """Every frame written, faces without pose (float32 values come back exactly)."""
        frames = []
        with path.open() as handle:
            next(handle)  # header
            for number, line in enumerate(handle, start=2):
                if not line.endswith("\n"):
                    break  # a torn tail: not a frame
                try:
                    record = json.loads(line)
                    faces = [
                        Face(
                            f["id"],
                            points_box(points),
                            f["score"],
                            points,
                            _unpacked(f["confidence"]),
                            None,
                            f["success"],
                        )
                        for f in record["faces"]
                        for points in [_unpacked(f["points"]).reshape(-1, 2)]
                    ]
                    frames.append(FrameFaces(record["frame"], record["timestamp"], faces))
                except (ValueError, KeyError, TypeError, IndexError):
                    raise PipnetError(
                        f"{path}: line {number} is not a frame of this program; "
                        "run without --resume to start the video afresh"
                    ) from None
        return frames


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
            reader = csv.DictReader(handle, skipinitialspace=True)  # OpenFace's: ", " between fields
            if reader.fieldnames and "pose_Tx" in reader.fieldnames:
                return _read_openface(reader)
            for row in reader:
                faces = frames.setdefault(int(row["frame"]), [])
                if row["face_id"] != "-1":
                    xs = [float(row[f"x_{i}"]) for i in range(NUM_POINTS)]
                    ys = [float(row[f"y_{i}"]) for i in range(NUM_POINTS)]
                    faces.append(
                        FaceRecord(
                            int(row["face_id"]),
                            tuple(float(row[k]) for k in ("box_x", "box_y", "box_w", "box_h")),
                            np.stack([xs, ys], axis=1),
                            np.array([float(row[f"c_{i}"]) for i in range(NUM_POINTS)]),
                            row["success"] == "1",
                        )
                    )
        else:
            next(handle)  # header
            for line in handle:
                record = json.loads(line)
                frames[record["frame"]] = [
                    FaceRecord(
                        f["face_id"],
                        tuple(f["box"]),
                        np.array(f["points"]),
                        np.array(f["point_confidence"]),
                        f["success"],
                    )
                    for f in record["faces"]
                ]
    return frames


def _read_openface(reader) -> dict[int, list[FaceRecord]]:
    frames: dict[int, list[FaceRecord]] = {}
    for row in reader:
        faces = frames.setdefault(int(row["frame"]) - OpenFaceWriter.FIRST_FRAME, [])
        points = np.array([[float(row[f"x_{i}"]), float(row[f"y_{i}"])] for i in range(NUM_POINTS)])
        if row["success"] == "1" or points.any():  # a frame without a face: one row of zeros
            faces.append(
                FaceRecord(
                    int(row["face_id"]),
                    points_box(points),
                    points,
                    np.full(NUM_POINTS, float(row["confidence"])),
                    row["success"] == "1",
                )
            )
    return frames


def _read_pts_folder(folder: Path) -> dict[int, list[FaceRecord]]:
    from pipnet_core.io.labels import read_pts

    frames: dict[int, list[FaceRecord]] = {}
    for path, frame in sorted(PtsWriter._written(folder)):
        face_id = int(path.stem.split("_", 1)[1])
        points = read_pts(path)
        frames.setdefault(frame, []).append(
            FaceRecord(face_id, points_box(points), points, np.ones(NUM_POINTS, np.float32))
        )
    return frames

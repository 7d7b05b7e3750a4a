"""Landmark records out: CSV (OpenFace-style columns), OpenFace 2.x's own CSV, JSON Lines, 300-W
.pts files and blink events.

Shared by `pipnet annotate`, the cluster and the GUI's export; the values of each row come from
rows.py, which `pipnet detect`'s JSON uses too. Each frame is written with one
unbuffered write as soon as it is done, so a killed run leaves files whose every complete line
parses. For `--resume`, each writer says which frame it surely completed (``last_complete``) and
continues from a given frame after trimming what came later (a torn tail included).
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np

from pipnet_core.base.errors import PipnetError
from pipnet_core.base.records import Face, FrameFaces, points_box
from pipnet_core.export import rows
from pipnet_core.export.line_files import LineFile, Table, csv_line, read_json, sidecar_path
from pipnet_core.io.files import write_file, write_json
from pipnet_core.io.labels import write_pts
from pipnet_core.model.interface import describe_model
from pipnet_core.offline.measures import Blink
from pipnet_core.pipeline.pose import camera_matrix


def export_header(model, **fields) -> dict:
    """What every export says about how it was made: the model's name, version and sha256 (so a
    table can be traced to the exact weights) plus the caller's fields (source, frame rate,
    settings, ...)."""

    described = describe_model(model)
    return {key: described[key] for key in ("model", "model_version", "model_precision", "model_sha256")} | fields


class CsvWriter(Table):
    """OpenFace-style columns, one row per face per frame; ``header`` goes to the sidecar.
    ``start`` > 0 continues a file: it is trimmed to the frames before ``start`` and appended to."""

    COLUMNS = rows.CSV_COLUMNS
    FIRST_FRAME = 0  # the number a video's first frame has in the file

    def __init__(self, path: Path, header: dict | None = None, start: int = 0):
        if start:
            self.trim(path, start)
        else:
            # Old sidecar gone before the table is emptied, new one after: a kill in between
            # leaves no table whose rows disagree with its header.
            sidecar_path(path).unlink(missing_ok=True)
        self.file = LineFile(path, append=bool(start))
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
        return read_json(sidecar_path(path))

    @staticmethod
    def _line(values: list) -> str:
        return csv_line(values)

    def write_frame(self, frame: int, timestamp: float, faces: list[Face]) -> None:
        lines = [self._row(frame, timestamp, f) for f in faces] or [self._empty_row(frame, timestamp)]
        self.file.write("".join(self._line(row) for row in lines))

    def _empty_row(self, frame: int, timestamp: float) -> list:
        return rows.csv_empty_row(frame, timestamp)

    def _row(self, frame: int, timestamp: float, face: Face) -> list:
        return rows.csv_row(frame, timestamp, face)

    def close(self) -> None:
        self.file.close()


class OpenFaceWriter(CsvWriter):
    """The CSV of OpenFace 2.x ``FeatureExtraction -2Dfp -3Dfp -pose``, as its RecorderCSV writes
    it: the same header, ", " between fields, frames numbered from 1, its number formats. Head
    pose and 3D landmarks are fitted to the points with the camera intrinsics the header names
    (``camera``: fx, fy, cx, cy; OpenFace's own guess unless given). A frame without a face gets one
    row with success 0 and zeros."""

    COLUMNS = rows.OPENFACE_COLUMNS
    FIRST_FRAME = 1

    def __init__(self, path: Path, header: dict, start: int = 0):
        self.camera = camera_matrix(header["width"], header["height"], *header["camera"])
        super().__init__(path, header, start)

    @staticmethod
    def _line(values: list) -> str:
        return ", ".join(map(str, values)) + "\n"

    def _empty_row(self, frame: int, timestamp: float) -> list:
        return rows.openface_empty_row(frame + self.FIRST_FRAME, timestamp)

    def _row(self, frame: int, timestamp: float, face: Face) -> list:
        return rows.openface_row(frame + self.FIRST_FRAME, timestamp, face, self.camera)


def write_blinks(path: Path, blinks: list[Blink]) -> None:
    """A video's blink events, one row each (written whole)."""
    table = [rows.BLINK_COLUMNS] + [rows.blink_row(b) for b in blinks]
    write_file(path, "".join(csv_line(row) for row in table).encode())


class JsonLinesWriter(Table):
    """First line: the file's header (model, frame rate, size, frame count); then one line per
    frame. ``start`` as for ``CsvWriter``."""

    def __init__(self, path: Path, header: dict, start: int = 0):
        if start:
            self.trim(path, start)
        self.file = LineFile(path, append=bool(start))
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
        record = {"frame": frame, "timestamp": round(timestamp, 4), "faces": [rows.face_to_dict(f) for f in faces]}
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


PTS_NAME = re.compile(r"(\d+)_(\d+)\.pts")  # FRAME_FACEID.pts


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
            for path, frame in self.written(folder):
                if frame >= start:
                    path.unlink()
        except OSError as exc:
            raise PipnetError(f"{folder}: cannot write ({exc.strerror})") from None
        if not start:
            write_json(folder / self.HEADER, header)

    @staticmethod
    def written(folder: Path) -> list[tuple[Path, int]]:
        """This writer's files and their frames (anything else in the folder is left alone)."""
        found = (PTS_NAME.fullmatch(path.name) for path in folder.glob("*.pts")) if folder.is_dir() else ()
        return [(folder / match.group(0), int(match.group(1))) for match in found if match]

    @classmethod
    def last_complete(cls, folder: Path) -> int:
        """As ``CsvWriter.last_complete``: the last frame with a file is taken as unfinished."""
        frames = [frame for _, frame in cls.written(folder)]
        return max(frames) - 1 if frames else -1

    @classmethod
    def has_records(cls, folder: Path) -> bool:
        return bool(cls.written(folder))

    @classmethod
    def read_header(cls, folder: Path) -> dict | None:
        return read_json(folder / cls.HEADER)

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

"""Files written a whole frame at a time, so that a killed run leaves files whose every complete
line parses; and what `--resume` reads back from them (the last complete frame, trimming a torn tail)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from pipnet_core.base.errors import PipnetError


class LineFile:
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


def csv_line(values: list) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def sidecar_path(table: Path) -> Path:
    """Where a CSV table's header lives: ``name.csv`` -> ``name.csv.json`` (CSV has no comment syntax
    every reader accepts, so the header is not inside the table)."""
    return table.with_name(table.name + ".json")


class Table:
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

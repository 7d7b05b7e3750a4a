"""Frames in: normalising pixel formats, and the sources frames come from (camera, video, image)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

import cv2
import numpy as np

from .errors import PipnetError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


def as_bgr(frame: np.ndarray) -> np.ndarray:
    """Any 8-bit image (grey, grey+alpha, BGR, BGRA) as contiguous 3-channel BGR."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise PipnetError(f"frames must be 8-bit images, got {frame.dtype}")
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.ndim != 3 or frame.shape[2] not in (1, 2, 3, 4):
        raise PipnetError(f"unsupported frame shape {frame.shape}")
    channels = frame.shape[2]
    if channels in (1, 2):
        return cv2.cvtColor(np.ascontiguousarray(frame[..., 0]), cv2.COLOR_GRAY2BGR)
    if channels == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(frame)


@dataclass(frozen=True)
class Frame:
    index: int
    timestamp: float  # seconds
    image: np.ndarray  # BGR uint8


class FrameSource(Protocol):
    """Anything frames can be read from: `read()` gives the next Frame or None at the end."""

    fps: float
    frame_count: int  # 0 when unknown (cameras)

    def read(self) -> Frame | None: ...
    def close(self) -> None: ...


class VideoSource:
    """A video file or a camera through OpenCV; timestamps from the frame rate for files, the clock for cameras."""

    def __init__(self, target: str | int | Path, loop: bool = False):
        self.name = f"camera {target}" if isinstance(target, int) else str(target)
        if not isinstance(target, int) and not Path(target).is_file():
            raise PipnetError(f"{target}: no such file")
        self.capture = cv2.VideoCapture(target if isinstance(target, int) else str(target))
        if not self.capture.isOpened():
            self.capture.release()
            raise PipnetError(f"{self.name}: cannot be opened" + ("" if isinstance(target, int) else " as a video"))
        self.is_camera = isinstance(target, int)
        self.loop = loop and not self.is_camera
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 1 <= fps <= 240 else 30.0
        self.frame_count = 0 if self.is_camera else max(int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        self.width = int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self._index = 0
        self._loops = 0
        self._clock_start = cv2.getTickCount()

    def read(self) -> Frame | None:
        ok, image = self.capture.read()
        if not ok and self.loop and self._index > 0:
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._loops += 1
            ok, image = self.capture.read()
        if not ok:
            return None
        if self.is_camera:
            timestamp = (cv2.getTickCount() - self._clock_start) / cv2.getTickFrequency()
        else:
            timestamp = self._index / self.fps
        frame = Frame(self._index, timestamp, as_bgr(image))
        self._index += 1
        return frame

    def close(self) -> None:
        self.capture.release()


class ImageSource:
    """A still image as a one-frame source."""

    fps = 1.0
    frame_count = 1

    def __init__(self, path: str | Path):
        from .data import load_image

        self.name = str(path)
        self.image = load_image(Path(path))
        self._done = False

    def read(self) -> Frame | None:
        if self._done:
            return None
        self._done = True
        return Frame(0, 0.0, self.image)

    def close(self) -> None:
        pass


def open_source(target: str | int | Path, loop: bool = False) -> FrameSource:
    """A camera index, a video file or an image file."""
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        return VideoSource(int(target))
    path = Path(target)
    if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"):
        return ImageSource(path)
    return VideoSource(path, loop=loop)


def iterate(source: FrameSource) -> Iterator[Frame]:
    while (frame := source.read()) is not None:
        yield frame


def probe_cameras(max_index: int = 4) -> list[int]:
    """Indices of the cameras that open and deliver a frame."""
    found = []
    previous = cv2.getLogLevel()
    cv2.setLogLevel(0)  # silent: each absent camera index would log a warning and an error
    try:
        for index in range(max_index):
            capture = cv2.VideoCapture(index)
            if capture.isOpened() and capture.read()[0]:
                found.append(index)
            capture.release()
    finally:
        cv2.setLogLevel(previous)
    return found

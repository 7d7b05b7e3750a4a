"""Frames in: normalising pixel formats, and the sources frames come from (camera, video, image)."""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from pipnet_core.base.errors import PipnetError
from pipnet_core.base.lifetime import Closing
from pipnet_core.io.images import DEFAULT_MAX_PIXELS, check_pixels, image_size, read_image
from pipnet_core.io.media import media_kind

# FFmpeg prints what it finds wrong in a damaged video on the process's stderr, dozens of lines a
# frame and not which file they are about; OpenCV's backend reads this level when it first opens
# a video. A damaged file shows as the frames it lacks (``VideoSource``'s frame count, the
# warnings of `pipnet annotate`). A level set by the user, or OpenCV's debug switch, is kept.
if "OPENCV_FFMPEG_DEBUG" not in os.environ:
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


@contextmanager
def opencv_silent() -> Iterator[None]:
    """OpenCV's own log off for the duration: what it would print, the caller says in one line."""
    previous = cv2.getLogLevel()
    cv2.setLogLevel(0)
    try:
        yield
    finally:
        cv2.setLogLevel(previous)


def as_bgr(frame: np.ndarray, rgb: bool = False) -> np.ndarray:
    """Any 8-bit image (grey, grey+alpha, BGR, BGRA; RGB and RGBA when ``rgb``) as contiguous
    3-channel BGR."""
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
        return cv2.cvtColor(frame, cv2.COLOR_RGBA2BGR if rgb else cv2.COLOR_BGRA2BGR)
    return cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) if rgb else np.ascontiguousarray(frame)


@dataclass(frozen=True)
class Frame:
    index: int
    timestamp: float  # seconds
    image: np.ndarray  # BGR uint8


class FrameSource(Protocol):
    """Anything frames can be read from: `read()` gives the next Frame or None at the end.
    ``paced``: the live loop plays it at ``fps`` (a file), rather than as fast as it delivers (a
    camera, which paces itself); a source that does not say is paced unless it is a camera."""

    name: str
    fps: float
    frame_count: int  # 0 when unknown (cameras)
    is_camera: bool

    def read(self) -> Frame | None: ...
    def close(self) -> None: ...


class VideoSource(Closing):
    """A video file through OpenCV. Timestamps are the container's own presentation times (so a
    variable-frame-rate phone video gets its real times) counted from the first frame: OpenCV
    counts from the stream's start, and what remains (a first frame presented at -0.017 s) is
    subtracted and kept as ``start_offset``. A file that loops keeps counting up. Frames of a
    video whose frame size changes mid-stream come scaled to its first size (OpenCV's doing)."""

    is_camera = False

    def __init__(self, target: str | Path, loop: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS):
        self.name = str(target)
        if not Path(target).is_file():
            raise PipnetError(f"{target}: no such file")
        with open(target, "rb") as handle:  # a GIF's canvas is known before FFmpeg allocates it
            try:
                canvas = image_size(handle)
            except ValueError:
                canvas = None
        if canvas is not None:
            check_pixels(self.name, *canvas, max_pixels)
        # FFmpeg alone: OpenCV's other backends would take a name like frame_%03d.png for a
        # numbered image sequence, and its own AVI reader prints its complaints on stderr.
        with opencv_silent():  # a file FFmpeg cannot open: OpenCV's warning would say only that
            self.capture = cv2.VideoCapture(str(target), cv2.CAP_FFMPEG)
        if not self.capture.isOpened():
            self.capture.release()
            raise PipnetError(f"{self.name}: cannot be opened as a video")
        self.loop = loop
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 1 <= fps <= 240 else 30.0  # the nominal rate: pacing playback, output videos
        self.frame_count = max(int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)  # the header's claim
        self.width = int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        try:
            check_pixels(self.name, self.width, self.height, max_pixels)
        except PipnetError:
            self.capture.release()
            raise
        self._index = 0
        self._in_loop = 0  # frames read since the start of the file (of this loop)
        self._loop_offset = 0.0  # seconds played in earlier loops
        self._last_time = -1.0
        self.start_offset: float | None = None  # the first frame's presentation time, once read

    def _frame_time(self) -> float:
        """The decoded frame's presentation time in seconds from the first frame's; frame number /
        fps where the backend gives no times (every frame at the first one's)."""
        position = self.capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        if self.start_offset is None:
            self.start_offset = position
        if self._in_loop > 0 and position <= self.start_offset:
            return self._in_loop / self.fps
        return position - self.start_offset

    def read(self) -> Frame | None:
        ok, image = self.capture.read()
        if not ok and self.loop and self._index > 0:
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._loop_offset = self._last_time + 1.0 / self.fps
            self._in_loop = 0
            ok, image = self.capture.read()
        if not ok:
            return None
        self._last_time = self._loop_offset + self._frame_time()
        frame = Frame(self._index, self._last_time, as_bgr(image))
        self._index += 1
        self._in_loop += 1
        return frame

    def close(self) -> None:
        self.capture.release()


def _open_av(path: str | Path):
    """A container and its first video stream through PyAV (the ``cluster`` extra)."""
    try:
        import av
    except ImportError:
        raise PipnetError("reading a video from a given frame needs PyAV: pip install 'pipnet-live[cluster]'") from None
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise PipnetError(f"{path}: cannot be opened as a video ({exc})") from None
    if not container.streams.video:
        container.close()
        raise PipnetError(f"{path}: has no video stream")
    return container, container.streams.video[0]


@dataclass(frozen=True)
class VideoLayout:
    """A video as its packets tell it, without decoding a frame: each frame's presentation time
    (in ``time_base`` units, in presentation order) and the stream's properties."""

    times: list[int]
    time_base: float
    fps: float
    width: int
    height: int

    @staticmethod
    def read(path: str | Path) -> VideoLayout:
        container, stream = _open_av(path)
        try:
            times = sorted(packet.pts for packet in container.demux(stream) if packet.pts is not None and packet.size)
            rate = float(stream.average_rate or stream.guessed_rate or 0)
            return VideoLayout(
                times,
                float(stream.time_base),
                rate if 1 <= rate <= 240 else 30.0,
                stream.codec_context.width,
                stream.codec_context.height,
            )
        except _av_errors() as exc:
            raise PipnetError(f"{path}: cannot be read ({exc})") from None
        finally:
            container.close()

    def seconds(self, index: int) -> float:
        """Frame ``index``'s time from the first frame's (what the tables call timestamp)."""
        return (self.times[index] - self.times[0]) * self.time_base

    def first_at(self, seconds: float) -> int:
        """The first frame at or after ``seconds`` from the first frame (len(times) if none)."""
        return bisect_left(self.times, self.times[0] + seconds / self.time_base - 1e-9)


def _av_errors() -> tuple[type[Exception], ...]:
    import av

    return (av.FFmpegError,)


class VideoRange:
    """Frames ``first`` to ``end`` - 1 of a video (numbered as in ``layout``), decoded from the
    keyframe before ``first`` and checked by presentation time: each frame's index is the position
    of its time in the layout, so a seek that lands late, or a frame the layout lacks, is an error
    rather than a shifted number. Colours converted as OpenCV's reader converts them (BT.601),
    so these frames are the pixels a ``VideoSource`` of the same file gives."""

    def __init__(self, path: str | Path, layout: VideoLayout, first: int, end: int):
        self.path, self.layout, self.first, self.end = path, layout, first, end
        self._container, self._stream = _open_av(path)

    def __iter__(self) -> Iterator[Frame]:
        if self.first >= self.end:
            return
        layout, wanted = self.layout, self.first
        target = layout.times[wanted]
        try:
            if wanted:
                self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
            for decoded in self._container.decode(self._stream):
                if decoded.pts is None:
                    raise PipnetError(f"{self.path}: a frame without a presentation time; use --chunk-seconds 0")
                if wanted == self.first and decoded.pts < target:
                    continue  # between the keyframe and the first frame wanted
                if decoded.pts != layout.times[wanted]:
                    raise PipnetError(
                        f"{self.path}: frame {wanted} should be presented at {layout.seconds(wanted):.4f} s, "
                        f"the decoder gave {(decoded.pts - layout.times[0]) * layout.time_base:.4f} s "
                        "(a seek that missed, or an irregular file: use --chunk-seconds 0)"
                    )
                # A frame size that changes mid-stream is scaled to the first, as OpenCV's reader does.
                size = (
                    {}
                    if (decoded.width, decoded.height) == (layout.width, layout.height)
                    else {"width": layout.width, "height": layout.height}
                )
                image = decoded.reformat(format="bgr24", src_colorspace="ITU601", **size).to_ndarray()
                yield Frame(wanted, layout.seconds(wanted), image)
                wanted += 1
                if wanted == self.end:
                    return
        except _av_errors() as exc:
            raise PipnetError(f"{self.path}: cannot be decoded at frame {wanted} ({exc})") from None
        raise PipnetError(f"{self.path}: ended at frame {wanted}, where its packets announce {self.end}")

    def close(self) -> None:
        self._container.close()


MJPG_ABOVE = 640 * 480  # pixels per frame above which a camera is asked for Motion JPEG


@dataclass(frozen=True)
class CameraFormat:
    """What to ask a camera for; 0 leaves the driver's default."""

    width: int = 0
    height: int = 0
    fps: float = 0.0


@dataclass(frozen=True)
class CameraInfo:
    index: int  # OpenCV's device index
    name: str


class CameraSource(Closing):
    """A camera through OpenCV, timestamped by the clock. ``reopen()`` lets a reader recover from a
    camera that stopped delivering (unplugged and plugged back, taken by another app)."""

    is_camera = True
    frame_count = 0

    def __init__(self, index: int, camera_format: CameraFormat = CameraFormat(), name: str | None = None):
        self.index, self.format = index, camera_format
        self.name = name or f"camera {index}"
        self.capture: cv2.VideoCapture | None = None
        self._index = 0
        self._clock_start = time.monotonic()
        if not self.reopen():
            raise PipnetError(f"{self.name}: cannot be opened (in use by another program, or unplugged?)")

    def reopen(self) -> bool:
        """(Re)open the device with the requested format; True when it delivers a frame."""
        self.close()
        capture = cv2.VideoCapture(self.index)
        f = self.format
        if f.width * f.height > MJPG_ABOVE:
            # Uncompressed frames this large exceed what USB 2 carries at full rate: ask for Motion
            # JPEG, before the size (drivers choose the sizes a format offers).
            capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        for prop, value in (
            (cv2.CAP_PROP_FRAME_WIDTH, f.width),
            (cv2.CAP_PROP_FRAME_HEIGHT, f.height),
            (cv2.CAP_PROP_FPS, f.fps),
        ):
            if value:
                capture.set(prop, value)
        # The smallest driver buffer the backend allows: the frame read is the one just captured,
        # not one queued while the last was processed (backends without the setting ignore it).
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        if not capture.isOpened() or not capture.grab():
            capture.release()
            return False
        self.capture = capture
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 1 <= fps <= 240 else 30.0
        self.width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        return True

    def read(self) -> Frame | None:
        if self.capture is None:
            return None
        ok, image = self.capture.read()
        if not ok:
            return None
        frame = Frame(self._index, time.monotonic() - self._clock_start, as_bgr(image))
        self._index += 1
        return frame

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()
            self.capture = None


class ImageSource(Closing):
    """A still image as a one-frame source; ``problem``: what went wrong decoding it (one line:
    a truncated or damaged file still gives the pixels it has), None when nothing did."""

    fps = 1.0
    is_camera = False
    frame_count = 1
    start_offset = 0.0

    def __init__(self, path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS):
        self.name = str(path)
        still = read_image(path, max_pixels)
        self.image, self.problem, self.damage = still.image, still.problem, still.damage
        self._done = False

    def read(self) -> Frame | None:
        if self._done:
            return None
        self._done = True
        return Frame(0, 0.0, self.image)

    def close(self) -> None:
        pass


class IteratorSource(Closing):
    """Frames from any iterable of images (BGR arrays, or ``Frame``s): another capture library's,
    a network stream's, frames already in memory. Timestamps are the frames' own or counted at
    ``fps``; ``paced``: play them at ``fps`` (frames in memory), else as they come (a live feed)."""

    is_camera = False
    frame_count = 0
    start_offset = 0.0

    def __init__(self, frames, fps: float = 30.0, paced: bool = False, name: str = "frames"):
        self.name, self.fps, self.paced = name, fps, paced
        self._frames = iter(frames)
        self._index = 0

    def read(self) -> Frame | None:
        item = next(self._frames, None)
        if item is None:
            return None
        frame = item if isinstance(item, Frame) else Frame(self._index, self._index / self.fps, as_bgr(item))
        self._index += 1
        return frame

    def close(self) -> None:
        close = getattr(self._frames, "close", None)  # a generator: its own clean-up runs now
        if close is not None:
            close()


def open_source(
    target: str | int | Path,
    loop: bool = False,
    camera_format: CameraFormat = CameraFormat(),
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> FrameSource:
    """A camera index (``name``: its device name, for messages), a video file or an image file
    (told apart by content: see ``media``); files with more than ``max_pixels`` a frame are refused."""
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        return CameraSource(int(target), camera_format, name)
    path = Path(target)
    if media_kind(path) == "image":
        return ImageSource(path, max_pixels)
    return VideoSource(path, loop=loop, max_pixels=max_pixels)


def iterate(source: FrameSource) -> Iterator[Frame]:
    while (frame := source.read()) is not None:
        yield frame


def list_cameras(max_index: int = 4) -> list[CameraInfo]:
    """The cameras of this machine with their names. On Linux from sysfs, without opening any
    device (fast, and a camera busy in another program is still listed); elsewhere by opening
    indices 0..max_index-1 (slow: call it off the UI thread)."""
    sysfs = Path("/sys/class/video4linux")
    if sysfs.is_dir():
        cameras = []
        for node in sorted(sysfs.glob("video*"), key=lambda n: int(n.name[5:] or 0)):
            # A webcam exposes a capture node (index 0) and metadata nodes beside it.
            if (node / "index").is_file() and (node / "index").read_text().strip() != "0":
                continue
            name = (node / "name").read_text().strip() if (node / "name").is_file() else node.name
            cameras.append(CameraInfo(int(node.name[5:]), name))
        return cameras
    found = []
    with opencv_silent():  # each absent camera index would log a warning and an error
        for index in range(max_index):
            capture = cv2.VideoCapture(index)
            if capture.isOpened() and capture.read()[0]:
                found.append(CameraInfo(index, f"Camera {index}"))
            capture.release()
    return found

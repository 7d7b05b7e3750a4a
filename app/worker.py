"""Capture and processing off the UI thread.

The capture thread reads frames at the source's own pace (a file plays in real time) and keeps
only the newest one; the processing thread always takes the newest, so when processing is slower
than the source, old frames are dropped and latency stays one frame deep.
"""
from __future__ import annotations

import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QThread, Signal

from pipnet_core import Landmarker, OverlayOptions, PipnetError, SmoothingParams, draw_faces
from pipnet_core.frames import Frame, FrameSource, open_source
from pipnet_core.writers import CsvWriter, JsonLinesWriter


@dataclass(frozen=True)
class Settings:
    """Everything the user can change while the app runs."""

    overlay: OverlayOptions = OverlayOptions()
    smoothing: bool = True
    smoothing_strength: float = 0.5
    detector: str = "mediapipe"  # see pipnet_core.detect.DETECTORS
    detector_threshold: float = 0.5
    max_faces: int = 1
    model_path: str = ""  # empty: the shipped model


@dataclass(frozen=True)
class Processed:
    """The newest processed frame, published as one object so readers never mix two frames."""

    raw: np.ndarray
    annotated: np.ndarray
    faces: list


class RateMeter:
    """Events per second over the last two seconds."""

    def __init__(self):
        self._times: deque[float] = deque()

    def tick(self) -> None:
        now = time.monotonic()
        self._times.append(now)
        while self._times and now - self._times[0] > 2.0:
            self._times.popleft()

    @property
    def rate(self) -> float:
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / (self._times[-1] - self._times[0])


class LatestFrame:
    """A one-slot mailbox: put() overwrites, take() waits for something newer than last time."""

    def __init__(self):
        self._frame: Frame | None = None
        self._serial = 0
        self._condition = threading.Condition()

    def put(self, frame: Frame) -> None:
        with self._condition:
            self._frame, self._serial = frame, self._serial + 1
            self._condition.notify_all()

    def take(self, after: int, timeout: float = 0.1) -> tuple[Frame | None, int]:
        with self._condition:
            self._condition.wait_for(lambda: self._serial != after, timeout)
            return (self._frame, self._serial) if self._serial != after else (None, after)


class CaptureThread(threading.Thread):
    def __init__(self, source: FrameSource, mailbox: LatestFrame, on_error, on_end, is_camera: bool):
        super().__init__(daemon=True, name="capture")
        self.source, self.mailbox, self.on_error, self.on_end, self.is_camera = source, mailbox, on_error, on_end, is_camera
        self.meter = RateMeter()
        self.paused = threading.Event()
        self.stopped = threading.Event()

    def run(self) -> None:
        interval = 1.0 / self.source.fps
        next_due = time.monotonic()
        try:
            while not self.stopped.is_set():
                if self.paused.is_set():
                    time.sleep(0.02)
                    next_due = time.monotonic()
                    continue
                frame = self.source.read()
                if frame is None:
                    if self.is_camera:
                        self.on_error(f"{getattr(self.source, 'name', 'camera')} stopped delivering frames (unplugged?)")
                    else:
                        self.on_end()
                    return
                self.mailbox.put(frame)
                self.meter.tick()
                if not self.is_camera:  # files play at their own frame rate; cameras pace themselves
                    next_due += interval
                    time.sleep(max(0.0, next_due - time.monotonic()))
                    if self.source.frame_count == 1:  # a still image: shown once, then kept
                        return
        except Exception as exc:  # a decoder failing mid-stream must not kill the app
            self.on_error(f"{getattr(self.source, 'name', 'source')}: {exc}")
        finally:
            self.source.close()


class ProcessingWorker(QThread):
    """Runs the Landmarker on the newest frame and emits the annotated image."""

    frame_ready = Signal(object, object)  # annotated BGR ndarray, stats dict
    error = Signal(str)
    source_ended = Signal()

    def __init__(self, settings: Settings, parent=None):
        super().__init__(parent)
        self._settings = settings
        self._pending: Settings | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._mailbox = LatestFrame()
        self._capture: CaptureThread | None = None
        self._landmarker: Landmarker | None = None
        self._recorder: cv2.VideoWriter | None = None
        self._record_path: Path | None = None
        self._exporter = None
        self.meter = RateMeter()
        self.last: Processed | None = None
        self.frames_processed = 0

    # -- called from the UI thread ------------------------------------------------------------------
    def update_settings(self, settings: Settings) -> None:
        with self._lock:
            self._pending = settings

    def open(self, target: str | int, loop: bool = True) -> None:
        """Switch to a camera index, a video or an image; raises PipnetError if it cannot open."""
        source = open_source(target, loop=loop)
        self._stop_capture()
        self._mailbox = LatestFrame()
        if self._landmarker is not None:
            self._landmarker.reset()
        is_camera = isinstance(target, int)
        self._capture = CaptureThread(source, self._mailbox, self.error.emit, self.source_ended.emit, is_camera)
        self._capture.start()

    def set_paused(self, paused: bool) -> None:
        if self._capture is not None:
            (self._capture.paused.set if paused else self._capture.paused.clear)()

    def start_recording(self, path: Path, fps: float = 30.0) -> None:
        with self._lock:
            self._record_path = path
            self._recorder = None  # opened on the next frame, when its size is known

    def stop_recording(self) -> None:
        with self._lock:
            if self._recorder is not None:
                self._recorder.release()
            self._recorder, self._record_path = None, None

    def start_export(self, path: Path) -> None:
        writer = (JsonLinesWriter(path, {"source": "pipnet-live session"}) if path.suffix == ".jsonl" else CsvWriter(path))
        with self._lock:
            self._exporter = writer

    def stop_export(self) -> None:
        with self._lock:
            if self._exporter is not None:
                self._exporter.close()
            self._exporter = None

    def stop(self) -> None:
        self._stop.set()
        self._stop_capture()
        self.wait(5000)
        self.stop_recording()
        self.stop_export()

    @property
    def capture_rate(self) -> float:
        return self._capture.meter.rate if self._capture is not None else 0.0

    @property
    def capture_alive(self) -> bool:
        return self._capture is not None and self._capture.is_alive()

    def _stop_capture(self) -> None:
        if self._capture is not None:
            self._capture.stopped.set()
            self._capture.join(2.0)
            self._capture = None

    # -- the processing thread ----------------------------------------------------------------------
    def _apply_settings(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None and self._landmarker is not None:
            return
        new = pending or self._settings
        old = self._settings
        rebuild = (new.model_path, new.detector, new.detector_threshold) != (old.model_path, old.detector, old.detector_threshold)
        if self._landmarker is None or rebuild:
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", RuntimeWarning)
                    self._landmarker = Landmarker(new.model_path or None, detector=new.detector,
                                                  detector_threshold=new.detector_threshold, max_faces=new.max_faces)
                for warning in caught:  # e.g. MediaPipe unavailable, Haar cascade in use
                    self.error.emit(str(warning.message))
            except PipnetError as exc:
                self.error.emit(str(exc))
                new = replace(new, model_path=old.model_path, detector=old.detector, detector_threshold=old.detector_threshold)
                if self._landmarker is None:
                    self._settings = new
                    return
        self._landmarker.set_max_faces(new.max_faces)
        self._landmarker.set_smoothing(SmoothingParams.from_strength(new.smoothing_strength) if new.smoothing else None)
        self._settings = new

    def run(self) -> None:
        serial = 0
        while not self._stop.is_set():
            self._apply_settings()
            frame, serial = self._mailbox.take(serial)
            if frame is None or self._landmarker is None:
                continue
            started = time.perf_counter()
            faces = self._landmarker.process(frame.image, frame.timestamp)
            annotated = draw_faces(frame.image.copy(), faces, self._settings.overlay)
            total_ms = 1000 * (time.perf_counter() - started)
            self._write_outputs(frame, faces, annotated)
            self.meter.tick()
            self.frames_processed += 1
            self.last = Processed(frame.image, annotated, faces)
            stats = {"capture_fps": self.capture_rate, "process_fps": self.meter.rate, "faces": len(faces),
                     "detector": self._landmarker.detector.name,
                     "stages": dict(self._landmarker.timings), "total_ms": total_ms, "frame": frame.index}
            self.frame_ready.emit(annotated, stats)

    def _write_outputs(self, frame: Frame, faces, annotated: np.ndarray) -> None:
        with self._lock:
            if self._record_path is not None and self._recorder is None:
                h, w = annotated.shape[:2]
                fourcc = cv2.VideoWriter_fourcc(*("MJPG" if self._record_path.suffix.lower() == ".avi" else "mp4v"))
                self._recorder = cv2.VideoWriter(str(self._record_path), fourcc, 30.0, (w, h))
                if not self._recorder.isOpened():
                    self.error.emit(f"{self._record_path}: cannot record a video there")
                    self._recorder, self._record_path = None, None
            if self._recorder is not None:
                self._recorder.write(annotated)
            if self._exporter is not None:
                self._exporter.write_frame(frame.index, frame.timestamp, faces)

"""Capture and processing off the UI thread.

The UI talks to the worker only through messages (``ProcessingWorker.post``) and hears back only
through Qt signals, so no object is used by two threads at once. The capture thread reads frames
at the source's own pace (a file plays in real time) and keeps only the newest one; the processing
thread always takes the newest, so when processing is slower than the source, old frames are
dropped and latency stays one frame deep. Opening a camera, loading a model and making the sample
clip all happen on the worker's thread: the window never waits for them.
"""
from __future__ import annotations

import queue
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QThread, Signal

from pipnet_core import Landmarker, OverlayOptions, PipnetError, SmoothingParams, draw_faces
from pipnet_core.frames import CameraFormat, Frame, FrameSource, ImageSource, open_source
from pipnet_core.onnx_runner import describe_model
from pipnet_core.sample_clip import cached_clip
from pipnet_core.writers import CsvWriter, JsonLinesWriter, export_header, video_writer

RECONNECT_SECONDS = 1.0  # between attempts to reopen a camera that stopped delivering
MAX_FAILURES = 5  # consecutive frames the pipeline may fail on before processing stops


@dataclass(frozen=True)
class Settings:
    """Everything the user can change while the app runs."""

    overlay: OverlayOptions = OverlayOptions()
    smoothing: bool = True
    smoothing_strength: float = 0.5
    detector: str = "blazeface"  # see pipnet_core.detect.DETECTORS
    detector_threshold: float = 0.5
    max_faces: int = 1  # video: one face unless asked (see README, "How many faces")
    model_path: str = ""  # empty: the shipped model


# -- messages from the UI -----------------------------------------------------------------------------
SAMPLE_CLIP = "sample clip"  # an OpenSource target: the synthetic clip, made on first use


@dataclass(frozen=True)
class OpenSource:
    target: str | int | FrameSource  # a path, a camera index, SAMPLE_CLIP, or a ready source (tests)
    name: str = ""  # a camera's name, for the title and messages
    loop: bool = True
    camera_format: CameraFormat = CameraFormat()
    fallback_to_sample: bool = False  # if it cannot be opened, play the sample clip instead


@dataclass(frozen=True)
class ApplySettings:
    settings: Settings


@dataclass(frozen=True)
class SetPaused:
    paused: bool


@dataclass(frozen=True)
class Record:
    path: Path | None  # None stops recording


@dataclass(frozen=True)
class Export:
    path: Path | None  # None stops exporting


@dataclass(frozen=True)
class Processed:
    """The newest processed frame, published as one object so readers never mix two frames."""

    raw: np.ndarray
    annotated: np.ndarray
    faces: list
    timestamp: float  # the source's time of the frame, seconds


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
        times = tuple(self._times)  # a snapshot: another thread may be ticking
        if len(times) < 2 or time.monotonic() - times[-1] > 1.0 or times[-1] <= times[0]:
            return 0.0  # nothing for a second: not a stale rate
        return (len(times) - 1) / (times[-1] - times[0])


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

    def take(self, after: int, timeout: float = 0.05) -> tuple[Frame | None, int]:
        with self._condition:
            self._condition.wait_for(lambda: self._serial != after, timeout)
            return (self._frame, self._serial) if self._serial != after else (None, after)


class CaptureThread(threading.Thread):
    """Reads one source into the mailbox. A camera that fails a read is "lost": the thread keeps
    reopening it until it delivers again ("live") or the thread is stopped. ``report(state, text)``
    receives "lost", "live", "ended" and "error"."""

    def __init__(self, source: FrameSource, mailbox: LatestFrame, report):
        super().__init__(daemon=True, name="capture")
        self.source, self.mailbox, self.report = source, mailbox, report
        self.meter = RateMeter()
        self.paused = threading.Event()
        self.stopped = threading.Event()

    def run(self) -> None:
        next_due = time.monotonic()
        delivered = 0
        try:
            while not self.stopped.is_set():
                if self.paused.is_set():
                    self.stopped.wait(0.02)
                    next_due = time.monotonic()
                    continue
                frame = self.source.read()
                if frame is None:
                    if not self.source.is_camera:  # a file that gave nothing is damaged, not over
                        self.report(*(("ended", f"{self.source.name}: end of the source") if delivered else
                                      ("error", f"{self.source.name}: no frame could be decoded")))
                        return
                    self._reconnect()
                    continue
                self.mailbox.put(frame)
                delivered += 1
                self.meter.tick()
                if not self.source.is_camera:  # files play at their own frame rate; cameras pace themselves
                    next_due += 1.0 / self.source.fps
                    self.stopped.wait(max(0.0, next_due - time.monotonic()))
                    if self.source.frame_count == 1:  # a still image: shown once, then kept
                        return
        except Exception as exc:  # a decoder failing mid-stream must not kill the app
            self.report("error", f"{self.source.name}: {exc}")
        finally:
            self.source.close()

    def _reconnect(self) -> None:
        self.report("lost", f"{self.source.name}: camera lost, reconnecting...")
        while not self.stopped.wait(RECONNECT_SECONDS):
            if self.source.reopen():
                self.report("live", f"{self.source.name}: camera back")
                return


class ProcessingWorker(QThread):
    """Runs the Landmarker on the newest frame and emits the annotated image."""

    frame_ready = Signal(object, object)  # annotated BGR ndarray, stats dict
    error = Signal(str)
    source_opened = Signal(str)  # the source's name
    source_state = Signal(str, str)  # "lost" / "live" / "ended", message
    settings_applied = Signal(object)  # the Settings in force (a model that failed is not among them)
    model_loaded = Signal(object)  # the model's description (pipnet_core.onnx_runner.describe_model)
    output_stopped = Signal(str, str)  # "record" / "export", why: the UI unchecks its button

    def __init__(self, settings: Settings, parent=None):
        super().__init__(parent)
        self._requested = settings
        self._settings: Settings | None = None  # in force
        self._inbox: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._mailbox = LatestFrame()
        self._capture: CaptureThread | None = None
        self._landmarker: Landmarker | None = None
        self._recorder: cv2.VideoWriter | None = None
        self._record_path: Path | None = None
        self._recorded = 0  # frames written to the recording, repeats included
        self._record_start = 0.0  # the source time the recording's first frame stands for
        self._record_fps = 30.0  # the recording's own frame rate, fixed when it opens
        self._exporter = None
        self._failures = 0
        self._stats: dict = {}
        self.meter = RateMeter()
        self.last: Processed | None = None  # read by the UI (screenshots): replaced whole, never mutated
        self.frames_processed = 0

    # -- the UI thread's side: messages in, nothing else ------------------------------------------------
    def post(self, message) -> None:
        self._inbox.put(message)

    def stop(self) -> None:
        self._stop.set()
        self.wait(5000)

    @property
    def capture_rate(self) -> float:
        capture = self._capture
        return capture.meter.rate if capture is not None else 0.0

    @property
    def capture_alive(self) -> bool:
        capture = self._capture
        return capture is not None and capture.is_alive()

    # -- the worker thread ------------------------------------------------------------------------------
    def run(self) -> None:
        serial = 0
        try:
            self._guarded(self._apply_settings, self._requested)
            while not self._stop.is_set():
                self._handle_messages()
                frame, serial = self._mailbox.take(serial)
                if frame is not None and self._landmarker is not None:
                    self._guarded(self._process, frame)
        finally:
            self._stop_capture()
            self._close_outputs()
            if self._landmarker is not None:
                self._landmarker.close()
                self._landmarker = None

    def _guarded(self, step, *args) -> None:
        """Any failure becomes a banner message; after MAX_FAILURES in a row processing stops cleanly."""
        try:
            step(*args)
            self._failures = 0
        except PipnetError as exc:
            self.error.emit(str(exc))
        except Exception as exc:  # a bug must not freeze the app: report it and carry on
            self._failures += 1
            traceback.print_exc()
            where = traceback.extract_tb(exc.__traceback__)[-1]
            self.error.emit(f"Processing failed ({type(exc).__name__}: {exc} at {Path(where.filename).name}:{where.lineno})")
            if self._landmarker is not None:
                self._landmarker.reset()
            if self._failures >= MAX_FAILURES:
                self._stop_capture()
                self.error.emit(f"Processing stopped after {MAX_FAILURES} failures in a row: open a source to try again")
                self._failures = 0

    def _handle_messages(self) -> None:
        handlers = {OpenSource: self._open, ApplySettings: lambda m: self._apply_settings(m.settings),
                    SetPaused: self._set_paused, Record: self._record, Export: self._export}
        while True:
            try:
                message = self._inbox.get_nowait()
            except queue.Empty:
                return
            self._guarded(handlers[type(message)], message)

    def _open(self, message: OpenSource) -> None:
        target = message.target
        had_source = self._capture is not None
        if isinstance(target, int):
            self._stop_capture()  # a camera (maybe this same one, in another format) must be released first
        try:
            if target == SAMPLE_CLIP:
                source = open_source(cached_clip(), loop=message.loop)
            elif isinstance(target, (str, int)):
                source = open_source(target, loop=message.loop, camera_format=message.camera_format,
                                     name=message.name or None)
            else:
                source = target
        except PipnetError as exc:
            if not message.fallback_to_sample:
                raise
            self.error.emit(f"{exc}: playing a sample clip instead (open a camera, video or image from the toolbar)")
            source = open_source(cached_clip(), loop=message.loop)
        self._stop_capture()
        if had_source:  # a recording or an export belongs to one source: its size, frame numbers and times
            self._stop_outputs(f"stopped: {source.name} replaced the source")
        self._mailbox = LatestFrame()
        if self._landmarker is not None:
            self._landmarker.reset()
        self._capture = CaptureThread(source, self._mailbox, self._on_source_state)
        self._capture.start()
        self.source_opened.emit(source.name)
        if isinstance(source, ImageSource) and source.problem:  # a truncated or damaged still: shown, said
            self.error.emit(source.problem)

    def _on_source_state(self, state: str, message: str) -> None:
        if state == "error":
            self.error.emit(message)
        else:
            self.source_state.emit(state, message)

    def _set_paused(self, message: SetPaused) -> None:
        if self._capture is not None:
            (self._capture.paused.set if message.paused else self._capture.paused.clear)()

    def _apply_settings(self, new: Settings) -> None:
        old = self._settings
        if old is None or new.model_path != old.model_path or self._landmarker is None:
            new = self._load_landmarker(new, old)
            if new is None:
                return
        elif (new.detector, new.detector_threshold) != (old.detector, old.detector_threshold):
            # The model session and the tracked faces stay; the old detector is closed.
            try:
                self._landmarker.set_detector(new.detector, new.detector_threshold)
            except PipnetError as exc:  # the old detector stays in force, and the other settings apply
                self.error.emit(str(exc))
                new = replace(new, detector=old.detector, detector_threshold=old.detector_threshold)
        self._landmarker.set_max_faces(new.max_faces)
        self._landmarker.set_smoothing(SmoothingParams.from_strength(new.smoothing_strength) if new.smoothing else None)
        self._settings = new
        self.settings_applied.emit(new)
        if old is not None and new.overlay != old.overlay:
            self._redraw()

    def _load_landmarker(self, new: Settings, old: Settings | None) -> Settings | None:
        """A landmarker for the new model and detector; if that fails, the old one stays and the
        settings in force keep the old model (so a broken model is never saved)."""
        try:
            landmarker = Landmarker(new.model_path or None, detector=new.detector,
                                    detector_threshold=new.detector_threshold, max_faces=new.max_faces)
        except PipnetError as exc:
            self.error.emit(str(exc))
            if old is None:  # nothing to fall back on but the shipped model
                if new.model_path:
                    self._apply_settings(replace(new, model_path=""))
                return None
            self.settings_applied.emit(old)
            return None
        if self._landmarker is not None:
            self._landmarker.close()
        self._landmarker = landmarker
        self.model_loaded.emit(describe_model(landmarker.model))
        return new

    def _redraw(self) -> None:
        """New overlay on the last frame, for a paused or still source that sends no new frames."""
        last = self.last
        if last is not None:
            annotated = draw_faces(last.raw.copy(), last.faces, self._settings.overlay)
            self.last = Processed(last.raw, annotated, last.faces, last.timestamp)
            self.frame_ready.emit(annotated, {**self._stats, "redrawn": True})

    def _process(self, frame: Frame) -> None:
        started = time.perf_counter()
        faces = self._landmarker.process(frame.image, frame.timestamp)
        annotated = draw_faces(frame.image.copy(), faces, self._settings.overlay)
        total_ms = 1000 * (time.perf_counter() - started)
        self._write_outputs(frame, faces, annotated)
        self.meter.tick()
        self.frames_processed += 1
        self.last = Processed(frame.image, annotated, faces, frame.timestamp)
        self._stats = {"capture_fps": self.capture_rate, "process_fps": self.meter.rate, "faces": len(faces),
                       "detector": self._landmarker.detector.name, "stages": dict(self._landmarker.timings),
                       "total_ms": total_ms, "frame": frame.index}
        self.frame_ready.emit(annotated, self._stats)

    # -- outputs --------------------------------------------------------------------------------------------
    def _record(self, message: Record) -> None:
        if self._recorder is not None:
            self._recorder.release()
        self._recorder, self._record_path = None, message.path  # opened on the next frame, when its size is known

    def _export(self, message: Export) -> None:
        if self._exporter is not None:
            self._exporter.close()
            self._exporter = None
        if message.path is not None:
            settings = self._settings
            header = export_header(self._landmarker.model, source="pipnet-live session", detector=settings.detector,
                                   **self._landmarker.calibration.fields(), smoothing=settings.smoothing,
                                   max_faces=settings.max_faces)
            path = message.path
            try:
                self._exporter = JsonLinesWriter(path, header) if path.suffix == ".jsonl" else CsvWriter(path, header)
            except PipnetError as exc:
                self.output_stopped.emit("export", str(exc))

    def _stop_outputs(self, why: str) -> None:
        """Close the recording and the export, if open, and say so."""
        if self._record_path is not None:
            self._record(Record(None))
            self.output_stopped.emit("record", f"Recording {why}")
        if self._exporter is not None:
            self._export(Export(None))
            self.output_stopped.emit("export", f"Export {why}")

    def _write_outputs(self, frame: Frame, faces, annotated: np.ndarray) -> None:
        if self._record_path is not None:
            try:
                self._write_recording(frame.timestamp, annotated)
            except PipnetError as exc:
                self._record(Record(None))
                self.output_stopped.emit("record", str(exc))
        if self._exporter is not None:
            try:
                self._exporter.write_frame(frame.index, frame.timestamp, faces)
            except PipnetError as exc:
                self._export(Export(None))
                self.output_stopped.emit("export", str(exc))

    def _write_recording(self, timestamp: float, annotated: np.ndarray) -> None:
        """The recording keeps the source's time: at its nominal rate, each processed frame is
        written as many times as the frames dropped since the last one, so it plays at real speed.
        A gap of more than a second (a pause, a camera lost and back) is left out, not filled."""
        if self._recorder is None:  # opened on the first frame, when its size is known
            h, w = annotated.shape[:2]
            self._record_fps = self._capture.source.fps if self._capture is not None else 30.0
            self._recorder = video_writer(self._record_path, self._record_fps, (w, h))
            self._recorded, self._record_start = 0, timestamp
        fps = self._record_fps
        due = int(round((timestamp - self._record_start) * fps)) + 1
        if due - self._recorded > fps:
            self._record_start += (due - self._recorded - 1) / fps
            due = self._recorded + 1
        for _ in range(due - self._recorded):  # none for a frame the source timed no later
            self._recorder.write(annotated)
        self._recorded = max(due, self._recorded)

    def _stop_capture(self) -> None:
        if self._capture is not None:
            self._capture.stopped.set()
            self._capture.join(2.0)
            self._capture = None

    def _close_outputs(self) -> None:
        self._record(Record(None))
        self._export(Export(None))

"""Capture and processing off the UI thread.

The UI talks to the worker only through messages (``ProcessingWorker.post``) and hears back only
through Qt signals, so no object is used by two threads at once. The worker runs the library's
``stream.runner.LiveRunner``: a capture thread reads frames at the source's own pace (a file plays in real
time) and keeps only the newest one; the worker always takes the newest, so when processing is
slower than the source, old frames are dropped and latency stays one frame deep; the runner's
sinks stream each result (Output > Stream). Opening a camera, loading a model and making the
sample clip all happen on the worker's thread: the window never waits for them.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QThread, Signal

from pipnet_core import Landmarker, OverlayOptions, PipnetError, SmoothingParams, draw_faces
from pipnet_core.export.writers import CsvWriter, JsonLinesWriter, export_header, video_writer
from pipnet_core.io.frames import CameraFormat, FrameSource, ImageSource, open_source
from pipnet_core.io.sample_clip import cached_clip
from pipnet_core.model.interface import describe_model
from pipnet_core.stream.command import StreamChoice, open_sinks
from pipnet_core.stream.runner import Captured, LiveRunner, RateMeter, Sink

MAX_FAILURES = 5  # consecutive frames the pipeline may fail on before processing stops


@dataclass(frozen=True)
class Settings:
    """Everything the user can change while the app runs."""

    overlay: OverlayOptions = OverlayOptions()
    smoothing: bool = True
    smoothing_strength: float = 0.5
    detector: str = "blazeface"  # see pipnet_core.detection.registry.DETECTORS
    detector_threshold: float = 0.5
    max_faces: int = 1  # video: one face unless asked (docs/api.md, "How many faces")
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
class SetStreams:
    choice: StreamChoice  # what to stream; an empty choice stops every stream


@dataclass(frozen=True)
class Processed:
    """The newest processed frame, published as one object so readers never mix two frames."""

    raw: np.ndarray
    annotated: np.ndarray
    faces: list
    timestamp: float  # the source's time of the frame, seconds


class ProcessingWorker(QThread):
    """Runs the Landmarker on the newest frame and emits the annotated image."""

    frame_ready = Signal(object, object)  # annotated BGR ndarray, stats dict
    error = Signal(str)
    source_opened = Signal(str)  # the source's name
    source_state = Signal(str, str)  # "lost" / "live" / "ended", message
    settings_applied = Signal(object)  # the Settings in force (a model that failed is not among them)
    model_loaded = Signal(object)  # the model's description (pipnet_core.model.onnx.describe_model)
    output_stopped = Signal(str, str)  # "record" / "export", why: the UI unchecks its button
    stream_status = Signal(str)  # the streams' state for the status bar ("" when none is on)

    def __init__(self, settings: Settings, parent=None):
        super().__init__(parent)
        self._requested = settings
        self._settings: Settings | None = None  # in force
        self._inbox: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._runner = LiveRunner(None, on_state=self._on_source_state)  # its landmarker: once the model loads
        self._streams = StreamChoice()
        self._sinks: dict[str, Sink] = {}  # the runner's sinks, by stream name ("osc", "ws"...)
        self._status_shown = 0.0
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
    def landmarker(self) -> Landmarker | None:
        """The landmarker in force (None until the first model has loaded): for reading only."""
        return self._runner.landmarker

    @property
    def capture_rate(self) -> float:
        capture = self._runner.capture
        return capture.meter.rate if capture is not None else 0.0

    @property
    def capture_alive(self) -> bool:
        capture = self._runner.capture
        return capture is not None and capture.is_alive()

    # -- the worker thread ------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._guarded(self._apply_settings, self._requested)
            while not self._stop.is_set():
                self._handle_messages()
                captured = self._runner.next()
                if captured is not None and self._runner.landmarker is not None:
                    self._guarded(self._process, captured)
                self._report_streams()
        finally:
            self._runner.close()
            self._close_outputs()
            if self._runner.landmarker is not None:
                self._runner.landmarker.close()
                self._runner.landmarker = None

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
            self.error.emit(
                f"Processing failed ({type(exc).__name__}: {exc} at {Path(where.filename).name}:{where.lineno})"
            )
            if self._runner.landmarker is not None:
                self._runner.landmarker.reset()
            if self._failures >= MAX_FAILURES:
                self._runner.stop_capture()
                self.error.emit(
                    f"Processing stopped after {MAX_FAILURES} failures in a row: open a source to try again"
                )
                self._failures = 0

    def _handle_messages(self) -> None:
        handlers = {
            OpenSource: self._open,
            ApplySettings: lambda m: self._apply_settings(m.settings),
            SetPaused: self._set_paused,
            Record: self._record,
            Export: self._export,
            SetStreams: self._set_streams,
        }
        while True:
            try:
                message = self._inbox.get_nowait()
            except queue.Empty:
                return
            self._guarded(handlers[type(message)], message)

    def _open(self, message: OpenSource) -> None:
        target = message.target
        had_source = self._runner.capture is not None
        if isinstance(target, int):
            self._runner.stop_capture()  # a camera (maybe this same one, in another format) must be released first
        try:
            if target == SAMPLE_CLIP:
                source = open_source(cached_clip(), loop=message.loop)
            elif isinstance(target, (str, int)):
                source = open_source(
                    target, loop=message.loop, camera_format=message.camera_format, name=message.name or None
                )
            else:
                source = target
        except PipnetError as exc:
            if not message.fallback_to_sample:
                raise
            self.error.emit(f"{exc}: playing a sample clip instead (open a camera, video or image from the toolbar)")
            source = open_source(cached_clip(), loop=message.loop)
        self._runner.stop_capture()
        if had_source:  # a recording or an export belongs to one source: its size, frame numbers and times
            self._stop_outputs(f"stopped: {source.name} replaced the source")
        self._runner.open(source)
        self.source_opened.emit(source.name)
        if isinstance(source, ImageSource) and source.problem:  # a truncated or damaged still: shown, said
            self.error.emit(source.problem)

    def _on_source_state(self, state: str, message: str) -> None:
        if state == "error":
            self.error.emit(message)
        else:
            self.source_state.emit(state, message)

    def _set_paused(self, message: SetPaused) -> None:
        capture = self._runner.capture
        if capture is not None:
            (capture.paused.set if message.paused else capture.paused.clear)()

    def _apply_settings(self, new: Settings) -> None:
        old = self._settings
        if old is None or new.model_path != old.model_path or self._runner.landmarker is None:
            new = self._load_landmarker(new, old)
            if new is None:
                return
        elif (new.detector, new.detector_threshold) != (old.detector, old.detector_threshold):
            # The model session and the tracked faces stay; the old detector is closed.
            try:
                self._runner.landmarker.set_detector(new.detector, new.detector_threshold)
            except PipnetError as exc:  # the old detector stays in force, and the other settings apply
                self.error.emit(str(exc))
                new = replace(new, detector=old.detector, detector_threshold=old.detector_threshold)
        self._runner.landmarker.set_max_faces(new.max_faces)
        self._runner.landmarker.set_smoothing(
            SmoothingParams.from_strength(new.smoothing_strength) if new.smoothing else None
        )
        self._settings = new
        self.settings_applied.emit(new)
        if old is not None and new.overlay != old.overlay:
            self._redraw()

    def _load_landmarker(self, new: Settings, old: Settings | None) -> Settings | None:
        """A landmarker for the new model and detector; if that fails, the old one stays and the
        settings in force keep the old model (so a broken model is never saved)."""
        try:
            landmarker = Landmarker(
                new.model_path or None,
                detector=new.detector,
                detector_threshold=new.detector_threshold,
                max_faces=new.max_faces,
            )
        except PipnetError as exc:
            self.error.emit(str(exc))
            if old is None:  # nothing to fall back on but the shipped model
                if new.model_path:
                    self._apply_settings(replace(new, model_path=""))
                return None
            self.settings_applied.emit(old)
            return None
        if self._runner.landmarker is not None:
            self._runner.landmarker.close()
        self._runner.landmarker = landmarker
        self.model_loaded.emit(describe_model(landmarker.model))
        return new

    def _redraw(self) -> None:
        """New overlay on the last frame, for a paused or still source that sends no new frames."""
        last = self.last
        if last is not None:
            annotated = draw_faces(last.raw.copy(), last.faces, self._settings.overlay)
            self.last = Processed(last.raw, annotated, last.faces, last.timestamp)
            self.frame_ready.emit(annotated, {**self._stats, "redrawn": True})

    def _process(self, captured: Captured) -> None:
        started = time.perf_counter()
        result = self._runner.process(captured)
        frame, faces = result.frame, result.faces
        annotated = draw_faces(frame.image.copy(), faces, self._settings.overlay)
        total_ms = 1000 * (time.perf_counter() - started)
        self._write_outputs(frame, faces, annotated)
        self.meter.tick()
        self.frames_processed += 1
        self.last = Processed(frame.image, annotated, faces, frame.timestamp)
        self._stats = {
            "capture_fps": self.capture_rate,
            "process_fps": self.meter.rate,
            "faces": len(faces),
            "detector": self._runner.landmarker.detector.name,
            "stages": dict(self._runner.landmarker.timings),
            "total_ms": total_ms,
            "frame": frame.index,
        }
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
            header = export_header(
                self._runner.landmarker.model,
                source="pipnet-live session",
                detector=settings.detector,
                **self._runner.landmarker.calibration.fields(),
                smoothing=settings.smoothing,
                max_faces=settings.max_faces,
            )
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

    def _write_outputs(self, frame, faces, annotated: np.ndarray) -> None:
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
            self._record_fps = self._runner.source.fps if self._runner.source is not None else 30.0
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

    # -- streams ------------------------------------------------------------------------------------------
    def _set_streams(self, message: SetStreams) -> None:
        """Keep the streams that did not change (their receivers stay connected), close the others,
        open the new ones; one that cannot open (a port in use, a missing library) is a banner,
        and the others still open. LSL's nominal rate is the source's when its stream opens."""
        fps = self._runner.source.fps if self._runner.source is not None else 30.0
        faces = self._settings.max_faces if self._settings is not None else 1
        old, self._streams = self._streams, message.choice
        kept = {name: sink for name, sink in self._sinks.items() if getattr(old, name) == getattr(message.choice, name)}
        closing = [sink for name, sink in self._sinks.items() if name not in kept]
        self._sinks = kept
        self._runner.sinks = list(kept.values())
        try:
            for sink in closing:
                sink.close()
        finally:
            for name in ("osc", "vmc", "lsl", "ws"):
                value = getattr(message.choice, name)
                if not value or name in kept:
                    continue
                try:
                    (self._sinks[name],) = open_sinks(
                        replace(StreamChoice(), **{name: value}), fps, faces, warn=self.error.emit
                    )
                except PipnetError as exc:
                    self.error.emit(f"Stream: {exc}")
            self._runner.sinks = list(self._sinks.values())
            self._status_shown = 0.0

    def _report_streams(self) -> None:
        """The streams' state for the status bar, once a second."""
        now = time.monotonic()
        if now - self._status_shown >= 1.0:
            self._status_shown = now
            self.stream_status.emit("; ".join(sink.status() for sink in self._runner.sinks))

    def _close_outputs(self) -> None:
        self._record(Record(None))
        self._export(Export(None))

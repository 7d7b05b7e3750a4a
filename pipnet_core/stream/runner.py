"""The live loop: a source read at its own pace, the newest frame processed, results handed on.

A capture thread reads the source (a camera, a video file played in real time, any iterable of
frames)
and keeps only the newest frame, stamped with the moment it was read; the processing side always
takes the newest, so a slow consumer drops old frames instead of falling behind and latency stays
one frame deep. ``LiveRunner`` joins the two with a ``Landmarker`` and hands every processed frame,
as one message (``stream.message``), to its sinks: OSC, VMC, Lab Streaming Layer, WebSocket
(``pipnet_core.stream``). `pipnet live` runs it headless; the app's worker runs the same runner
and draws what it returns.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple, Protocol

from pipnet_core.base.records import Face
from pipnet_core.io.frames import Frame, FrameSource, IteratorSource
from pipnet_core.offline.measures import LiveBlinks
from pipnet_core.pipeline.landmarker import Landmarker
from pipnet_core.stream.message import frame_message

RECONNECT_SECONDS = 1.0  # between attempts to reopen a camera that stopped delivering


class Captured(NamedTuple):
    frame: Frame
    captured_at: float  # time.monotonic() when the source gave it


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
        self._captured: Captured | None = None
        self._serial = 0
        self._condition = threading.Condition()

    def put(self, frame: Frame) -> None:
        with self._condition:
            self._captured, self._serial = Captured(frame, time.monotonic()), self._serial + 1
            self._condition.notify_all()

    def take(self, after: int, timeout: float = 0.05) -> tuple[Captured | None, int]:
        with self._condition:
            self._condition.wait_for(lambda: self._serial != after, timeout)
            return (self._captured, self._serial) if self._serial != after else (None, after)


class CaptureThread(threading.Thread):
    """Reads one source into the mailbox. A camera that fails a read is "lost": the thread keeps
    reopening it until it delivers again ("live") or the thread is stopped. ``report(state, text)``
    receives "lost", "live", "ended" and "error"."""

    def __init__(self, source: FrameSource, mailbox: LatestFrame, report: Callable[[str, str], None]):
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
                        self.report(
                            *(
                                ("ended", f"{self.source.name}: end of the source")
                                if delivered
                                else ("error", f"{self.source.name}: no frame could be decoded")
                            )
                        )
                        return
                    self._reconnect()
                    continue
                self.mailbox.put(frame)
                delivered += 1
                self.meter.tick()
                if getattr(self.source, "paced", not self.source.is_camera):  # files play at their own rate
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


@dataclass(frozen=True)
class LiveResult:
    """One processed frame: what the sinks are sent, and what a caller draws."""

    sequence: int  # processed frames before this one: contiguous, whatever the source dropped
    frame: Frame
    captured_at: float  # time.monotonic() when the source gave the frame
    taken_at: float  # ... when processing began
    processed_at: float  # ... when its faces were known
    faces: list[Face]
    events: list[tuple[str, int]] = field(default_factory=list)  # ("found" | "lost" | "blink", face id)

    @cached_property
    def message(self) -> dict:
        """The frame as every stream sends it (``stream.message``), made once for all sinks."""
        return frame_message(self)


class Sink(Protocol):
    """Where live results go. ``send`` must never block the pipeline (queue, drop or use UDP);
    ``status`` is a short line for a status bar (clients, messages per second, drops)."""

    name: str

    def send(self, result: LiveResult) -> None: ...
    def status(self) -> str: ...
    def close(self) -> None: ...


class LiveRunner:
    """A landmarker on the newest frame of a source, each result handed to ``sinks``; the
    landmarker may be set (or replaced) after the runner is made, before the first ``process``.

    ``open(source)`` starts reading it (closing the source before); ``next()`` gives the newest
    frame not yet taken; ``process()`` runs the landmarker on it and sends the result; ``run()``
    does both until the source ends or ``stop`` is set. ``close()`` stops the capture and closes
    the sinks (not the landmarker, which is the caller's)."""

    def __init__(
        self, landmarker: Landmarker | None, sinks: list[Sink] = (), on_state: Callable[[str, str], None] | None = None
    ):
        self.landmarker = landmarker
        self.sinks: list[Sink] = list(sinks)
        self.on_state = on_state or (lambda state, message: None)
        self.meter = RateMeter()
        self.capture: CaptureThread | None = None
        self._mailbox = LatestFrame()
        self._serial = 0
        self._sequence = 0
        self._present: set[int] = set()  # ids of the faces followed in the frame before
        self._blinks = LiveBlinks()
        self.ended = threading.Event()  # the source ended or failed
        self.last: LiveResult | None = None  # the newest result, for a view on another thread

    @property
    def source(self) -> FrameSource | None:
        return self.capture.source if self.capture is not None else None

    def open(self, source: FrameSource | Iterable) -> None:
        """Start reading ``source``: a FrameSource, or any iterable of frames (``IteratorSource``)."""
        if not hasattr(source, "read"):
            source = IteratorSource(source)
        self.stop_capture()
        self._mailbox, self._serial = LatestFrame(), 0
        self._present, self._blinks = set(), LiveBlinks()
        if self.landmarker is not None:  # the app opens its first source before its model has loaded
            self.landmarker.reset()
        self.ended.clear()
        self.capture = CaptureThread(source, self._mailbox, self._report)
        self.capture.start()

    def _report(self, state: str, message: str) -> None:
        if threading.current_thread() is not self.capture:
            return  # a capture thread replaced while it was still finishing: its source is not this one
        if state in ("ended", "error"):
            self.ended.set()
        self.on_state(state, message)

    def next(self, timeout: float = 0.05) -> Captured | None:
        captured, self._serial = self._mailbox.take(self._serial, timeout)
        return captured

    def process(self, captured: Captured) -> LiveResult:
        taken = time.monotonic()
        faces = self.landmarker.process(captured.frame.image, captured.frame.timestamp)
        result = LiveResult(
            self._sequence,
            captured.frame,
            captured.captured_at,
            taken,
            time.monotonic(),
            faces,
            self._events(faces, captured.frame.timestamp),
        )
        self._sequence += 1
        self.last = result
        self.meter.tick()
        for sink in list(self.sinks):
            sink.send(result)
        return result

    def _events(self, faces: list[Face], timestamp: float) -> list[tuple[str, int]]:
        """Faces found and lost since the frame before, and blink onsets."""
        present = {face.id for face in faces if face.success}
        events = [("found", face_id) for face_id in sorted(present - self._present)]
        events += [("lost", face_id) for face_id in sorted(self._present - present)]
        self._present = present
        events += [("blink", face_id) for face_id in self._blinks.update(faces, timestamp)]
        return events

    def run(self, stop: threading.Event | None = None, max_frames: int | None = None) -> int:
        """Process until the source ends (all its frames taken), ``stop`` is set or ``max_frames``
        are done; returns how many were processed."""
        stop = stop or threading.Event()
        done = 0
        while not stop.is_set() and (max_frames is None or done < max_frames):
            ended = self.ended.is_set()  # before the take: the source's last frame is put before it ends
            captured = self.next()
            if captured is None:
                if ended:
                    break
                continue
            self.process(captured)
            done += 1
        return done

    def stop_capture(self) -> None:
        if self.capture is not None:
            self.capture.stopped.set()
            self.capture.join(2.0)
            self.capture = None

    def close(self) -> None:
        self.stop_capture()
        sinks, self.sinks = self.sinks, []
        for sink in sinks:
            sink.close()

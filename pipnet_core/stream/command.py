"""`pipnet live`: a camera or video file, processed live, streamed to other programs."""

from __future__ import annotations

import signal
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass

from pipnet_core.base.errors import PipnetError
from pipnet_core.stream import host_port
from pipnet_core.stream.runner import LiveRunner, Sink
from pipnet_core.stream.websocket import LOOPBACK

STATUS_SECONDS = 2.0  # between two status lines on a terminal


@dataclass(frozen=True)
class StreamChoice:
    """Which streams to open, as the command line and the app's Stream dialog give them."""

    osc: str | None = None  # HOST:PORT
    vmc: str | None = None  # HOST:PORT
    lsl: str | None = None  # the stream's name
    ws: str | None = None  # [HOST:]PORT
    host: str | None = None  # where --ws listens when its value names no host
    allowed_origins: tuple[str, ...] = ()
    token: str | None = None
    max_clients: int = 8

    def __bool__(self) -> bool:
        return any((self.osc, self.vmc, self.lsl, self.ws))


def _warn(text: str) -> None:
    print(f"pipnet live: warning: {text}", file=sys.stderr)


def _report_state(state: str, text: str) -> None:
    """A camera lost or back, a decoder failing: one line each (a file's end is the summary's)."""
    if state != "ended":
        _warn(text)


def open_sinks(choice: StreamChoice, nominal_rate: float, face_slots: int, warn=_warn) -> list[Sink]:
    """The sinks ``choice`` names; each problem (a port in use, a host that does not resolve, a
    missing library) is a one-line PipnetError, and what was opened before it is closed."""
    from pipnet_core.stream.message import lsl_clock_offset
    from pipnet_core.stream.osc import VMC_PORT, OscSink, VmcSink

    lsl_clock_offset()  # every message has the LSL clock when pylsl is there: found now, not on a frame
    sinks: list[Sink] = []
    try:
        if choice.osc:
            sinks.append(OscSink(*host_port(choice.osc)))
        if choice.vmc:
            sinks.append(VmcSink(*host_port(choice.vmc, default_port=VMC_PORT)))
        if choice.lsl:
            from pipnet_core.stream.lsl import LslSink

            sinks.append(LslSink(choice.lsl, face_slots, nominal_rate))
        if choice.ws:
            from pipnet_core.stream.websocket import WebSocketSink

            named, port = host_port(choice.ws, default_host="", any_port=True)
            host = named or choice.host or "127.0.0.1"
            if host not in LOOPBACK:
                warn(
                    f"the WebSocket listens on {host}: other machines can connect"
                    + ("" if choice.token else " (--token to require one)")
                )
            sinks.append(WebSocketSink(host, port, choice.allowed_origins, choice.token, choice.max_clients))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks


def run_live(args) -> None:
    from pathlib import Path

    from pipnet_core.io.frames import open_source
    from pipnet_core.pipeline.landmarker import Landmarker

    for name in ("lsl", "vmc"):  # `--lsl clip.mp4`: argparse gave the source to the option's optional value
        value = getattr(args, name)
        if args.source == "0" and value and Path(value).is_file():
            args.source = value
            setattr(args, name, "pipnet-live" if name == "lsl" else "127.0.0.1:39540")
    choice = StreamChoice(
        args.osc, args.vmc, args.lsl, args.ws, args.host, tuple(args.allow_origin), args.token, args.max_clients
    )
    if not choice and not args.window:
        raise PipnetError("nothing to do: give a stream (--osc, --vmc, --lsl, --ws) or --window")
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())  # a service manager's stop: a clean end
    with ExitStack() as cleanup:
        cleanup.callback(signal.signal, signal.SIGTERM, previous)
        landmarker = cleanup.enter_context(
            Landmarker(
                args.model,
                detector=args.detector,
                max_faces=args.max_faces,
                threads=args.threads,
                calibration=args.calibration,
            )
        )
        source = open_source(args.source, loop=args.loop)
        try:
            sinks = open_sinks(choice, source.fps, args.max_faces or 1, _warn)
        except BaseException:
            source.close()
            raise
        runner = LiveRunner(landmarker, sinks, on_state=_report_state)
        cleanup.callback(runner.close)
        runner.open(source)  # the runner's capture thread reads it, and closes it when done
        for sink in sinks:
            if hasattr(sink, "url"):
                print(f"browser view: {sink.url(args.token)}", flush=True)
        if args.seconds:
            timer = threading.Timer(args.seconds, stop.set)
            timer.daemon = True
            timer.start()
            cleanup.callback(timer.cancel)
        done = _run_with_window(runner, stop, args.frames) if args.window else _run_headless(runner, stop, args.frames)
        print("; ".join([f"{done} frames processed", *(sink.status() for sink in runner.sinks)]), flush=True)


def _run_headless(runner: LiveRunner, stop: threading.Event, frames: int | None) -> int:
    """The runner in this thread, a status line every few seconds on a terminal."""
    done, shown = 0, time.monotonic()
    while not stop.is_set() and (frames is None or done < frames):
        step = runner.run(stop, max_frames=1)
        if not step:
            break
        done += step
        if sys.stderr.isatty() and time.monotonic() - shown > STATUS_SECONDS:
            shown = time.monotonic()
            print(
                f"\r{done} frames, {runner.meter.rate:.1f} FPS; " + "; ".join(sink.status() for sink in runner.sinks),
                end="",
                file=sys.stderr,
                flush=True,
            )
    return done


def _run_with_window(runner: LiveRunner, stop: threading.Event, frames: int | None) -> int:
    """The runner on a thread of its own, its newest result drawn in a window until either ends.
    Ctrl-C ends both (Qt's loop would not hear it)."""
    from PySide6.QtCore import QTimer
    from PySide6.QtGui import QImage, QPixmap
    from PySide6.QtWidgets import QApplication, QLabel

    from pipnet_core.export.draw import OverlayOptions, draw_faces

    done, interrupted = [0], threading.Event()

    def work() -> None:
        done[0] = runner.run(stop, frames)
        stop.set()

    def on_interrupt(*_) -> None:
        interrupted.set()
        stop.set()

    app = QApplication.instance() or QApplication([])
    label = QLabel()
    label.setWindowTitle("pipnet live")
    label.show()

    def show() -> None:
        if stop.is_set() or not label.isVisible():
            stop.set()
            app.quit()
            return
        result = runner.last
        if result is not None:
            image = draw_faces(result.frame.image.copy(), result.faces, OverlayOptions())
            height, width = image.shape[:2]
            label.setPixmap(QPixmap.fromImage(QImage(image.data, width, height, 3 * width, QImage.Format_BGR888)))

    previous = signal.signal(signal.SIGINT, on_interrupt)
    worker = threading.Thread(target=work, daemon=True, name="live")
    worker.start()
    timer = QTimer(interval=15, timeout=show)
    timer.start()
    try:
        app.exec()
    finally:
        timer.stop()
        stop.set()
        worker.join(5.0)
        signal.signal(signal.SIGINT, previous)
    if interrupted.is_set():
        raise KeyboardInterrupt
    return done[0]

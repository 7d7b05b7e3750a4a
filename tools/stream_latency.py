"""How long a live result takes from capture to a receiver's hands, for each stream, on this machine.

    .venv/bin/python tools/stream_latency.py --seconds 300

`pipnet live` runs in a process of its own on a 30 FPS source (the sample clip, looped at its own
rate; --video for another) with OSC, LSL and WebSocket all on; this process receives all three at
once, as a receiver would: a python-osc server, an LSL inlet, a WebSocket client, each on its own
thread. For every message it prints the delay beyond the frame's processing: the time from
capture to arrival less the pipeline's own share (processed_time - process_start), that is the
wait for the newest frame plus the stream's own path; p50 and p99 per stream, and whether the
frame numbers it received were contiguous. All clocks are this machine's monotonic clock (LSL's
local_clock is the same on Linux).
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipnet_core.io.sample_clip import cached_clip  # noqa: E402
from pipnet_core.stream.lsl import channels  # noqa: E402


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def receive_osc(port: int, arrivals: list, stop: threading.Event) -> None:
    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import BlockingOSCUDPServer

    dispatcher = Dispatcher()
    # /pipnet/frame: frame, source_frame, faces, width, height, capture_time, send_time
    dispatcher.map("/pipnet/frame", lambda _, *args: arrivals.append((args[0], time.monotonic(), args[5], None)))
    server = BlockingOSCUDPServer(("127.0.0.1", port), dispatcher)
    server.timeout = 0.2
    while not stop.is_set():
        server.handle_request()
    server.server_close()


def receive_ws(port: int, arrivals: list, stop: threading.Event) -> None:
    from websockets.sync.client import connect

    for _ in range(100):  # until pipnet live listens
        try:
            with connect(f"ws://127.0.0.1:{port}/stream", open_timeout=2) as client:
                receive_messages(client, arrivals, stop)
            return
        except OSError:
            time.sleep(0.1)


def receive_messages(client, arrivals: list, stop: threading.Event) -> None:
    from websockets.exceptions import ConnectionClosed

    while not stop.is_set():
        try:
            message = json.loads(client.recv(timeout=0.5))
        except TimeoutError:
            continue
        except ConnectionClosed:  # pipnet live has ended
            return
        processing = message["processed_time"] - message["process_start"]
        arrivals.append((message["frame"], time.monotonic(), message["capture_time"], processing))


def receive_lsl(name: str, arrivals: list, stop: threading.Event) -> None:
    import pylsl

    found = pylsl.resolve_byprop("name", name, timeout=30)
    inlet = pylsl.StreamInlet(found[0], max_buflen=10)
    while not stop.is_set():
        sample, stamp = inlet.pull_sample(timeout=0.5)
        if sample is not None:  # its first channel: the frame number
            arrivals.append((int(sample[0]), pylsl.local_clock(), stamp, None))


TARGET_P50_MS, TARGET_P99_MS = 10.0, 33.0


def summary(name: str, arrivals: list, processing: dict[int, float], typical: float) -> str:
    frames = [a[0] for a in arrivals]
    delays = np.array(
        [
            1000 * (arrived - captured - (own if own is not None else processing.get(frame, typical)))
            for frame, arrived, captured, own in arrivals
        ]
    )
    contiguous = frames == list(range(frames[0], frames[0] + len(frames))) if frames else False
    p50, p99 = np.percentile(delays, 50), np.percentile(delays, 99)
    met = p50 <= TARGET_P50_MS and p99 <= TARGET_P99_MS and contiguous
    return (
        f"{name:9s} {len(arrivals):6d} messages, beyond processing: p50 {p50:6.2f} ms, p99 {p99:6.2f} ms, "
        f"max {delays.max():7.2f} ms; frame numbers {'contiguous' if contiguous else 'NOT contiguous'}; "
        f"targets (p50 <= {TARGET_P50_MS:.0f}, p99 <= {TARGET_P99_MS:.0f} ms, contiguous) {'met' if met else 'MISSED'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="how long to stream (default: 300)")
    parser.add_argument("--video", help="a 30 FPS video to loop (default: the sample clip)")
    args = parser.parse_args()
    osc_port, ws_port = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    lsl_name = f"pipnet-latency-{time.monotonic_ns()}"
    stop = threading.Event()
    received = {"OSC": [], "LSL": [], "WebSocket": []}
    receivers = [
        threading.Thread(target=receive_osc, args=(osc_port, received["OSC"], stop), daemon=True),
        threading.Thread(target=receive_lsl, args=(lsl_name, received["LSL"], stop), daemon=True),
        threading.Thread(target=receive_ws, args=(ws_port, received["WebSocket"], stop), daemon=True),
    ]
    receivers[0].start()
    live = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipnet_core",
            "live",
            args.video or str(cached_clip()),
            "--loop",
            "--osc",
            f"127.0.0.1:{osc_port}",
            "--lsl",
            lsl_name,
            "--ws",
            str(ws_port),
            "--seconds",
            str(args.seconds + 3),
        ],
        stdin=subprocess.DEVNULL,
    )
    for thread in receivers[1:]:
        thread.start()
    time.sleep(args.seconds + 3)
    live.wait(30)
    stop.set()
    for thread in receivers:
        thread.join(5)
    # OSC and LSL carry no processing time: the WebSocket's for the same frame number stands in (all
    # three send every frame).
    processing = {frame: own for frame, _, _, own in received["WebSocket"]}
    typical = float(np.median(list(processing.values()))) if processing else 0.0
    print(
        f"pipnet live exited {live.returncode}; {args.seconds:.0f} s of a 30 FPS source; processing "
        f"p50 {1000 * typical:.2f} ms; {len(channels())} LSL channels per face"
    )
    for name, arrivals in received.items():
        print(summary(name, arrivals, processing, typical) if arrivals else f"{name}: nothing received")
    return 0


if __name__ == "__main__":
    sys.exit(main())

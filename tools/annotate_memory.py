"""Peak resident memory and thread count of `pipnet annotate` over many image inputs: one
landmarker serves the whole run, so 2,000 inputs should cost no more than 20.

    .venv/bin/python tools/annotate_memory.py [--counts 20 2000]   # a few minutes for 2,000
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

from pipnet_core.io.sample_clip import face_photo


def measure(command: list[str]) -> tuple[int, float, int]:
    """Exit status, peak resident MB and the largest thread count seen (sampled every 0.1 s)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    threads: list[int] = []
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            return os.waitstatus_to_exitcode(status), usage.ru_maxrss / 1024, max(threads, default=0)
        try:
            with open(f"/proc/{process.pid}/status") as handle:
                threads.append(int(handle.read().split("Threads:")[1].split()[0]))
        except (OSError, IndexError):
            pass
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[20, 2000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        image = cv2.imencode(".png", face_photo())[1].tobytes()
        print("inputs  seconds  peak MB  threads (max)")
        for count in args.counts:
            folder = Path(tmp) / f"in{count}"
            folder.mkdir()
            for i in range(count):
                (folder / f"face{i:05d}.png").write_bytes(image)
            started = time.monotonic()
            code, peak, most = measure(
                [sys.executable, "-m", "pipnet_core", "annotate", str(folder), "--out", str(Path(tmp) / f"out{count}")]
            )
            if code:
                raise SystemExit(f"pipnet annotate exited with {code}")
            print(f"{count:6d}  {time.monotonic() - started:7.1f}  {peak:7.0f}  {most:7d}", flush=True)


if __name__ == "__main__":
    main()

"""Peak resident memory and wall time of `pipnet annotate` on long videos, offline smoothing
against live: offline holds a video's tracks in memory once it is done, live streams.

    .venv/bin/python tools/offline_memory.py [--videos ../shared/videos] [--out /tmp/offline_memory]

The long videos are the corpus joined end to end (tools/cluster_bench.py's join), once and four
times, at 640x480 and 30 FPS; the growth between them is the memory per frame of one face.
Nothing else should run meanwhile.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster_bench import frame_count, join_videos  # noqa: E402

from pipnet_core.io.media import expand  # noqa: E402


def measure(command: list[str]) -> tuple[int, float, float]:
    """Exit status, peak resident MB, seconds."""
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss / 1024, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", default=str(Path(__file__).resolve().parents[2] / "shared" / "videos"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/offline_memory"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    corpus = expand([args.videos], kinds=("video",))
    peaks = {}
    for repeats in (1, 4):
        video = args.out / f"long{repeats}.mp4"
        if not video.exists():
            join_videos(corpus, video, repeats)
        frames = frame_count(video)
        for smooth in ("live", "offline"):
            status, peak, seconds = measure(
                [
                    sys.executable,
                    "-m",
                    "pipnet_core",
                    "annotate",
                    str(video),
                    "--out",
                    str(args.out / f"{smooth}{repeats}"),
                    "--format",
                    "csv,json",
                    "--smooth",
                    smooth,
                ]
            )
            peaks[smooth, frames] = peak
            print(
                f"{frames} frames ({frames / 30 / 60:.1f} min), --smooth {smooth}: exit {status}, peak {peak:.0f} MB, "
                f"{seconds:.1f} s ({frames / seconds:.1f} FPS)",
                flush=True,
            )
    short, long = sorted({frames for _, frames in peaks})
    for mode in ("live", "offline"):
        per_hour = (peaks[mode, long] - peaks[mode, short]) / (long - short) * 30 * 3600
        print(f"--smooth {mode}: {per_hour:.0f} MB more per hour of one face at 30 FPS")


if __name__ == "__main__":
    main()

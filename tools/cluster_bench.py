"""Throughput of `pipnet annotate` on one machine and on a Dask cluster, and what 1,000 hours cost.

    .venv/bin/python tools/cluster_bench.py [--videos ../shared/videos] [--out /tmp/cluster_bench]

Runs, each timed wall-clock end to end through the command line (start-up included):
1. the corpus (every video in --videos) in one process, with --jobs 2, and on two Dask workers
   (a `dask scheduler` and two single-threaded `dask worker` processes on 127.0.0.1);
2. one long video (the corpus joined end to end, twice) in one process, and in chunks of 30 s
   on the two workers;
3. the per-task overhead of the Dask path: the long video on one worker as one task and as
   chunks without overlap (one frame: ids are matched on it); the extra time per extra task.
The workers have joined before a run is timed (a cluster is running before a user's run).
Then projects the wall time of 1,000 hours of 30 FPS video on N workers from the measured
per-frame cost and per-task overhead. Nothing else should run meanwhile.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av

from pipnet_core.export.chunks import DEFAULT_CHUNK_SECONDS, DEFAULT_OVERLAP_SECONDS

REPO = Path(__file__).resolve().parent.parent
DASK = str(Path(sys.executable).with_name("dask"))
FORMATS = ("--format", "csv,json")


def annotate(inputs: list[Path], out: Path, *extra: str) -> float:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pipnet_core", "annotate", *map(str, inputs), "--out", str(out), *FORMATS, *extra],
        capture_output=True,
        text=True,
    )
    if result.returncode:
        sys.exit(f"annotate failed: {result.stderr.strip().splitlines()[-1]}")
    return time.monotonic() - started


class Cluster:
    """A scheduler and ``workers`` single-threaded workers as processes; stopped on exit."""

    def __init__(self, workers: int, folder: Path):
        self.workers = workers
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.address = f"tcp://127.0.0.1:{port}"
        self.log = (folder / "cluster.log").open("w")
        self.processes = [
            subprocess.Popen(
                [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                stdout=self.log,
                stderr=subprocess.STDOUT,
            )
        ]
        self.processes += [
            subprocess.Popen(
                [
                    DASK,
                    "worker",
                    self.address,
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                    "--local-directory",
                    str(folder / f"worker{i}"),
                ],
                stdout=self.log,
                stderr=subprocess.STDOUT,
            )
            for i in range(workers)
        ]

    def __enter__(self):
        """Once every worker has joined: a user's cluster is running before the run starts."""
        from distributed import Client

        with Client(self.address, timeout="60s") as client:
            client.wait_for_workers(self.workers, timeout=120)
        return self

    def __exit__(self, *exc):
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            process.wait()
        self.log.close()


def frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.pts is not None and packet.size)


def join_videos(videos: list[Path], target: Path, repeats: int) -> Path:
    """The videos one after another (scaled to 640x480, 30 FPS, H.264) as one long video."""
    with av.open(str(target), "w") as out:
        stream = out.add_stream("libx264", rate=30, options={"preset": "veryfast", "crf": "20"})
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
        count = 0
        for _ in range(repeats):
            for video in videos:
                with av.open(str(video)) as source:
                    for frame in source.decode(video=0):
                        scaled = frame.reformat(width=640, height=480, format="yuv420p")
                        scaled.pts, scaled.time_base, count = count, Fraction(1, 30), count + 1
                        out.mux(stream.encode(scaled))
        out.mux(stream.encode())
    return target


OVERHEAD_CHUNK_SECONDS = 1  # the per-task overhead run: many tasks, so the overhead stands out of the noise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=Path, default=REPO.parent / "shared" / "videos")
    parser.add_argument("--out", type=Path, default=Path("/tmp/cluster_bench"))
    args = parser.parse_args()
    corpus = sorted(p for p in args.videos.iterdir() if p.suffix.lower() in (".mp4", ".mov", ".avi", ".mkv"))
    args.out.mkdir(parents=True, exist_ok=True)
    frames = sum(frame_count(p) for p in corpus)
    long_video = args.out / "long.mp4"
    if not long_video.exists():
        join_videos(corpus, long_video, repeats=2)
    long_frames = frame_count(long_video)
    print(
        f"corpus: {len(corpus)} videos, {frames} frames; long video: {long_frames} frames "
        f"({long_frames / 30 / 60:.1f} min at 30 FPS)"
    )
    print("| run | wall time | frames per second |\n|---|---|---|")
    runs = run_all(corpus, frames, long_video, long_frames, args.out)
    report_costs(runs, long_frames)


def run_all(corpus: list[Path], frames: int, long_video: Path, long_frames: int, out: Path) -> dict[str, float]:
    """Each run's wall time by its label, printed as a table row as it ends."""
    runs = {}

    def report(label: str, seconds: float, count: int) -> None:
        runs[label] = seconds
        print(f"| {label} | {seconds:.1f} s | {count / seconds:.1f} |", flush=True)

    dask = ("--threads", "1")
    report("corpus, one process", annotate(corpus, out / "one"), frames)
    report("corpus, --jobs 2", annotate(corpus, out / "jobs2", "--jobs", "2"), frames)
    with Cluster(2, out) as cluster:
        report(
            "corpus, two Dask workers", annotate(corpus, out / "dask2", "--scheduler", cluster.address, *dask), frames
        )
        chunked = annotate(
            [long_video], out / "long_dask2", "--scheduler", cluster.address, *dask, "--chunk-seconds", "30"
        )
        report("long video, two Dask workers, 30 s chunks", chunked, long_frames)
    report("long video, one process", annotate([long_video], out / "long_one"), long_frames)
    with Cluster(1, out) as cluster:
        whole = annotate(
            [long_video], out / "long_whole", "--scheduler", cluster.address, *dask, "--chunk-seconds", "0"
        )
        report("long video, one Dask worker, one task", whole, long_frames)
        many = ("--chunk-seconds", str(OVERHEAD_CHUNK_SECONDS), "--chunk-overlap", "0")
        chunked = annotate([long_video], out / "long_chunks", "--scheduler", cluster.address, *dask, *many)
        label = f"long video, one Dask worker, {overhead_tasks(long_frames)} chunks of {OVERHEAD_CHUNK_SECONDS} s, no overlap"
        report(label, chunked, long_frames)
        runs["one worker, many chunks"] = chunked
    return runs


def overhead_tasks(long_frames: int) -> int:
    return -(-long_frames // (30 * OVERHEAD_CHUNK_SECONDS))


def report_costs(runs: dict[str, float], long_frames: int) -> None:
    """Speed-ups over one process, the per-task overhead, and what 1,000 hours would cost."""
    whole, chunked = runs["long video, one Dask worker, one task"], runs["one worker, many chunks"]
    overhead = (chunked - whole) / (overhead_tasks(long_frames) - 1)
    per_frame = whole / long_frames  # one worker, one task: start-up and merge included
    one, long_one = runs["corpus, one process"], runs["long video, one process"]
    print(
        f"\nover one process: corpus --jobs 2 {one / runs['corpus, --jobs 2']:.2f}x, two Dask workers "
        f"{one / runs['corpus, two Dask workers']:.2f}x; long video on two Dask workers "
        f"{long_one / runs['long video, two Dask workers, 30 s chunks']:.2f}x"
    )
    print(
        f"per-task overhead (seek from the keyframe, cold tracker, scheduling, writing the chunk): "
        f"{1000 * overhead:.0f} ms; per frame on one worker: {1000 * per_frame:.2f} ms"
    )
    total_frames = 1000 * 3600 * 30
    chunk, overlap = DEFAULT_CHUNK_SECONDS * 30, DEFAULT_OVERLAP_SECONDS * 30
    tasks = total_frames // chunk
    worker_seconds = total_frames * (1 + overlap / chunk) * per_frame + tasks * overhead
    print(
        f"1,000 hours at 30 FPS = {total_frames:,} frames in {tasks:,.0f} chunks of {DEFAULT_CHUNK_SECONDS:g} s "
        f"with {DEFAULT_OVERLAP_SECONDS:g} s of warm-up: "
        f"{worker_seconds / 3600:,.0f} worker-hours"
    )
    for workers in (2, 16, 64, 256):
        print(
            f"  {workers:4d} workers: {worker_seconds / workers / 3600:8,.1f} h ({worker_seconds / workers / 86400:.1f} days)"
        )


if __name__ == "__main__":
    main()

"""What several commands share: the runtime options, the landmarker they make, progress and summaries."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

from pipnet_core.detection.registry import DETECTORS


def make_landmarker(args, **overrides):
    from pipnet_core.pipeline.landmarker import Landmarker

    options = dict(model=args.model, detector=args.detector, threads=args.threads, calibration=args.calibration)
    options.update(overrides)
    return Landmarker(**options)


def summary_line(total: int, problems: Counter[str], kind: str) -> str:
    """ "3 of 5 images complete, 1 truncated, 1 failed": what is not complete, by what went wrong."""
    counts = "".join(f", {count} {what}" for what, count in sorted(problems.items()))
    return f"{total - sum(problems.values())} of {total} {kind} complete{counts}"


def progress_counter(label: str):
    """A one-line counter on a terminal's stderr (nothing when redirected), at most 5 updates/s."""
    last = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if not sys.stderr.isatty() or (now - last[0] < 0.2 and done < total):
            return
        last[0] = now
        print(f"\r{label} {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)

    return show


def add_runtime_options(p, detector="blazeface"):
    p.add_argument("--model", help="ONNX model (default: the shipped pipnet_mbv2_68.onnx)")
    p.add_argument(
        "--detector",
        default=detector,
        choices=DETECTORS,
        help=f"face detector (default: {detector}; blazeface is BlazeFace short range, "
        "blazeface-full the full-range model for small and far faces, blazeface-both the two)",
    )
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default 2)")
    add_calibration_option(p)


def add_calibration_option(p) -> None:
    p.add_argument(
        "--calibration",
        type=Path,
        metavar="FILE",
        help="detector box calibration written by `pipnet calibrate --out` (default: the shipped one)",
    )


def add_max_pixels_option(p) -> None:
    from pipnet_core.io.images import DEFAULT_MAX_PIXELS

    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help="refuse images and video frames larger than this, read from the file's header before "
        f"decoding (default: {DEFAULT_MAX_PIXELS:,}, a large phone panorama)",
    )

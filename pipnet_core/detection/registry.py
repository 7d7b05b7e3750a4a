"""The detectors by the names the commands, the app and ``Landmarker(detector=...)`` take."""

from __future__ import annotations

from pipnet_core.base.errors import PipnetError
from pipnet_core.detection.blazeface import BlazeFaceDetector
from pipnet_core.detection.detector import FaceDetector
from pipnet_core.detection.search import CombinedDetector

# BlazeFace only: OpenCV's Haar cascade missed 21 of HELEN's 330 test faces where BlazeFace misses
# none (`pipnet eval --detector`, docs/results.md), and gives no eyes to set a crop's roll.
DETECTORS = ("blazeface", "blazeface-full", "blazeface-both")


def create_detector(
    name: str = "blazeface", min_score: float = 0.5, min_size: int = 24, threads: int = 2
) -> FaceDetector:
    """The named detector: "blazeface" (short range), "blazeface-full" (full range) or
    "blazeface-both" (the two merged)."""
    if name == "blazeface-both":
        return CombinedDetector(
            name,
            [
                BlazeFaceDetector(min_score, min_size, "short", threads),
                BlazeFaceDetector(min_score, min_size, "full", threads),
            ],
        )
    if name in ("blazeface", "blazeface-full"):
        return BlazeFaceDetector(min_score, min_size, "full" if name == "blazeface-full" else "short", threads)
    raise PipnetError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}")

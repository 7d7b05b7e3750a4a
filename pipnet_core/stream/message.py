"""The one message per processed frame that every stream carries (docs/streaming.md).

Times are seconds on this machine's monotonic clock (``time.monotonic()``, CLOCK_MONOTONIC on
Linux: the same clock in every process here), so a receiver on the same machine measures the delay
itself: ``capture_time`` (the source gave the frame), ``process_start`` and ``processed_time`` (the
pipeline's share) and ``send_time`` (set by each sink as it sends). ``lsl_time`` is the capture
time on Lab Streaming Layer's clock, when pylsl is installed.
"""

from __future__ import annotations

import time
from functools import lru_cache

import numpy as np

from pipnet_core.base.errors import PipnetError
from pipnet_core.export.rows import measure
from pipnet_core.stream import import_pylsl

SCHEMA = "pipnet-live/1"


@lru_cache(maxsize=1)
def lsl_clock_offset() -> float | None:
    """LSL's local_clock() minus time.monotonic() (0 on Linux, where both are CLOCK_MONOTONIC);
    None without pylsl. Streams call it once when they open, so no frame waits for the import."""
    try:
        pylsl = import_pylsl()
    except PipnetError:
        return None
    before = time.monotonic()
    lsl = pylsl.local_clock()
    return lsl - (before + time.monotonic()) / 2


def face_entry(face, width: int, height: int, blinked: bool) -> dict:
    points = np.asarray(face.points, np.float64)
    measured = measure(face)  # the values the files write, measured the same way
    pose = face.pose
    return {
        "id": face.id,
        "success": bool(face.success),
        "confidence": round(face.mean_confidence, 4),
        "detector_score": round(float(face.score), 4),
        "box": [round(float(v), 2) for v in face.box],
        "points": np.round(points, 2).tolist(),
        "points_normalized": np.round(points / (width, height), 5).tolist(),
        "point_confidence": np.round(np.asarray(face.confidence, np.float64), 4).tolist(),
        "pose": None
        if pose is None
        else {
            "yaw": round(pose.yaw, 2),
            "pitch": round(pose.pitch, 2),
            "roll": round(pose.roll, 2),
            "translation": np.round(pose.translation, 1).tolist(),
        },
        "eye_aspect_ratio": {"right": round(measured.ear_right, 4), "left": round(measured.ear_left, 4)},
        "mouth_aspect_ratio": round(measured.mar, 4),
        "blink": blinked,
    }


def frame_message(result) -> dict:
    """A ``runner.LiveResult`` as the message (send_time is the sink's to add)."""
    height, width = result.frame.image.shape[:2]
    offset = lsl_clock_offset()
    blinked = {face_id for kind, face_id in result.events if kind == "blink"}
    return {
        "schema": SCHEMA,
        "frame": result.sequence,
        "source_frame": result.frame.index,
        "source_time": result.frame.timestamp,
        "capture_time": result.captured_at,
        "lsl_time": None if offset is None else result.captured_at + offset,
        "process_start": result.taken_at,
        "processed_time": result.processed_at,
        "width": width,
        "height": height,
        "faces": [face_entry(face, width, height, face.id in blinked) for face in result.faces],
        "events": [{"type": kind, "face": face_id} for kind, face_id in result.events],
    }

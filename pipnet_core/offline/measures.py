"""Eye and mouth measures from 68 points, and blink events from a track's eye measures.

The eye aspect ratio (Soukupova and Cech, 2016) is the sum of an eye's two lid-to-lid distances
over twice its corner-to-corner distance: about 0.3 open, under 0.15 closed, whatever the face's
size. The mouth aspect ratio is the sum of the three inner-lip distances (61-67, 62-66, 63-65) over
twice the inner mouth's width (60-64), as drowsiness and speech tools define it. "Right" is the
person's right eye (points 36-41), on the left of an upright, unmirrored picture.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from pipnet_core.base.scheme import INNER_LIP_CORNERS, INNER_LIP_LOWER, INNER_LIP_UPPER, LEFT_EYE, RIGHT_EYE

# A blink: the mean eye aspect ratio of both eyes this fraction below the track's open-eye level
# (its running median over BASELINE_SECONDS on each side). How well it finds the blinks of Face
# Mesh's eyelids, measured the same way: `pipnet bench-quality` (docs/results.md, Real video).
BLINK_DROP = 0.25
BASELINE_SECONDS = 1.0


def aspect_ratio(points: np.ndarray, six: tuple[int, ...]) -> float:
    corner_a, top_a, top_b, corner_b, bottom_b, bottom_a = (points[i] for i in six)
    width = float(np.linalg.norm(corner_b - corner_a))
    height = float(np.linalg.norm(top_a - bottom_a) + np.linalg.norm(top_b - bottom_b))
    return height / (2 * width) if width > 0 else 0.0


def eye_aspect_ratios(points: np.ndarray) -> tuple[float, float]:
    """(right, left) eye aspect ratios of one face's 68 points."""
    return aspect_ratio(points, RIGHT_EYE), aspect_ratio(points, LEFT_EYE)


def mouth_aspect_ratio(points: np.ndarray) -> float:
    """Inner-lip opening over mouth width: about 0 closed, 0.5 and more wide open."""
    p = points
    width = float(np.linalg.norm(p[INNER_LIP_CORNERS[1]] - p[INNER_LIP_CORNERS[0]]))
    # Added in the points' own precision, then made a float (as the tables have always had it).
    a, b, c = (np.linalg.norm(p[up] - p[down]) for up, down in zip(INNER_LIP_UPPER, INNER_LIP_LOWER))
    height = float(a + b + c)
    return height / (2 * width) if width > 0 else 0.0


@dataclass(frozen=True)
class Blink:
    face_id: int
    eye: str  # "both", "right" or "left" (a wink)
    start_frame: int
    end_frame: int  # the last frame with the eye(s) closing or closed
    start_time: float
    end_time: float
    min_ear: float  # the lowest eye aspect ratio during it (the mean of both eyes for "both")


def detect_blinks(
    face_id: int, frames: np.ndarray, times: np.ndarray, right: np.ndarray, left: np.ndarray
) -> list[Blink]:
    """Blinks in one track: runs of frames whose mean eye aspect ratio lies BLINK_DROP below the
    running open-eye level (one frame above it does not end a run). An eye whose own ratio never
    drops half as far is open: the other eye's event is a wink."""
    if len(frames) < 3:
        return []
    mean = (right + left) / 2
    starts = np.searchsorted(times, times - BASELINE_SECONDS, side="left")
    ends = np.searchsorted(times, times + BASELINE_SECONDS, side="right")

    def level(values):  # the running open-eye level
        return np.array([np.median(values[a:b]) for a, b in zip(starts, ends)])

    baseline, right_level, left_level = level(mean), level(right), level(left)
    closed = mean < baseline * (1 - BLINK_DROP)
    closed[1:-1] |= closed[:-2] & closed[2:]  # bridge one open frame inside a blink
    blinks = []
    start = None
    for i in range(len(closed) + 1):
        if i < len(closed) and closed[i]:
            start = i if start is None else start
            continue
        if start is None:
            continue
        span = slice(start, i)
        right_closed = (right[span] < right_level[span] * (1 - BLINK_DROP / 2)).any()
        left_closed = (left[span] < left_level[span] * (1 - BLINK_DROP / 2)).any()
        eye, ratios = (
            ("both", mean) if right_closed == left_closed else ("right", right) if right_closed else ("left", left)
        )
        blinks.append(
            Blink(
                face_id,
                eye,
                int(frames[start]),
                int(frames[i - 1]),
                float(times[start]),
                float(times[i - 1]),
                float(ratios[span].min()),
            )
        )
        start = None
    return blinks


class LiveBlinks:
    """Blink onsets as they happen, from the past alone (a live stream cannot wait for the frames
    after): a face's mean eye aspect ratio falling ``BLINK_DROP`` below its open-eye level, the
    median over the last two ``BASELINE_SECONDS`` (the span ``detect_blinks`` centres on a frame)."""

    MIN_HISTORY = 5  # frames before a face's open-eye level means anything

    def __init__(self):
        self._history: dict[int, deque[tuple[float, float]]] = {}
        self._closed: dict[int, bool] = {}

    def update(self, faces, timestamp: float) -> list[int]:
        """The ids of the faces (of one frame) whose eyes began to close in it."""
        onsets, seen = [], set()
        for face in faces:
            if not face.success:
                continue
            seen.add(face.id)
            ear = float(np.mean(eye_aspect_ratios(face.points)))
            history = self._history.setdefault(face.id, deque())
            while history and history[0][0] < timestamp - 2 * BASELINE_SECONDS:
                history.popleft()
            level = float(np.median([value for _, value in history])) if len(history) >= self.MIN_HISTORY else None
            closed = level is not None and ear < level * (1 - BLINK_DROP)
            if closed and not self._closed.get(face.id, False):
                onsets.append(face.id)
            self._closed[face.id] = closed
            history.append((timestamp, ear))
        for gone in set(self._history) - seen:  # a face lost: its level starts afresh if it returns
            del self._history[gone]
            self._closed.pop(gone, None)
        return onsets

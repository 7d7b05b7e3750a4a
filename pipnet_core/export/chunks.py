"""A video in chunks, for the cluster: the plan (chunks of frames, each starting early to warm its
tracker up), the piece a worker writes for a chunk (a `state_codec` file checked field by field on
reading), and the face ids of one chunk matched to the chunk's before on the frames they share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipnet_core.base.errors import PipnetError
from pipnet_core.base.records import Face, HeadPose
from pipnet_core.export.outputs import resume_settings
from pipnet_core.io.frames import VideoLayout
from pipnet_core.io.state_codec import (
    NUMBER,
    decode_state,
    float_array,
    from_plain,
    holds,
    optional,
    read_state_file,
    tuple_of,
)

DEFAULT_CHUNK_SECONDS = 60.0
# The warm-up that took every chunk of five of the six clips of ../shared/videos (5 s chunks) to
# the single-process run's points bit for bit; 2 s left one chunk start 2 px off for 20 frames.
DEFAULT_OVERLAP_SECONDS = 4.0
# Two faces are one when their points lie this close (mean distance over the larger box side).
SAME_FACE = 0.1
PIECE_KIND = "cluster chunk"


@dataclass(frozen=True)
class Chunk:
    warmup: int  # the first frame decoded: [warmup, first) warm the tracker and smoother up
    first: int  # the first frame this chunk writes
    end: int  # one past the last


@dataclass(frozen=True)
class VideoPlan:
    path: Path
    name: str
    header: dict
    layout: VideoLayout
    chunks: list[Chunk]
    mean_face: np.ndarray  # the model's, for offline smoothing in the merge

    @property
    def settings(self) -> dict:
        return resume_settings(self.header)

    def piece(self, out_dir: Path, number: int) -> Path:
        return out_dir / f"{self.name}.chunks" / f"{number:05d}.chunk"

    def frames(self, every: int) -> int:
        """How many frames a run processes and writes."""
        return len(range(0, len(self.layout.times), every))


@dataclass(frozen=True)
class ChunkDone:
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    error: str | None = None


def _faces(value) -> bool:
    return isinstance(value, list) and all(isinstance(face, Face) for face in value)


# What a chunk piece may hold besides plain values, and what their fields may hold.
PIECE_STATE = {
    Chunk: {"warmup": int, "first": int, "end": int},
    Face: {
        "id": int,
        "box": tuple_of(*[NUMBER] * 4),
        "score": NUMBER,
        "points": float_array(None, 2),
        "confidence": float_array(None),
        "pose": optional(HeadPose),
        "success": bool,
    },
    HeadPose: {
        "yaw": NUMBER,
        "pitch": NUMBER,
        "roll": NUMBER,
        "rotation": float_array(3, 3),
        "translation": float_array(3),
    },
}


# A piece: {"settings": dict, "chunk": Chunk, "frames": [(index, timestamp, faces)], "warmup": {index: faces}}.
_PIECE = {
    "settings": dict,
    "chunk": Chunk,
    "frames": lambda v: isinstance(v, list) and all(tuple_of(int, NUMBER, _faces)(frame) for frame in v),
    "warmup": lambda v: isinstance(v, dict) and all(isinstance(k, int) and _faces(f) for k, f in v.items()),
}


def plan_chunks(layout: VideoLayout, chunk_seconds: float, overlap_seconds: float) -> list[Chunk]:
    """Chunks of ``chunk_seconds`` of presentation time (the whole video for 0); each but the
    first decodes from ``overlap_seconds`` (at most a chunk) before its first frame, and at least
    one frame before it: the faces of that frame are how ids are matched."""
    count = len(layout.times)
    starts = [0]
    while chunk_seconds > 0 and (nxt := layout.first_at(layout.seconds(starts[-1]) + chunk_seconds)) < count:
        starts.append(max(nxt, starts[-1] + 1))
    overlap = min(overlap_seconds, chunk_seconds)
    return [
        Chunk(min(layout.first_at(max(layout.seconds(first) - overlap, 0.0)), first - 1) if first else 0, first, end)
        for first, end in zip(starts, starts[1:] + [count])
    ]


def match_ids(before: dict[int, list[Face]], warmup: dict[int, list[Face]]) -> dict[int, int]:
    """Which of a chunk's own face ids (in its warm-up frames) are which ids of the chunk before
    (on the same frames): pairs whose points lie within ``SAME_FACE`` on their median frame,
    closest first, each id used once."""
    distances: dict[tuple[int, int], list[float]] = {}
    for frame, faces in warmup.items():
        for new in (f for f in faces if f.success):
            for old in (f for f in before.get(frame, []) if f.success):
                scale = max(old.box[2], old.box[3], 1.0)
                gap = float(np.linalg.norm(new.points - old.points, axis=1).mean()) / scale
                distances.setdefault((new.id, old.id), []).append(gap)
    medians = sorted((float(np.median(gaps)), new, old) for (new, old), gaps in distances.items())
    matched: dict[int, int] = {}
    for gap, new, old in medians:
        if gap < SAME_FACE and new not in matched and old not in matched.values():
            matched[new] = old
    return matched


def read_piece(path: Path, plan: VideoPlan, chunk: Chunk) -> dict | None:
    """A finished chunk of this video and these settings; None when there is none, or when it is
    another plan's chunk (other --chunk-seconds): it runs again. A file that is not a piece of
    this program, or was made with other settings, is refused in one line."""
    data = read_state_file(path)
    if data is None:
        return None
    try:
        piece = from_plain(decode_state(data, PIECE_KIND, str(path)), PIECE_STATE)
    except ValueError:
        piece = None
    if (
        not isinstance(piece, dict)
        or set(piece) != set(_PIECE)
        or not all(holds(piece[k], kind) for k, kind in _PIECE.items())
    ):
        raise PipnetError(f"{path}: a damaged chunk piece; delete it, or run without --resume")
    if piece["settings"] != plan.settings:
        raise PipnetError(f"{path}: a chunk made with other settings; delete {path.parent}, or run without --resume")
    return piece if piece["chunk"] == chunk else None

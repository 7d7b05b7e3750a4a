"""`pipnet bench-quality`: the video pipeline on real videos, judged against MediaPipe Face Mesh.

Real clips carry no landmark labels, so Face Mesh (468 points, in mediapipe) is the reference on
the points both models place: the outer and inner eye corners, the nose tip, the mouth corners
and the chin. Per clip: frames with a face (ours, Face Mesh's), face-id changes, jitter (median
second difference of the stable points over the eye distance: a still head should give still
points), agreement (per-frame mean distance between the shared points over Face Mesh's outer
eye distance: median, 90th percentile, frames above 10%), and blinks: ours against those found
the same way on Face Mesh's eyelids (matched when they start within BLINK_TOLERANCE frames).
Turned heads: per bin of |yaw| (Face Mesh's own, from its 3D points), the inner 51 points (brows,
nose, eyes, mouth) against the Face Mesh vertices that mean them (MESH_FOR_68), over the size of
Face Mesh's face box, which unlike the eye distance holds in profile; a frame where Face Mesh has
a face and we have none counts as missed.
The worst frames are saved with both point sets drawn so a person can see who is wrong.
Smoothing as `pipnet annotate --smooth`: offline, live (the app's filter) or none.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from pipnet_core.base.records import FrameFaces
from pipnet_core.evaluation.evaluate import YAW_BINS
from pipnet_core.evaluation.face_mesh import FaceMesh, mesh_yaw
from pipnet_core.io.files import write_json
from pipnet_core.io.frames import iterate, open_source
from pipnet_core.offline.measures import aspect_ratio, detect_blinks
from pipnet_core.offline.tracks import Frames, blinks, smooth_offline
from pipnet_core.pipeline.landmarker import Landmarker
from pipnet_core.pipeline.smoothing import SmoothingParams

# (ours, Face Mesh) index pairs for the same anatomical point.
SHARED_POINTS = ((36, 33), (39, 133), (42, 362), (45, 263), (30, 4), (48, 61), (54, 291), (8, 152))
# Face Mesh's six points of each eye in the order of scheme.RIGHT_EYE / LEFT_EYE.
MESH_EYES = ((33, 160, 158, 133, 153, 144), (362, 385, 387, 263, 373, 380))
# (ours, Face Mesh) for the inner 51 points: the vertex nearest each label on 829 frontal HELEN and
# AFW training faces, `tools/derive_mesh_table.py ../shared/data/300w_subset/helen/trainset
# ../shared/data/300w_subset/afw` (mean residual 3.6% of the eye distance; brows 4.5-7%, their
# conventions differ most).
MESH_FOR_68 = (
    (17, 70), (18, 63), (19, 105), (20, 66), (21, 107), (22, 336), (23, 296), (24, 334), (25, 293), (26, 300),
    (27, 168), (28, 197), (29, 195), (30, 4), (31, 240), (32, 97), (33, 2), (34, 326), (35, 460), (36, 33),
    (37, 160), (38, 158), (39, 155), (40, 153), (41, 144), (42, 382), (43, 385), (44, 387), (45, 466), (46, 373),
    (47, 380), (48, 61), (49, 39), (50, 37), (51, 0), (52, 267), (53, 269), (54, 291), (55, 405), (56, 314),
    (57, 17), (58, 84), (59, 181), (60, 62), (61, 38), (62, 13), (63, 268), (64, 308), (65, 317), (66, 14),
    (67, 87),
)  # fmt: skip
BLINK_TOLERANCE = 2  # frames
STABLE = (0, 1, 2, 3, 4)  # eye corners and nose tip: they move with the head, not with expressions
GROSS = 0.10  # disagreement above this (fraction of the eye distance) is a gross failure of one model


@dataclass
class ClipQuality:
    clip: str
    frames: int
    ours_found: int
    mesh_found: int
    id_changes: int
    ids: int
    jitter_ours: float
    jitter_mesh: float
    agreement_median: float
    agreement_p90: float
    gross_frames: int
    blinks_ours: int = 0
    blinks_mesh: int = 0
    blinks_matched: int = 0
    worst: list[tuple[int, float]] = field(default_factory=list)  # (frame, disagreement)
    # Per frame Face Mesh has a face: (its yaw, our inner-51 disagreement over its box; nan: we have none).
    turned: list[tuple[float, float]] = field(default_factory=list)

    @property
    def jitter_ratio(self) -> float:
        return self.jitter_ours / self.jitter_mesh if self.jitter_mesh else float("nan")

    @property
    def blink_f1(self) -> float:
        """F1 of our blinks against Face Mesh's; nan when neither has any."""
        total = self.blinks_ours + self.blinks_mesh
        return 2 * self.blinks_matched / total if total else float("nan")

    def row(self) -> str:
        return (
            f"| {self.clip} | {self.frames} | {self.ours_found} / {self.mesh_found} | {self.ids} ({self.id_changes}) | "
            f"{100 * self.jitter_ours:.2f} / {100 * self.jitter_mesh:.2f} ({self.jitter_ratio:.2f}x) | "
            f"{100 * self.agreement_median:.1f} / {100 * self.agreement_p90:.1f} | {self.gross_frames} | "
            f"{self.blinks_ours} / {self.blinks_mesh} ({self.blinks_matched}) {self.blink_f1:.2f} |"
        )


TABLE_HEADER = (
    "| clip | frames | frames with a face: ours / Face Mesh | face ids (id changes) | "
    "jitter % ours / Face Mesh (ratio) | agreement % median / p90 | frames > 10% | "
    "blinks ours / Face Mesh (matched) F1 |\n"
    "|---|---|---|---|---|---|---|---|"
)


# What the measures read of Face Mesh, in this order: the shared points, then MESH_EYES.
MESH_POINTS = [m for _, m in SHARED_POINTS] + [m for eye in MESH_EYES for m in eye]


class MeshView(NamedTuple):
    """What one frame's Face Mesh gives the measures."""

    marks: np.ndarray  # MESH_POINTS, (len, 2) frame pixels
    inner: np.ndarray  # the vertices of MESH_FOR_68, (51, 2)
    yaw: float  # degrees, mesh_yaw
    box: float  # the square root of its 468 points' box area, pixels


def mesh_view(meshes: list[np.ndarray]) -> MeshView | None:
    if not meshes:
        return None
    mesh = meshes[0]
    width, height = np.ptp(mesh[:, :2], axis=0)
    return MeshView(
        mesh[MESH_POINTS, :2].astype(np.float32),
        mesh[[m for _, m in MESH_FOR_68], :2],
        mesh_yaw(mesh),
        float(np.sqrt(width * height)),
    )


def yaw_bins(turned: list[tuple[float, float]]) -> list[dict]:
    """Per bin of |yaw|: Face Mesh's frames, those we missed, and the median and 90th percentile
    of the inner-51 disagreement over the face box of the frames we have."""
    pairs = np.array(turned, np.float64).reshape(-1, 2)
    rows = []
    for low, high in YAW_BINS:
        size = np.abs(pairs[:, 0])
        errors = pairs[(size >= low) & ((size < high) | (high == YAW_BINS[-1][1])), 1]
        found = errors[np.isfinite(errors)]
        rows.append(
            {
                "bin": f"{low:g}-{high:g}",
                "frames": len(errors),
                "missed": int(len(errors) - len(found)),
                "median": float(np.median(found)) if len(found) else float("nan"),
                "p90": float(np.percentile(found, 90)) if len(found) else float("nan"),
            }
        )
    return rows


def second_difference_jitter(tracks: list[np.ndarray | None], eye_distances: list[float]) -> float:
    """Median |p[t+1] - 2 p[t] + p[t-1]| of the stable points over the eye distance, over runs of
    three consecutive frames that all have points."""
    values = []
    for t in range(1, len(tracks) - 1):
        a, b, c = tracks[t - 1], tracks[t], tracks[t + 1]
        if a is None or b is None or c is None:
            continue
        second = np.linalg.norm(c[list(STABLE)] - 2 * b[list(STABLE)] + a[list(STABLE)], axis=1)
        values.append(np.median(second) / eye_distances[t])
    return float(np.median(values)) if values else float("nan")


def measure_clip(
    path: Path, landmarker: Landmarker, smoothing: str = "live", worst_count: int = 3, out_dir: Path | None = None
) -> ClipQuality:
    """Run our video pipeline and Face Mesh over every frame of one clip."""
    landmarker.reset(restart_ids=True)
    landmarker.set_smoothing(SmoothingParams() if smoothing == "live" else None)
    source = open_source(path)
    reference = None
    frames: Frames = []
    views: list[MeshView | None] = []
    try:
        reference = FaceMesh(max_faces=1)
        for frame in iterate(source):
            frames.append(FrameFaces(frame.index, frame.timestamp, landmarker.process(frame.image, frame.timestamp)))
            views.append(mesh_view(reference.meshes_3d(frame.image)))
            size = frame.image.shape[1::-1]
    finally:
        source.close()
        if reference is not None:
            reference.close()
    if smoothing == "offline" and frames:
        frames = smooth_offline(frames, landmarker.model.info.codec.mean_face, landmarker.camera(size))
    mesh_marks = [view.marks if view is not None else None for view in views]
    quality = summarise(path.name, frames, mesh_marks, worst_count)
    quality.turned = turned_agreement(frames, views)
    if out_dir is not None:
        save_worst_frames(out_dir, path, frames, mesh_marks, quality.worst)
    return quality


def turned_agreement(frames: Frames, views: list[MeshView | None]) -> list[tuple[float, float]]:
    """(Face Mesh's yaw, our inner-51 disagreement over its face box) for each frame it has a face."""
    ours = [m for m, _ in MESH_FOR_68]
    pairs = []
    for (_, _, faces), view in zip(frames, views):
        if view is None:
            continue
        face = _best(faces)
        error = np.nan if face is None else np.linalg.norm(face.points[ours] - view.inner, axis=1).mean() / view.box
        pairs.append((view.yaw, float(error)))
    return pairs


def _best(faces):
    found = [face for face in faces if face.success]
    return max(found, key=lambda face: face.mean_confidence) if found else None


def mesh_blinks(frames: Frames, mesh_marks: list[np.ndarray | None]) -> list:
    """Blinks of Face Mesh's eyelids, found as ours are, over each run of frames it has a face."""
    eyes = [tuple(range(len(SHARED_POINTS) + 6 * e, len(SHARED_POINTS) + 6 * e + 6)) for e in (0, 1)]
    runs, run = [], []
    for (index, timestamp, _), marks in zip(frames, mesh_marks):
        if marks is None:
            runs.append(run)
            run = []
        else:
            run.append((index, timestamp, aspect_ratio(marks, eyes[0]), aspect_ratio(marks, eyes[1])))
    found = []
    for columns in (np.array(run) for run in runs + [run] if run):
        found += detect_blinks(0, columns[:, 0], columns[:, 1], columns[:, 2], columns[:, 3])
    return found


def matched_events(ours: list, theirs: list, tolerance: int = BLINK_TOLERANCE) -> int:
    """Pairs of events starting within ``tolerance`` frames of each other, each used once."""
    free = sorted(blink.start_frame for blink in theirs)
    matched = 0
    for blink in sorted(ours, key=lambda b: b.start_frame):
        near = [start for start in free if abs(start - blink.start_frame) <= tolerance]
        if near:
            free.remove(min(near, key=lambda start: abs(start - blink.start_frame)))
            matched += 1
    return matched


def summarise(name: str, frames: Frames, mesh_marks: list[np.ndarray | None], worst_count: int) -> ClipQuality:
    shared = len(SHARED_POINTS)
    best = [_best(faces) for _, _, faces in frames]
    ours_pts = [face.points[[o for o, _ in SHARED_POINTS]] if face is not None else None for face in best]
    mesh_pts = [marks[:shared] if marks is not None else None for marks in mesh_marks]
    eye = [
        float(np.linalg.norm(m[3] - m[0]))
        if m is not None
        else float(np.linalg.norm(o[3] - o[0]))
        if o is not None
        else 1.0
        for o, m in zip(ours_pts, mesh_pts)
    ]
    agree = np.array(
        [
            float(np.linalg.norm(o - m, axis=1).mean() / e) if o is not None and m is not None else np.nan
            for o, m, e in zip(ours_pts, mesh_pts, eye)
        ]
    )
    valid = agree[np.isfinite(agree)]
    present = [face.id for face in best if face is not None]
    changes = sum(a != b for a, b in zip(present, present[1:]))
    order = np.argsort(np.where(np.isfinite(agree), -agree, np.inf))[:worst_count]
    ours_blinks, theirs = blinks(frames), mesh_blinks(frames, mesh_marks)
    return ClipQuality(
        name,
        len(frames),
        len(present),
        sum(m is not None for m in mesh_pts),
        changes,
        len(set(present)),
        second_difference_jitter(ours_pts, eye),
        second_difference_jitter(mesh_pts, eye),
        float(np.median(valid)) if len(valid) else float("nan"),
        float(np.percentile(valid, 90)) if len(valid) else float("nan"),
        int((valid > GROSS).sum()),
        len(ours_blinks),
        len(theirs),
        matched_events(ours_blinks, theirs),
        [(int(frames[i][0]), float(agree[i])) for i in order if np.isfinite(agree[i])],
    )


def save_worst_frames(
    out_dir: Path, path: Path, frames: Frames, mesh_marks: list, worst: list[tuple[int, float]]
) -> None:
    """Each worst frame with our 68 points (green, shared ones ringed) and Face Mesh's (red)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = {index: value for index, value in worst}
    position = {index: i for i, (index, _, _) in enumerate(frames)}
    source = open_source(path)
    try:
        for frame in iterate(source):
            if frame.index not in wanted:
                continue
            i = position[frame.index]
            face, mesh = _best(frames[i][2]), mesh_marks[i]
            canvas = frame.image.copy()
            if face is not None:
                for k, (x, y) in enumerate(face.points):
                    cv2.circle(
                        canvas, (int(round(x)), int(round(y))), 4 if k in dict(SHARED_POINTS) else 2, (0, 220, 0), -1
                    )
            if mesh is not None:
                for x, y in mesh[: len(SHARED_POINTS)]:
                    cv2.drawMarker(canvas, (int(round(x)), int(round(y))), (0, 0, 255), cv2.MARKER_CROSS, 10, 2)
            cv2.putText(
                canvas,
                f"frame {frame.index}: {100 * wanted[frame.index]:.1f}% (green ours, red Face Mesh)",
                (8, 22),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.55,
                (255, 255, 255),
                2,
                cv2.LINE_AA,
            )
            cv2.imwrite(str(out_dir / f"{path.stem}_frame{frame.index:05d}.png"), canvas)
    finally:
        source.close()


def write_report(path: Path, results: list[ClipQuality]) -> None:
    """quality.json: every clip's measures (written whole, as every JSON output)."""
    rows = []
    for result in results:
        row = {**asdict(result), "jitter_ratio": result.jitter_ratio, "blink_f1": result.blink_f1}
        row["by_yaw"] = yaw_bins(row.pop("turned"))
        rows.append(row)
    write_json(path, rows)

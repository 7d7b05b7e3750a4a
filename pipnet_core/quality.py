"""`pipnet bench-quality`: the live pipeline on real videos, judged against MediaPipe Face Mesh.

Real clips carry no landmark labels, so Face Mesh (468 points, in mediapipe) is the reference on
the points both models place: the outer and inner eye corners, the nose tip, the mouth corners
and the chin. Per clip: frames with a face (ours, Face Mesh's), face-id changes, jitter (median
second difference of the stable points over the eye distance: a still head should give still
points), and agreement (per-frame mean distance between the shared points over Face Mesh's outer
eye distance: median, 90th percentile, frames above 10%). The worst frames are saved with both
point sets drawn so a person can see who is wrong.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .frames import iterate, open_source
from .landmarker import Landmarker

# (ours, Face Mesh) index pairs for the same anatomical point.
SHARED_POINTS = ((36, 33), (39, 133), (42, 362), (45, 263), (30, 4), (48, 61), (54, 291), (8, 152))
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
    worst: list[tuple[int, float]] = field(default_factory=list)  # (frame, disagreement)

    @property
    def jitter_ratio(self) -> float:
        return self.jitter_ours / self.jitter_mesh if self.jitter_mesh else float("nan")

    def row(self) -> str:
        return (f"| {self.clip} | {self.frames} | {self.ours_found} / {self.mesh_found} | {self.ids} ({self.id_changes}) | "
                f"{100 * self.jitter_ours:.2f} / {100 * self.jitter_mesh:.2f} ({self.jitter_ratio:.2f}x) | "
                f"{100 * self.agreement_median:.1f} / {100 * self.agreement_p90:.1f} | {self.gross_frames} |")


TABLE_HEADER = ("| clip | frames | frames with a face: ours / Face Mesh | face ids (id changes) | "
                "jitter % ours / Face Mesh (ratio) | agreement % median / p90 | frames > 10% |\n"
                "|---|---|---|---|---|---|---|")


class FaceMeshReference:
    """Face Mesh in video mode, one face; shared points in frame pixels, or None."""

    def __init__(self):
        from .mediapipe_reference import face_mesh

        self.mesh = face_mesh(max_faces=1)

    def points(self, frame: np.ndarray) -> np.ndarray | None:
        result = self.mesh.process(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        if not result.multi_face_landmarks:
            return None
        height, width = frame.shape[:2]
        marks = result.multi_face_landmarks[0].landmark
        return np.array([[marks[m].x * width, marks[m].y * height] for _, m in SHARED_POINTS], np.float32)

    def close(self) -> None:
        self.mesh.close()


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


def measure_clip(path: Path, landmarker: Landmarker, worst_count: int = 3,
                 out_dir: Path | None = None) -> ClipQuality:
    """Run our video pipeline and Face Mesh over every frame of one clip."""
    reference = FaceMeshReference()
    landmarker.reset()
    source = open_source(path)
    ours_pts, mesh_pts, eye, disagreement, face_ids = [], [], [], [], []
    worst_frames: list[tuple[float, int, np.ndarray, object, np.ndarray]] = []  # only the worst_count so far
    for frame in iterate(source):
        faces = [f for f in landmarker.process(frame.image, frame.timestamp) if f.success]
        mesh = reference.points(frame.image)
        best = max(faces, key=lambda f: f.mean_confidence) if faces else None
        ours = best.points[[o for o, _ in SHARED_POINTS]] if best is not None else None
        face_ids.append(best.id if best is not None else None)
        ours_pts.append(ours)
        mesh_pts.append(mesh)
        eye.append(float(np.linalg.norm(mesh[3] - mesh[0])) if mesh is not None else
                   float(np.linalg.norm(ours[3] - ours[0])) if ours is not None else 1.0)
        disagreement.append(float(np.linalg.norm(ours - mesh, axis=1).mean() / eye[-1])
                            if ours is not None and mesh is not None else np.nan)
        if out_dir is not None and np.isfinite(disagreement[-1]):
            worst_frames.append((disagreement[-1], frame.index, frame.image, best, mesh))
            worst_frames = sorted(worst_frames, key=lambda w: -w[0])[:worst_count]
    source.close()
    reference.close()
    quality = summarise(path.name, ours_pts, mesh_pts, eye, disagreement, face_ids, worst_count)
    if out_dir is not None:
        save_worst_frames(out_dir, path.stem, worst_frames)
    return quality


def summarise(name, ours_pts, mesh_pts, eye, disagreement, face_ids, worst_count) -> ClipQuality:
    agree = np.array(disagreement)
    valid = agree[np.isfinite(agree)]
    present = [i for i in face_ids if i is not None]
    changes = sum(a != b for a, b in zip(present, present[1:]))
    order = np.argsort(np.where(np.isfinite(agree), -agree, np.inf))[:worst_count]
    return ClipQuality(
        name, len(face_ids), len(present), sum(m is not None for m in mesh_pts), changes, len(set(present)),
        second_difference_jitter(ours_pts, eye), second_difference_jitter(mesh_pts, eye),
        float(np.median(valid)) if len(valid) else float("nan"),
        float(np.percentile(valid, 90)) if len(valid) else float("nan"), int((valid > GROSS).sum()),
        [(int(i), float(agree[i])) for i in order if np.isfinite(agree[i])])


def save_worst_frames(out_dir: Path, stem: str, worst_frames: list) -> None:
    """Each worst frame with our 68 points (green, shared ones ringed) and Face Mesh's (red)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for value, index, image, face, mesh in worst_frames:
        canvas = image.copy()
        if face is not None:
            for i, (x, y) in enumerate(face.points):
                cv2.circle(canvas, (int(round(x)), int(round(y))), 4 if i in dict(SHARED_POINTS) else 2, (0, 220, 0), -1)
        if mesh is not None:
            for x, y in mesh:
                cv2.drawMarker(canvas, (int(round(x)), int(round(y))), (0, 0, 255), cv2.MARKER_CROSS, 10, 2)
        cv2.putText(canvas, f"frame {index}: {100 * value:.1f}% (green ours, red Face Mesh)", (8, 22),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 2, cv2.LINE_AA)
        cv2.imwrite(str(out_dir / f"{stem}_frame{index:05d}.png"), canvas)


def write_json(path: Path, results: list[ClipQuality]) -> None:
    path.write_text(json.dumps([{**asdict(r), "jitter_ratio": r.jitter_ratio} for r in results], indent=1))

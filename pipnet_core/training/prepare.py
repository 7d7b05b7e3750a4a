"""`pipnet prepare-data`: labelled folders turned into turned-face folders (training/turning.py).

Each input face gives ``per_face`` turned copies, written as a 300-W folder (``NAME_tK.jpg`` and
``NAME_tK.pts``) that training configs and `pipnet eval` read like any other, and ``turns.csv``
(what each copy is: its source, how it was lifted, the face's own yaw, the turn, the yaw it ends
at). Seeded: the same inputs give the same folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipnet_core.base.crop import CropBox
from pipnet_core.io.files import write_file, write_image
from pipnet_core.io.images import load_image
from pipnet_core.io.labels import TURNS_FILE, Sample, write_pts
from pipnet_core.training.turning import lift, turn

TURNS_COLUMNS = ["image", "source", "lifted_by", "own_yaw", "turn_yaw", "turn_pitch", "yaw", "eye_distance", "purpose"]
MAX_YAW = 90.0  # a turn never takes a face past profile
FRONTAL = 5.0  # degrees of yaw within which a face is turned either way


@dataclass(frozen=True)
class TurnPlan:
    per_face: int = 2
    yaw_range: tuple[float, float] = (15.0, 75.0)  # how far from frontal each copy ends, degrees
    stratify: bool = False  # one copy in each of per_face equal parts of yaw_range (for evaluation bins)
    pitch: float = 10.0  # at most this much pitch, either way
    seed: int = 0
    purpose: str = "training"  # or "evaluation": training refuses such a folder (training/sources.py)


def target_yaws(plan: TurnPlan, rng: np.random.Generator, own_yaw: float) -> list[float]:
    """The yaw each copy of a face ends at. Towards the side the face already looks to (either side
    for a face within ``FRONTAL`` of frontal): a turn can squeeze the cheek it turns away, but a
    cheek the picture barely shows cannot be widened without inventing it."""
    low, high = plan.yaw_range
    if plan.stratify:
        edges = np.linspace(low, high, plan.per_face + 1)
        sizes = [rng.uniform(a, b) for a, b in zip(edges[:-1], edges[1:])]
    else:
        sizes = rng.uniform(low, high, plan.per_face).tolist()
    sides = [np.sign(own_yaw) if abs(own_yaw) > FRONTAL else rng.choice((-1.0, 1.0)) for _ in sizes]
    # Never back towards frontal (that widens the hidden cheek too): a face already further turned
    # than a copy's size keeps its own yaw, and that copy lands in the bin of its own yaw.
    return [float(side * min(max(size, abs(own_yaw)), MAX_YAW)) for size, side in zip(sizes, sides)]


def prepare_turned(
    samples: list[Sample], out: Path, plan: TurnPlan, progress: Callable[[int, int], None] | None = None
) -> dict[str, int]:
    """Turned copies of every sample in ``out``; counts of faces lifted by Face Mesh and by the generic face."""
    from pipnet_core.evaluation.face_mesh import FaceMesh

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(plan.seed)
    rows, lifted = [], {"face mesh": 0, "generic face": 0}
    with FaceMesh(max_faces=4, stills=True) as mesh:
        for number, sample in enumerate(samples, start=1):
            image = load_image(sample.image_path)
            face = lift(image, sample.points, _matching_mesh(mesh.meshes_3d(image), sample.points))
            lifted[face.lifted_by] += 1
            for copy, target in enumerate(target_yaws(plan, rng, face.yaw)):
                turn_yaw = target - face.yaw
                turn_pitch = float(rng.uniform(-plan.pitch, plan.pitch))
                turned, labels = turn(face, turn_yaw, turn_pitch)
                name = f"{sample.image_path.stem}_t{copy}"
                write_image(out / f"{name}.jpg", turned)
                write_pts(out / f"{name}.pts", labels)
                rows.append(
                    [f"{name}.jpg", str(sample.image_path.resolve()), face.lifted_by, f"{face.yaw:.2f}", f"{turn_yaw:.2f}",
                     f"{turn_pitch:.2f}", f"{face.yaw + turn_yaw:.2f}", f"{face.eye_distance:.2f}", plan.purpose]
                )  # fmt: skip
            if progress:
                progress(number, len(samples))
    lines = [",".join(TURNS_COLUMNS)] + [",".join(row) for row in rows]
    write_file(out / TURNS_FILE, ("\n".join(lines) + "\n").encode())
    return lifted


def _matching_mesh(meshes: list[np.ndarray], points: np.ndarray) -> np.ndarray | None:
    """The Face Mesh face that is the labelled one (its box overlaps the labels' by half), if any."""
    labelled = CropBox.around_points(points, 1.0)
    overlaps = [CropBox.around_points(m[:, :2], 1.0).iou(labelled) for m in meshes]
    return meshes[int(np.argmax(overlaps))] if overlaps and max(overlaps) >= 0.5 else None

"""Test data made by the tests: a symmetric 68-point face template, drawn faces, real photos."""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipnet_core.base.crop import invert, transform_points
from pipnet_core.model.codec import GridOutputs
from pipnet_core.model.interface import METADATA_KEY, LandmarkModel, ModelInfo

REPO = Path(__file__).resolve().parent.parent
# The developers' real data and clips, beside the checkout; a user's clone has none.
SHARED = Path(os.environ.get("PIPNET_SHARED", REPO.parent / "shared"))
SHARED_DATA = Path(os.environ.get("PIPNET_SHARED_DATA", SHARED / "data"))
SHARED_VIDEOS = SHARED / "videos"


def needs(path: Path):
    """Skip a test whose real data is absent, saying which."""
    return pytest.mark.skipif(
        not path.exists(), reason=f"{path} is not present (../shared is on the developers' machines only)"
    )


def write_grey_video(path: Path, frames: int, size: tuple[int, int] = (320, 240)) -> Path:
    """A video of flat grey frames: no face anywhere (Motion JPEG in an .avi)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, size)
    for _ in range(frames):
        writer.write(np.full((size[1], size[0], 3), 90, np.uint8))
    writer.release()
    return path


def _arc(cx, cy, rx, ry, start_deg, end_deg, n):
    t = np.deg2rad(np.linspace(start_deg, end_deg, n))
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _eye(cx, cy):
    # 300-W order: left corner, two upper lid points, right corner, two lower lid points.
    return np.array(
        [[cx - 12, cy], [cx - 4, cy - 5], [cx + 4, cy - 5], [cx + 12, cy], [cx + 4, cy + 5], [cx - 4, cy + 5]]
    )


def template_points() -> np.ndarray:
    """A left-right symmetric 68-point face in the 300-W order, centred on x = 0, about 140 px wide."""
    jaw = _arc(0, 0, 70, 80, 180, 0, 17)  # through the chin (y grows downwards)
    brow_r = _arc(-35, -35, 22, 8, 180, 360, 5)
    brow_l = _arc(35, -35, 22, 8, 180, 360, 5)
    bridge = np.stack([np.zeros(4), np.linspace(-20, 15, 4)], axis=1)
    nostrils = np.stack([np.linspace(-14, 14, 5), [22, 24, 25, 24, 22]], axis=1)
    eye_r = _eye(-30, -15)
    eye_l = _eye(30, -15)
    mouth_top = np.stack([np.linspace(-30, 30, 7), [45, 40, 38, 39, 38, 40, 45]], axis=1)
    mouth_bottom = np.stack([np.linspace(20, -20, 5), [52, 56, 57, 56, 52]], axis=1)
    inner_top = np.stack([np.linspace(-22, 22, 5), [45, 43, 43, 43, 45]], axis=1)
    inner_bottom = np.stack([np.linspace(11, -11, 3), [48, 49, 48]], axis=1)
    points = np.concatenate(
        [jaw, brow_r, brow_l, bridge, nostrils, eye_r, eye_l, mouth_top, mouth_bottom, inner_top, inner_bottom]
    )
    assert points.shape == (68, 2)
    return points.astype(np.float32)


def varied_shape(rng: np.random.Generator) -> np.ndarray:
    """The template with its own expression and build: mouth opening, raised brows, jaw width, and
    the inner features shifted sideways (a turned head). The mean face misses these by several %."""
    points = template_points()
    points[57:60, 1] += rng.uniform(0, 14)  # lower lip drops as the mouth opens
    points[65:68, 1] += rng.uniform(0, 10)
    points[17:27, 1] -= rng.uniform(0, 10)  # brows
    points[:17, 0] *= rng.uniform(0.85, 1.15)  # jaw width
    points[17:, 0] += rng.uniform(-10, 10)  # inner features sideways
    return points


def drawn_face(rng: np.random.Generator, size: int = 256, vary_shape: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A cartoon face at a random pose on a noisy background, with its 68 points."""
    scale = rng.uniform(0.8, 1.1) * size / 320
    angle = np.deg2rad(rng.uniform(-15, 15))
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = size / 2 + rng.uniform(-0.08, 0.08, size=2) * size
    shape = varied_shape(rng) if vary_shape else template_points()
    points = (shape @ rot.T + centre).astype(np.float32)
    image = rng.integers(40, 90, size=(size, size, 3), dtype=np.uint8)
    cv2.fillPoly(image, [np.round(np.concatenate([points[:17], points[26:16:-1]])).astype(np.int32)], (150, 180, 210))
    from pipnet_core.base.scheme import CONTOURS

    for _, idx, closed in CONTOURS:
        cv2.polylines(image, [np.round(points[list(idx)]).astype(np.int32)], closed, (30, 30, 120), 2, cv2.LINE_AA)
    return image, points


def write_drawn_faces(folder: Path, count: int, size: int, seed: int) -> Path:
    """A 300-W folder (NAME.png + NAME.pts) of ``count`` drawn faces of varied shape."""
    from pipnet_core.io.labels import write_pts

    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(count):
        image, points = drawn_face(rng, size=size, vary_shape=True)
        cv2.imwrite(str(folder / f"{i}.png"), image)
        write_pts(folder / f"{i}.pts", points)
    return folder


class MeanFaceModel(LandmarkModel):
    """A stand-in landmark model: outputs whose decode is the codec's mean face with full
    confidence, whatever the crop (the plausible wrong answer for accuracy and tracking tests)."""

    def __init__(self, info):
        self.info = info
        self._maps = _mean_face_maps(info)  # encoded once: the same for every crop

    def grid_outputs(self, batch):
        return GridOutputs(*(np.repeat(m[None], len(batch), axis=0) for m in self._maps))


def _mean_face_maps(info: ModelInfo) -> list[np.ndarray]:
    """The five maps whose decode is the mean face with full confidence, in GridOutputs' order."""
    maps = info.codec.encode(info.codec.mean_face)
    return [getattr(maps, field.name) for field in dataclasses.fields(GridOutputs)]


def write_mean_face_onnx(path: Path, info: ModelInfo) -> Path:
    """MeanFaceModel as a model file, for tests that go through the command line: whatever the crops,
    the five maps of the mean face, under ``info``'s metadata (a file that loads like ours)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Shape", ["crops"], ["batch"], start=0, end=1)]
    constants, outputs = [], []
    for field, mean_map in zip(dataclasses.fields(GridOutputs), _mean_face_maps(info)):
        value = mean_map[None]
        constants += [
            numpy_helper.from_array(value, f"{field.name}_mean"),
            numpy_helper.from_array(np.array(value.shape[1:], np.int64), f"{field.name}_cells"),
        ]
        nodes += [
            helper.make_node("Concat", ["batch", f"{field.name}_cells"], [f"{field.name}_shape"], axis=0),
            helper.make_node("Expand", [f"{field.name}_mean", f"{field.name}_shape"], [field.name]),
        ]
        outputs.append(helper.make_tensor_value_info(field.name, TensorProto.FLOAT, ["batch", *value.shape[1:]]))
    crops = helper.make_tensor_value_info("crops", TensorProto.FLOAT, ["batch", 3, info.input_size, info.input_size])
    model = helper.make_model(
        helper.make_graph(nodes, "mean_face", [crops], outputs, constants),
        opset_imports=[helper.make_opsetid("", 17)],
        ir_version=8,
    )
    helper.set_model_props(model, {METADATA_KEY: info.to_json()})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


# The standing negative control: MeanFaceModel above. Accuracy is judged against points no model
# of ours placed: MediaPipe Face Mesh's on the astronaut photo, at the 8 anatomical points both
# schemes share (outer and inner eye corners, nose tip, mouth corners, chin).
def _shared():
    from pipnet_core.evaluation.quality import SHARED_POINTS

    return [ours for ours, _ in SHARED_POINTS]


@functools.cache
def astronaut_reference() -> np.ndarray:
    """Face Mesh's 8 shared points on the astronaut photo, (8, 2) pixels."""
    pytest.importorskip("mediapipe")
    from pipnet_core.evaluation.face_mesh import FaceMesh
    from pipnet_core.evaluation.quality import SHARED_POINTS
    from pipnet_core.io.sample_clip import face_photo

    with FaceMesh() as mesh:
        return mesh.points(face_photo(), [m for _, m in SHARED_POINTS])


def shared_points(points: np.ndarray) -> np.ndarray:
    """The 8 of 68 points (..., 68, 2) that Face Mesh's scheme shares, in the reference's order."""
    return np.asarray(points)[..., _shared(), :]


def _eye_distance(reference: np.ndarray) -> float:
    """The reference's outer-eye distance (its points 0 and 3), what errors are measured in."""
    return float(np.linalg.norm(reference[3] - reference[0]))


def reference_error(points: np.ndarray, reference: np.ndarray) -> float:
    """Mean distance of 68 points' shared ones from the 8 reference points, over the reference's
    outer-eye distance (NME on the shared points)."""
    return float(np.linalg.norm(shared_points(points) - reference, axis=1).mean()) / _eye_distance(reference)


def moved_reference(matrices) -> np.ndarray:
    """The astronaut's reference points where each frame shows the photo (photo->frame 2x3
    matrices): the truth of a clip made by moving the photo, (frames, 8, 2)."""
    reference = astronaut_reference()
    return np.stack([transform_points(reference, np.asarray(m)) for m in matrices])


def in_photo(points: np.ndarray, matrices) -> np.ndarray:
    """Each frame's points (frames, N, 2) taken back into the photo's pixels through that frame's
    photo->frame 2x3 matrix."""
    return np.stack(
        [
            transform_points(np.asarray(p, np.float64), invert(np.asarray(m, np.float64)))
            for p, m in zip(points, matrices)
        ]
    )


def motion_errors(points: np.ndarray, matrices) -> np.ndarray:
    """Per frame of a clip made by moving the photo: the mean distance of the 68 points, taken back
    into the photo, from the track's own mean shape there, over the reference's eye distance. The
    face does not move in the photo, so what does is the tracking's noise and lag, free of the
    fixed difference between our scheme and Face Mesh's (which ``reference_errors`` bounds)."""
    still = in_photo(points, matrices)
    return np.linalg.norm(still - still.mean(axis=0), axis=-1).mean(axis=1) / _eye_distance(astronaut_reference())


def reference_errors(points: np.ndarray, references: np.ndarray) -> np.ndarray:
    """``reference_error`` of each frame's points (frames, 68, 2) against its reference points."""
    return np.array([reference_error(p, r) for p, r in zip(points, references)])

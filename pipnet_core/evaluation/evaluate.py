"""`pipnet eval`: NME / FR / AUC of a checkpoint or an ONNX model on a labeled folder or CSV."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipnet_core.base.crop import CropBox, crop_matrix, transform_points
from pipnet_core.base.errors import PipnetError
from pipnet_core.base.scheme import LEFT_EYE_OUTER, RIGHT_EYE_OUTER
from pipnet_core.evaluation.metrics import auc, ced, failure_rate, point_errors
from pipnet_core.io.files import write_json
from pipnet_core.io.images import load_image
from pipnet_core.io.labels import Sample, TurnedFace
from pipnet_core.model.interface import LandmarkModel

FAILURE_THRESHOLD = 0.10

# Where a face's crop comes from: (image, sample) -> frame->crop matrix, or None if no face found.
CropFinder = Callable[[np.ndarray, Sample], "np.ndarray | None"]
# A view turns a labeled picture into one a camera might show: (image, points) -> (image, points).
View = Callable[[np.ndarray, np.ndarray], "tuple[np.ndarray, np.ndarray]"]
BACKGROUND = (114, 114, 114)  # the grey that padding and pasted-into frames are filled with


def rotated_view(degrees: float) -> View:
    """The whole picture turned clockwise on screen by ``degrees`` about its centre, on a canvas
    just large enough that nothing is cut."""

    def view(image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        height, width = image.shape[:2]
        matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), -degrees, 1.0)
        cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
        size = (int(np.ceil(width * cos + height * sin)), int(np.ceil(width * sin + height * cos)))
        matrix[:, 2] += ((size[0] - width) / 2, (size[1] - height) / 2)
        turned = cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR, borderValue=BACKGROUND)
        return turned, transform_points(points, matrix).astype(np.float32)

    return view


def small_face_view(face_height: float, frame_size: tuple[int, int] = (1280, 720)) -> View:
    """The picture scaled so the face's landmark box is ``face_height`` pixels tall and pasted
    into a grey frame (default 1280x720), the face a little off centre as in a room shot."""

    def view(image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scale = face_height / float(np.ptp(points[:, 1]))
        centre = (points.min(axis=0) + points.max(axis=0)) / 2
        target = np.array(frame_size) * (0.6, 0.4)
        matrix = np.array([[scale, 0, target[0] - scale * centre[0]], [0, scale, target[1] - scale * centre[1]]])
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        frame = cv2.warpAffine(image, matrix, frame_size, flags=interpolation, borderValue=BACKGROUND)
        return frame, transform_points(points, matrix).astype(np.float32)

    return view


@dataclass
class Evaluation:
    names: list[str]
    point_errors: np.ndarray  # (faces, points), divided by the outer-eye-corner distance
    missed: list[str] = field(default_factory=list)  # faces with no crop (detector found nothing): failures
    confidence: np.ndarray | None = None  # per face, as reported to users (pipeline evaluations)

    @property
    def per_face(self) -> np.ndarray:
        return self.point_errors.mean(axis=1)

    @property
    def found_fraction(self) -> float:
        return len(self.names) / max(len(self.names) + len(self.missed), 1)

    def summary(self) -> dict:
        faces = self.per_face
        # A missed face is a failure at any threshold: give it an infinite error.
        all_faces = np.concatenate([faces, np.full(len(self.missed), np.inf)])
        return {
            "faces": len(all_faces),
            "missed": len(self.missed),
            "nme": float(faces.mean()) if len(faces) else float("nan"),
            "fr@0.10": failure_rate(all_faces, FAILURE_THRESHOLD),
            "auc@0.10": auc(all_faces, FAILURE_THRESHOLD),
            "per_landmark_nme": np.round(self.point_errors.mean(axis=0), 6).tolist(),
        }

    def confidence_ranking(self, fraction: float = 0.1) -> dict:
        """How well the reported confidence finds the bad faces: Spearman correlation with NME,
        the NME of the least confident ``fraction`` against the rest, and the same ratio for a
        perfect ranking (the most a confidence could achieve on these faces)."""
        errors, confidence = self.per_face, self.confidence

        def ranks(values):
            return np.argsort(np.argsort(values)).astype(float)

        least = confidence <= np.quantile(confidence, fraction)
        worst = errors >= np.quantile(errors, 1 - fraction)
        return {
            "spearman": float(np.corrcoef(ranks(confidence), ranks(errors))[0, 1]),
            "least_confident_nme": float(errors[least].mean()),
            "rest_nme": float(errors[~least].mean()),
            "ratio": float(errors[least].mean() / errors[~least].mean()),
            "perfect_ratio": float(errors[worst].mean() / errors[~worst].mean()),
        }

    def without(self, names: set[str]) -> Evaluation:
        """The same evaluation with the faces of these images left out."""
        keep = [name not in names for name in self.names]
        return Evaluation(
            [n for n, k in zip(self.names, keep) if k],
            self.point_errors[keep],
            [n for n in self.missed if n not in names],
            None if self.confidence is None else self.confidence[keep],
        )


YAW_BINS = ((0.0, 30.0), (30.0, 60.0), (60.0, 90.0))
INNER = slice(17, 68)  # brows, nose, eyes and mouth: the points without the jaw's outline


def by_yaw(result: Evaluation, samples: list[Sample], turns: dict[str, TurnedFace]) -> list[dict]:
    """NME per bin of |yaw| (``turns``: image name -> ``io.labels.TurnedFace``): by the outer-eye
    distance of the face in 3D (the picture's shrinks towards profile, where dividing by it would
    blow every error up) and by the face box (the square root of the labels' box area), over all
    68 points and the inner 51. A face the detector missed counts in ``missed`` and as a failure in
    ``failure_rate`` (the share of the bin's faces above 10% of the 3D eye distance)."""
    truth = {s.image_path.name: s.points for s in samples}
    rows = []
    for low, high in YAW_BINS:

        def inside(name: str, low: float = low, high: float = high) -> bool:
            size = abs(turns[name].yaw)
            return low <= size < high or size == high == YAW_BINS[-1][1]  # profile itself: the last bin

        positions = [i for i, name in enumerate(result.names) if inside(name)]
        keep = [result.names[i] for i in positions]
        # Back to pixels: point_errors are divided by the picture's eye distance.
        in_pixels = result.point_errors[positions] * np.array([_eye_distance(truth[n]) for n in keep]).reshape(-1, 1)
        by_eyes = in_pixels / np.array([turns[n].eye_distance for n in keep]).reshape(-1, 1)
        by_box = in_pixels / np.array([_box_size(truth[n]) for n in keep]).reshape(-1, 1)
        missed = sum(inside(name) for name in result.missed)
        failures = int((by_eyes.mean(axis=1) > FAILURE_THRESHOLD).sum()) + missed
        rows.append(
            {
                "bin": f"{low:g}-{high:g}",
                "faces": len(keep),
                "missed": missed,
                "failure_rate": failures / max(len(keep) + missed, 1),
                "eye_68": float(by_eyes.mean()) if keep else float("nan"),
                "eye_51": float(by_eyes[:, INNER].mean()) if keep else float("nan"),
                "box_68": float(by_box.mean()) if keep else float("nan"),
                "box_51": float(by_box[:, INNER].mean()) if keep else float("nan"),
            }
        )
    return rows


def _eye_distance(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[RIGHT_EYE_OUTER] - points[LEFT_EYE_OUTER]))


def _box_size(points: np.ndarray) -> float:
    width, height = np.ptp(points, axis=0)
    return float(np.sqrt(width * height))


def landmark_box_crops(crop_scale: float, size: int, roll_error: float = 0.0) -> CropFinder:
    """The paper's protocol: crops from the ground-truth landmark box. With ``roll_error``, the
    crop is turned that many degrees away from upright: how wrong a first crop's roll (rough
    detector keypoints) may be before one pass of the model loses the face."""

    def find(image: np.ndarray, sample: Sample) -> np.ndarray:
        return crop_matrix(CropBox.around_points(sample.points, crop_scale), size, roll_error)

    return find


def evaluate(
    model: LandmarkModel,
    samples: list[Sample],
    find_crop: CropFinder | None = None,
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    find_crop = find_crop or landmark_box_crops(model.info.crop_scale, model.info.input_size)
    names, errors, missed = [], [], []
    for start in range(0, len(samples), batch_size):
        images, matrices, truths = [], [], []
        for sample in samples[start : start + batch_size]:
            image = load_image(sample.image_path)
            matrix = find_crop(image, sample)
            if matrix is None:
                missed.append(sample.image_path.name)
                continue
            images.append(image)
            matrices.append(matrix)
            truths.append(sample.points)
            names.append(sample.image_path.name)
        if images:
            predicted, _ = model.predict_in_frames(images, matrices)
            errors.append(point_errors(predicted, np.stack(truths)))
        if progress:
            progress(min(start + batch_size, len(samples)), len(samples))
    if not errors:
        raise PipnetError("no face could be evaluated")
    return Evaluation(names, np.concatenate(errors), missed)


def evaluate_pipeline(
    landmarker, samples: list[Sample], view: View | None = None, progress: Callable[[int, int], None] | None = None
) -> Evaluation:
    """Accuracy of the whole still-image pipeline (detector, calibrated crop, landmarks): what a
    user gets, on the pictures as they are or as ``view`` makes them (turned, small). Each labeled
    face is matched to the found face whose points overlap it most."""
    names, errors, missed, confidence = [], [], [], []
    for i, sample in enumerate(samples, start=1):
        image, truth = load_image(sample.image_path), sample.points
        if view is not None:
            image, truth = view(image, truth)
        truth_box = CropBox.around_points(truth, 1.0)
        faces = landmarker.process_image(image)
        overlaps = [CropBox.around_points(f.points, 1.0).iou(truth_box) for f in faces]
        if overlaps and max(overlaps) >= 0.3:
            face = faces[int(np.argmax(overlaps))]
            errors.append(point_errors(face.points[None], truth[None]))
            names.append(sample.image_path.name)
            confidence.append(face.mean_confidence)
        else:
            missed.append(sample.image_path.name)
        if progress:
            progress(i, len(samples))
    return Evaluation(
        names,
        np.concatenate(errors) if errors else np.zeros((0, landmarker.model.info.num_points)),
        missed,
        np.array(confidence),
    )


@dataclass
class ClipEvaluation:
    frames: int
    tracked: int  # frames in which the face was reported, successfully
    ids: set[int]
    nme: np.ndarray  # per tracked frame, against the reference points moved with the face

    def line(self) -> str:
        return (
            f"{self.tracked}/{self.frames} frames tracked, {len(self.ids)} face id(s), "
            f"mean NME {100 * self.nme.mean():.2f}%, worst {100 * self.nme.max():.2f}%, "
            f"{int((self.nme > FAILURE_THRESHOLD).sum())} frames above {100 * FAILURE_THRESHOLD:g}%"
        )


def evaluate_clip(landmarker, spec) -> ClipEvaluation:
    """The video pipeline (tracking, smoothing) on a synthetic clip with known motion: the
    photo's own still-image landmarks, moved with the face, are the reference each frame is
    scored against. What it measures is how far the points drift from where the motion puts them."""
    from pipnet_core.io.sample_clip import face_photo, generate

    reference = landmarker.process_image(face_photo())
    if not reference:
        raise PipnetError("no face found in the sample photo")

    def frames():
        for frame, timestamp, matrices in generate(spec):
            truth = transform_points(reference[0].points, matrices[0])
            yield frame, timestamp, truth, float(np.linalg.norm(truth[RIGHT_EYE_OUTER] - truth[LEFT_EYE_OUTER]))

    return track_clip(landmarker, frames())


def track_clip(landmarker, frames: Iterable[tuple[np.ndarray, float, np.ndarray, float]]) -> ClipEvaluation:
    """The video pipeline on frames with known points: (frame, timestamp, true points, the length
    errors are divided by); from a fresh start, and reset after."""
    landmarker.reset()
    ids, errors, count = set(), [], 0
    for frame, timestamp, truth, scale in frames:
        count += 1
        faces = [f for f in landmarker.process(frame, timestamp) if f.success]
        if faces:
            ids.update(f.id for f in faces)
            errors.append(float(np.linalg.norm(faces[0].points - truth, axis=1).mean() / scale))
    landmarker.reset()
    return ClipEvaluation(count, len(errors), ids, np.array(errors) if errors else np.array([np.inf]))


def write_reports(
    result: Evaluation,
    model_path: str,
    data_path: str,
    csv_path: str | None = None,
    json_path: str | None = None,
    plot_path: str | None = None,
) -> None:
    if csv_path:
        with open(csv_path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image", "nme"])
            writer.writerows((name, f"{err:.6f}") for name, err in zip(result.names, result.per_face))
    if json_path:
        write_json(Path(json_path), {"model": model_path, "data": data_path, **result.summary()})
    if plot_path:
        plot_ced({Path(model_path).name: result.per_face}, plot_path)


def plot_ced(curves: dict[str, np.ndarray], path: str | Path, threshold: float = FAILURE_THRESHOLD) -> None:
    """Cumulative error distribution of one or more models."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for label, errors in curves.items():
        grid, fraction = ced(errors, threshold)
        ax.plot(100 * grid, 100 * fraction, label=f"{label} (AUC {auc(errors, threshold):.3f})")
    ax.set(xlabel="NME (% of outer-eye-corner distance)", ylabel="faces (%)", xlim=(0, 100 * threshold), ylim=(0, 100))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

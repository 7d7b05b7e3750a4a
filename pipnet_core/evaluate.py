"""`pipnet eval`: NME / FR / AUC of a checkpoint or an ONNX model on a labeled folder or CSV."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .crop import landmark_crop_matrix
from .data import Sample, load_image
from .errors import PipnetError
from .landmark_model import LandmarkModel
from .metrics import auc, ced, failure_rate, point_errors

FAILURE_THRESHOLD = 0.10

# Where a face's crop comes from: (image, sample) -> frame->crop matrix, or None if no face found.
CropFinder = Callable[[np.ndarray, Sample], "np.ndarray | None"]


def load_landmark_model(path: str | Path, threads: int = 2) -> LandmarkModel:
    """An ONNX model (runtime) or a training checkpoint (needs torch), by file suffix."""
    path = Path(path)
    if path.suffix == ".onnx":
        from .ort_model import OnnxLandmarkModel

        return OnnxLandmarkModel(path, threads)
    from .torch_model import TorchLandmarkModel

    return TorchLandmarkModel.from_checkpoint(path)


@dataclass
class Evaluation:
    names: list[str]
    point_errors: np.ndarray  # (faces, points), divided by the outer-eye-corner distance
    missed: list[str] = field(default_factory=list)  # faces with no crop (detector found nothing): failures

    @property
    def per_face(self) -> np.ndarray:
        return self.point_errors.mean(axis=1)

    def summary(self) -> dict:
        faces = self.per_face
        # A missed face is a failure at any threshold: give it an infinite error.
        all_faces = np.concatenate([faces, np.full(len(self.missed), np.inf)])
        return {
            "faces": len(all_faces),
            "missed": len(self.missed),
            "nme": float(faces.mean()),
            "fr@0.10": failure_rate(all_faces, FAILURE_THRESHOLD),
            "auc@0.10": auc(all_faces, FAILURE_THRESHOLD),
            "per_landmark_nme": np.round(self.point_errors.mean(axis=0), 6).tolist(),
        }

    def without(self, names: set[str]) -> "Evaluation":
        """The same evaluation with the faces of these images left out."""
        keep = [name not in names for name in self.names]
        return Evaluation([n for n, k in zip(self.names, keep) if k], self.point_errors[keep],
                          [n for n in self.missed if n not in names])


def landmark_box_crops(crop_scale: float, size: int) -> CropFinder:
    """The paper's protocol: crops from the ground-truth landmark box."""
    return lambda image, sample: landmark_crop_matrix(sample.points, crop_scale, size)


def evaluate(model: LandmarkModel, samples: list[Sample], find_crop: CropFinder | None = None,
             batch_size: int = 32, progress: Callable[[int, int], None] | None = None) -> Evaluation:
    find_crop = find_crop or landmark_box_crops(model.info.crop_scale, model.info.input_size)
    names, errors, missed = [], [], []
    for start in range(0, len(samples), batch_size):
        images, matrices, truths = [], [], []
        for sample in samples[start:start + batch_size]:
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


def evaluate_pipeline(landmarker, samples: list[Sample], progress: Callable[[int, int], None] | None = None) -> Evaluation:
    """Accuracy of the whole still-image pipeline (detector, calibrated crop, landmarks): what a
    user gets. Each labeled face is matched to the found face whose points overlap it most."""
    from .crop import CropBox

    names, errors, missed = [], [], []
    for i, sample in enumerate(samples, start=1):
        truth_box = CropBox.around_points(sample.points, 1.0)
        faces = landmarker.process_image(load_image(sample.image_path))
        overlaps = [CropBox.around_points(f.points, 1.0).iou(truth_box) for f in faces]
        if overlaps and max(overlaps) >= 0.3:
            face = faces[int(np.argmax(overlaps))]
            errors.append(point_errors(face.points[None], sample.points[None]))
            names.append(sample.image_path.name)
        else:
            missed.append(sample.image_path.name)
        if progress:
            progress(i, len(samples))
    if not errors:
        raise PipnetError("the detector found none of the labeled faces")
    return Evaluation(names, np.concatenate(errors), missed)


def write_reports(result: Evaluation, model_path: str, data_path: str, csv_path: str | None = None,
                  json_path: str | None = None, plot_path: str | None = None) -> None:
    if csv_path:
        with open(csv_path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image", "nme"])
            writer.writerows((name, f"{err:.6f}") for name, err in zip(result.names, result.per_face))
    if json_path:
        Path(json_path).write_text(json.dumps({"model": model_path, "data": data_path, **result.summary()}, indent=2))
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

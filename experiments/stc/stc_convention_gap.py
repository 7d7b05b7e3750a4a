"""How much of a 300-W-trained model's error on YouTube Faces is a labeling convention (the same
offset for a landmark on every face) rather than noise: NME on labeled ytf68/train frames before
and after removing each landmark's mean offset (in the face's own upright, eye-distance frame).

    .venv/bin/python experiments/stc/stc_convention_gap.py models/experiments/stc_paper_baseline_s0.onnx
"""

import sys

import numpy as np

from pipnet_core.base.crop import landmark_crop_matrix, transform_points
from pipnet_core.evaluation.metrics import nme
from pipnet_core.io.images import load_image
from pipnet_core.io.labels import read_labeled
from pipnet_core.training.loading import load_landmark_model


def main(model_path: str, probe: str = "../shared/data/ytf68/train", faces: int = 300) -> None:
    model = load_landmark_model(model_path)
    samples = read_labeled(probe)
    samples = samples[:: max(len(samples) // faces, 1)][:faces]
    size, scale = model.info.input_size, model.info.crop_scale
    predicted, truth = [], []
    for sample in samples:
        matrix = landmark_crop_matrix(sample.points, scale, size)  # upright crop: offsets in the face's frame
        points, _ = model.predict_in_frames([load_image(sample.image_path)], [matrix])
        predicted.append(transform_points(points[0], matrix))
        truth.append(transform_points(sample.points, matrix))
    predicted, truth = np.stack(predicted), np.stack(truth)
    eye = np.linalg.norm(truth[:, 45] - truth[:, 36], axis=1)[:, None, None]
    offsets = ((predicted - truth) / eye).mean(axis=0)  # per landmark, in eye distances
    corrected = predicted - offsets[None] * eye
    print(
        f"{model_path} on {len(samples)} {probe} faces: NME {100 * nme(predicted, truth).mean():.2f}%, "
        f"{100 * nme(corrected, truth).mean():.2f}% after removing each landmark's mean offset"
    )
    worst = np.argsort(-np.linalg.norm(offsets, axis=1))[:6]
    print(
        "largest mean offsets (landmark: % of the eye distance): "
        + ", ".join(f"{i}: {100 * np.linalg.norm(offsets[i]):.1f}" for i in worst)
    )


if __name__ == "__main__":
    main(*sys.argv[1:])

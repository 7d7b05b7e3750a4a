"""The Face Mesh vertex that means each of the inner 51 points (brows, nose, eyes, mouth) of the
68-point scheme, derived on frontal labelled faces: for each point, the vertex whose position
lies nearest the label on average, over the outer-eye distance. `bench-quality` compares our
points with Face Mesh's through this table (evaluation/quality.py, MESH_FOR_68); the jaw is left
out, because on a turned face its 68-point meaning (the visible outline) is no fixed vertex.

    .venv/bin/python tools/derive_mesh_table.py ../shared/data/300w_subset/helen/trainset

Prints the table and each point's mean residual; never run on a test set.
"""

import argparse

import numpy as np

from pipnet_core.base.scheme import LEFT_EYE_OUTER, RIGHT_EYE_OUTER
from pipnet_core.evaluation.face_mesh import FaceMesh, mesh_yaw
from pipnet_core.io.images import load_image
from pipnet_core.io.labels import read_labeled

FRONTAL = 15.0  # degrees of yaw, by Face Mesh's own 3D points
INNER = range(17, 68)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="+", help="labelled training folders")
    args = parser.parse_args()
    samples = [s for folder in args.data for s in read_labeled(folder)]
    errors = []  # per frontal face: (51, 468) distances over the eye distance
    with FaceMesh(max_faces=1, stills=True) as mesh:
        for sample in samples:
            meshes = mesh.meshes_3d(load_image(sample.image_path))
            if len(meshes) != 1 or abs(mesh_yaw(meshes[0])) > FRONTAL:
                continue
            eye = np.linalg.norm(sample.points[LEFT_EYE_OUTER] - sample.points[RIGHT_EYE_OUTER])
            labels = sample.points[list(INNER)]
            if np.linalg.norm(meshes[0][:, :2].mean(0) - labels.mean(0)) > eye:  # another face than the labelled
                continue
            errors.append(np.linalg.norm(labels[:, None] - meshes[0][None, :, :2], axis=2) / eye)
    mean = np.mean(errors, axis=0)
    table = mean.argmin(axis=1)
    print(f"{len(errors)} frontal faces of {len(samples)}")
    print("MESH_FOR_68 = (" + ", ".join(f"({k}, {v})" for k, v in zip(INNER, table)) + ")")
    residual = mean[np.arange(len(table)), table]
    print("mean residual % by point:", " ".join(f"{k}:{100 * r:.1f}" for k, r in zip(INNER, residual)))
    print(f"over all 51: {100 * residual.mean():.2f}% of the eye distance")


if __name__ == "__main__":
    main()

"""Write assets/face_model_3d.txt: a generic 68-point face in millimetres for the 3D landmarks of
`--format openface`.

x and y: the shipped model's mean face (its training faces' average shape, upright), scaled so the
outer eye corners are 90 mm apart, origin at the nose tip. z: interpolated (inverse squared
distance in the x-y plane) from the 22 depths of the pose model in pose.py, which are exact at
their own points. Run: .venv/bin/python tools/make_face_model_3d.py
"""

from pathlib import Path

import numpy as np

from pipnet_core.model.onnx import OnnxLandmarkModel
from pipnet_core.pipeline.pose import MODEL_3D, MODEL_INDEX


def main() -> None:
    model = OnnxLandmarkModel()
    mean = np.asarray(model.info.codec.mean_face, np.float64)
    model.close()
    scale = 90.0 / (mean[45, 0] - mean[36, 0])
    xy = (mean - mean[30]) * scale
    z = np.empty(len(xy))
    for i, point in enumerate(xy):
        distance = np.linalg.norm(MODEL_3D[:, :2] - point, axis=1)
        if i in MODEL_INDEX:
            z[i] = MODEL_3D[list(MODEL_INDEX).index(i), 2]
        else:
            weights = 1 / np.maximum(distance, 1e-6) ** 2
            z[i] = (weights * MODEL_3D[:, 2]).sum() / weights.sum()
    out = Path(__file__).resolve().parents[1] / "assets" / "face_model_3d.txt"
    np.savetxt(
        out,
        np.column_stack([xy, z]),
        fmt="%.1f",
        header="68 points, x y z in mm (x right, y down, z away from the camera, nose tip at 0): "
        "tools/make_face_model_3d.py",
    )
    print(out)


if __name__ == "__main__":
    main()

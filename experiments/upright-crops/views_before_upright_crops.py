"""The "before" rows of models/README.md: the pipeline of an older checkout (axis-aligned crops,
BlazeFace short range) on the turned and small-face views that `pipnet eval --rotate` and
`--face-height` make today.

    git worktree add /tmp/pipnet-before 4696fe8
    .venv/bin/python experiments/upright-crops/views_before_upright_crops.py /tmp/pipnet-before rotate 0 45 90 135 180 -45 -90 -135
    .venv/bin/python experiments/upright-crops/views_before_upright_crops.py /tmp/pipnet-before height 40 60 90

The views come from this checkout's pipnet_core/evaluation/evaluate.py (their source is run against the old
package), everything else from the old checkout, whose own model is used.
"""

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[2]  # this checkout: experiments/upright-crops/ is two below


def main(old: str, mode: str, values: list[float], data: str = "../shared/data/300w_subset/helen/testset") -> None:
    sys.path.insert(0, old)
    # The old checkout's modules, in its flat layout.
    from pipnet_core.crop import CropBox, transform_points
    from pipnet_core.data import read_labeled
    from pipnet_core.images import load_image
    from pipnet_core.landmarker import Landmarker
    from pipnet_core.metrics import point_errors

    source = (HERE / "pipnet_core" / "evaluation" / "evaluate.py").read_text()
    views = {"np": np, "transform_points": transform_points}
    exec(
        "import cv2\nfrom typing import Callable\nView = Callable\n"
        + source[source.index("BACKGROUND =") : source.index("@dataclass\nclass Evaluation")],
        views,
    )
    samples = read_labeled(Path(data))
    landmarker = Landmarker(Path(old) / "models" / "pipnet_mbv2_68.onnx", smoothing=False, max_faces=3)
    for value in values:
        view = views["rotated_view"](value) if mode == "rotate" else views["small_face_view"](value)
        errors, missed = [], 0
        for sample in samples:
            image, truth = view(load_image(sample.image_path), sample.points)
            truth_box = CropBox.around_points(truth, 1.0)
            faces = landmarker.process_image(image)
            overlaps = [CropBox.around_points(f.points, 1.0).iou(truth_box) for f in faces]
            if overlaps and max(overlaps) >= 0.3:
                errors.append(point_errors(faces[int(np.argmax(overlaps))].points[None], truth[None]).mean())
            else:
                missed += 1
        nme = np.mean(errors) if errors else float("nan")
        failures = (np.sum(np.array(errors) > 0.1) + missed) / len(samples)
        print(
            f"{mode} {value:g}: found {100 * (1 - missed / len(samples)):.1f}%  NME {100 * nme:.2f}%  "
            f"FR@0.10 {100 * failures:.2f}%",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], [float(v) for v in sys.argv[3:]])

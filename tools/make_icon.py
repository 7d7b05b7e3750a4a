"""Draw assets/icon.png: the shipped model's mean face as 68 points on a dark disc.

.venv/bin/python tools/make_icon.py
"""

from pathlib import Path

import cv2
import numpy as np

from pipnet_core.base.scheme import CONTOURS
from pipnet_core.model.onnx import OnnxLandmarkModel

SIZE = 256


def main() -> None:
    mean_face = OnnxLandmarkModel().info.codec.mean_face
    lo, hi = mean_face.min(axis=0), mean_face.max(axis=0)
    points = (mean_face - (lo + hi) / 2) * (0.62 * SIZE / (hi - lo).max()) + SIZE / 2
    icon = np.zeros((SIZE, SIZE, 4), np.uint8)
    cv2.circle(icon, (SIZE // 2, SIZE // 2), SIZE // 2 - 4, (40, 34, 30, 255), -1, cv2.LINE_AA)
    for _, indices, closed in CONTOURS:
        cv2.polylines(
            icon,
            [np.round(points[list(indices)] * 16).astype(np.int32)],
            closed,
            (120, 200, 120, 255),
            3,
            cv2.LINE_AA,
            shift=4,
        )
    for x, y in points:
        cv2.circle(
            icon, (int(round(x * 16)), int(round(y * 16))), 3 * 16, (90, 255, 255, 255), -1, cv2.LINE_AA, shift=4
        )
    out = Path(__file__).resolve().parent.parent / "assets" / "icon.png"
    cv2.imwrite(str(out), icon)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

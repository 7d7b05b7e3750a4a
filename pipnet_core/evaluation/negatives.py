"""`pipnet eval --negatives`: how often the model takes a crop with no face for a face.

Each patch (`pipnet prepare-data --negatives`) is shown to the model whole, as the crop of a false
detection would be. It passes as a face when its mean confidence reaches the tracker's threshold
(``TrackerConfig.min_confidence``: below it a still's face is dropped and a video's track ends);
the same with the confidence lowered for a shape unlike a face (``plausibility``, without the
yaw a video's new face is checked for) says what that check still adds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from pipnet_core.base.geometry import centred
from pipnet_core.io.images import load_image
from pipnet_core.io.labels import NegativePatch
from pipnet_core.model.interface import LandmarkModel
from pipnet_core.pipeline.plausibility import plausibility
from pipnet_core.pipeline.tracking import TrackerConfig

BATCH = 32


@dataclass
class NegativeEvaluation:
    kinds: list[str]  # per patch: "background" or "texture"
    confidence: np.ndarray  # per patch: the mean of its 68 confidences
    shape_factor: np.ndarray  # per patch: plausibility's factor for the shape drawn on it
    threshold: float

    def rows(self) -> list[dict]:
        """Per kind and for all patches: count, share passing raw and with the shape check, and
        the 50th / 99th percentile of the confidence."""
        kinds = np.array(self.kinds)
        rows = []
        for name in [*sorted(set(self.kinds)), "all"]:
            chosen = np.ones(len(kinds), bool) if name == "all" else kinds == name
            raw = self.confidence[chosen]
            lowered = raw * self.shape_factor[chosen]
            rows.append(
                {
                    "kind": name,
                    "patches": int(chosen.sum()),
                    "passed": float((raw >= self.threshold).mean()),
                    "passed_with_shape_check": float((lowered >= self.threshold).mean()),
                    "median": float(np.median(raw)),
                    "p99": float(np.percentile(raw, 99)),
                }
            )
        return rows


def evaluate_negatives(
    model: LandmarkModel, patches: list[NegativePatch], progress: Callable[[int, int], None] | None = None
) -> NegativeEvaluation:
    size = model.info.input_size
    reference = centred(model.info.codec.mean_face)
    confidence, factors = [], []
    for start in range(0, len(patches), BATCH):
        chunk = patches[start : start + BATCH]
        crops = np.stack(
            [cv2.resize(load_image(p.image_path), (size, size), interpolation=cv2.INTER_AREA) for p in chunk]
        )
        points, scores = model.predict(crops)
        confidence += scores.mean(axis=1).tolist()
        factors += [plausibility(p.astype(np.float64), reference, None) for p in points]
        if progress:
            progress(min(start + BATCH, len(patches)), len(patches))
    return NegativeEvaluation(
        [p.kind for p in patches], np.array(confidence), np.array(factors), TrackerConfig().min_confidence
    )

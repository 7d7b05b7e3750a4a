"""How much to trust a face's points beyond the score maps: near-profile views and shapes unlike
any face make the model's own confidence too high.

The score-map peaks say how sure each point's cell is, not whether the whole shape makes sense: on
a head turned to near profile the model still draws a frontal-looking face with confident peaks.
Two checks lower the reported confidence then: the head pose's yaw beyond 40 degrees, and the
distance of the points from the mean face after the best similarity fit beyond what 90% of real
faces show. Tracking keeps using the raw peaks; only what users read (Face.confidence, CSV) drops.
"""

from __future__ import annotations

import numpy as np

from pipnet_core.base.geometry import fit_similarity

# Mean point distance from the similarity-fitted mean face, in face sizes: real faces through the
# pipeline (HELEN + YouTube Faces test) have a median of 0.043 and a 90th percentile of 0.07.
TYPICAL_SHAPE_RESIDUAL = 0.07
PROFILE_YAW = 40.0  # degrees; beyond it the 68-point model's view of the far side is a guess


def shape_residual(points: np.ndarray, reference: np.ndarray, fit=None) -> float:
    """Mean distance of the points from the mean face (``reference``, centred) fitted to them
    (``fit``, when the caller has it), over the face's size."""
    centre, a, b = fit or fit_similarity(reference, np.asarray(points, np.float64))
    fitted = reference @ np.array([[a, -b], [b, a]]).T + centre
    size = np.hypot(a, b) * np.ptp(reference, axis=0).max()
    return float(np.linalg.norm(points - fitted, axis=1).mean() / max(size, 1e-6))


def plausibility(points: np.ndarray, reference: np.ndarray, yaw: float | None, fit=None) -> float:
    """A factor in [0.5, 1] for the reported confidence: 1 for an ordinary frontal face, down to
    0.5 at 70 degrees of yaw or at 1.5 times the typical shape residual. ``reference``: the mean
    face, centred (``base.geometry.centred``); ``fit``: the points' similarity fit to it, if known."""
    shape = 1.0 - (shape_residual(points, reference, fit) - TYPICAL_SHAPE_RESIDUAL) / TYPICAL_SHAPE_RESIDUAL
    view = 1.0 if yaw is None else 1.0 - (abs(yaw) - PROFILE_YAW) / 60.0
    return float(np.clip(min(shape, view), 0.5, 1.0))

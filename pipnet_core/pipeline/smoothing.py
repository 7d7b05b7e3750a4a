"""Temporal smoothing, motion-compensated.

A face's 68 points are split into a similarity transform (centre, scale, rotation: fitted to all
points, so already low-noise) and a shape in the face's own frame (where each point's jitter
lives). The shape goes through a One Euro filter (Casiez et al., CHI 2012) per coordinate, whose
speed term is measured in face sizes per second, so one setting works near and far. The transform
goes through a constant-velocity (alpha-beta) tracker, which follows a smoothly moving head
without the lag of a low-pass filter. On the synthetic moving-face clip a One Euro filter on raw
points cut jitter 2x only at +30-75% NME; this split cuts it 3x at +0-1%. A file seen whole is
smoothed without lag by offline/smoothing.py, with the same split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipnet_core.base.geometry import centred, fit_similarity


@dataclass(frozen=True)
class SmoothingParams:
    min_cutoff: float = 0.5  # Hz, shape: lower = steadier points when still
    beta: float = 5.0  # shape cut-off gain per (face size / s): higher = quicker expressions
    derivative_cutoff: float = 1.0  # Hz, for the shape's speed estimate
    # Alpha of the head-motion tracker at 30 fps for motion within noise (1 = no smoothing); real
    # motion raises it towards 1 (AlphaBetaFilter). Lower gains (0.2-0.4) cut jitter on the real
    # clips of `pipnet bench-quality` by up to 15% but lag the synthetic clip's sway by 15-60%.
    motion_gain: float = 0.5

    @classmethod
    def from_strength(cls, strength: float) -> SmoothingParams:
        """A single 0..1 knob for the GUI: 0 = light, 1 = heavy smoothing; 0.5 = the defaults."""
        strength = min(max(strength, 0.0), 1.0)
        return cls(min_cutoff=2.0 * (0.125 / 2.0) ** strength, motion_gain=0.75 - 0.5 * strength)


def _alpha(dt: float, cutoff):
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One Euro filter over an array of any shape; speed is divided by ``scale`` (a face size)."""

    def __init__(self, min_cutoff: float, beta: float, derivative_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.derivative_cutoff = min_cutoff, beta, derivative_cutoff
        self._value: np.ndarray | None = None
        self._speed: np.ndarray | None = None
        self._time = 0.0

    def __call__(self, value: np.ndarray, timestamp: float, scale: float = 1.0) -> np.ndarray:
        value = np.asarray(value, dtype=np.float64)
        if self._value is None or self._value.shape != value.shape:
            self._value, self._speed, self._time = value, np.zeros_like(value), timestamp
            return value
        dt = timestamp - self._time
        if dt <= 0:  # repeated or out-of-order timestamp: assume 30 fps rather than divide by zero
            dt = 1 / 30
        speed = (value - self._value) / dt
        self._speed = self._speed + _alpha(dt, self.derivative_cutoff) * (speed - self._speed)
        cutoff = self.min_cutoff + self.beta * np.abs(self._speed) / max(scale, 1e-6)
        self._value = self._value + _alpha(dt, cutoff) * (value - self._value)
        self._time = timestamp
        return self._value


class AlphaBetaFilter:
    """Critically damped alpha-beta tracker: position and velocity, no lag at constant velocity.

    A measurement far from the prediction is real motion, not noise (noise is well under 1% of the
    face size): the gain then rises towards 1 so a sudden move or a fast start is followed at once
    instead of being smoothed into a lag."""

    STATE_NAME = "MotionTracker"  # its name before 2026-12-03, which saved video states carry
    NOISE = 0.01  # residual (in face sizes) below which the configured gain applies
    FOLLOW = 0.04  # residual above NOISE by this much: follow the measurement fully

    def __init__(self, gain: float):
        self.gain = gain
        self._value: np.ndarray | None = None
        self._velocity: np.ndarray | None = None
        self._time = 0.0

    def __call__(self, value: np.ndarray, timestamp: float, scale: float = 1.0) -> np.ndarray:
        if self._value is None:
            self._value, self._velocity, self._time = value.copy(), np.zeros_like(value), timestamp
            return value
        dt = timestamp - self._time if timestamp > self._time else 1 / 30
        self._time = timestamp
        predicted = self._value + self._velocity * dt
        residual = value - predicted
        # The gain is set for 30 fps; keep the same time constant at other frame rates.
        alpha = 1 - (1 - self.gain) ** (dt * 30)
        surprise = float(np.linalg.norm(residual)) / max(scale, 1e-6)
        alpha += (1 - alpha) * min(max((surprise - self.NOISE) / self.FOLLOW, 0.0), 1.0)
        beta = alpha**2 / (2 - alpha)
        self._value = predicted + alpha * residual
        self._velocity = self._velocity + beta * residual / dt
        return self._value


class LandmarkSmoother:
    """Smooths one face's points over time; make a new one for a new face."""

    def __init__(self, reference: np.ndarray, params: SmoothingParams = SmoothingParams()):
        self.reference = centred(reference)
        self.reference_size = float(np.ptp(self.reference, axis=0).max())
        self.motion = AlphaBetaFilter(params.motion_gain)
        self.shape = OneEuroFilter(params.min_cutoff, params.beta, params.derivative_cutoff)

    def set_params(self, params: SmoothingParams) -> None:
        """New filter settings from the next frame on, keeping the filters' state (no jump)."""
        self.motion.gain = params.motion_gain
        self.shape.min_cutoff, self.shape.beta, self.shape.derivative_cutoff = (
            params.min_cutoff,
            params.beta,
            params.derivative_cutoff,
        )

    def __call__(
        self, points: np.ndarray, timestamp: float, fit: tuple[np.ndarray, float, float] | None = None
    ) -> np.ndarray:
        """The smoothed points; ``fit``: the points' ``fit_similarity`` to this reference, if known."""
        centre, a, b = fit or fit_similarity(self.reference, points.astype(np.float64))
        scale = math.hypot(a, b)
        # Shape in the face's own frame: the inverse similarity of the points.
        inverse = np.array([[a, b], [-b, a]]) / (scale**2)
        shape = self.shape((points - centre) @ inverse.T, timestamp, self.reference_size)
        # Motion as (centre, a, b) in pixels: a and b times the reference size are face-size units.
        motion = self.motion(
            np.array([centre[0], centre[1], a * self.reference_size, b * self.reference_size]),
            timestamp,
            scale * self.reference_size,
        )
        a_s, b_s = motion[2] / self.reference_size, motion[3] / self.reference_size
        return (shape @ np.array([[a_s, -b_s], [b_s, a_s]]).T + motion[:2]).astype(np.float32)

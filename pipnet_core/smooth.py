"""Temporal smoothing, motion-compensated.

A face's 68 points are split into a similarity transform (centre, scale, rotation: fitted to all
points, so already low-noise) and a shape in the face's own frame (where each point's jitter
lives). The shape goes through a One Euro filter (Casiez et al., CHI 2012) per coordinate, whose
speed term is measured in face sizes per second, so one setting works near and far. The transform
goes through a constant-velocity (alpha-beta) tracker, which follows a smoothly moving head
without the lag of a low-pass filter. On the synthetic moving-face clip a One Euro filter on raw
points cut jitter 2x only at +30-75% NME; this split cuts it 3x at +0-1%.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SmoothingParams:
    min_cutoff: float = 0.5  # Hz, shape: lower = steadier points when still
    beta: float = 5.0  # shape cut-off gain per (face size / s): higher = quicker expressions
    derivative_cutoff: float = 1.0  # Hz, for the shape's speed estimate
    # Alpha of the head-motion tracker at 30 fps for motion within noise (1 = no smoothing); real
    # motion raises it towards 1 (MotionTracker). Lower gains (0.2-0.4) cut jitter on the real
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


class MotionTracker:
    """Critically damped alpha-beta tracker: position and velocity, no lag at constant velocity.

    A measurement far from the prediction is real motion, not noise (noise is well under 1% of the
    face size): the gain then rises towards 1 so a sudden move or a fast start is followed at once
    instead of being smoothed into a lag."""

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


def centred(shape: np.ndarray) -> np.ndarray:
    """A shape moved so its points' mean is at the origin, as ``fit_similarity`` takes it."""
    shape = np.asarray(shape, np.float64)
    return shape - shape.mean(axis=0)


def fit_similarity(reference: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Least-squares similarity from a centred reference shape to points:
    points ~= [[a, -b], [b, a]] @ reference + centre. Returns (centre, a, b)."""
    centre = points.mean(axis=0)
    p = points - centre
    norm = float((reference**2).sum())
    a = float((reference * p).sum()) / norm
    b = float((reference[:, 0] * p[:, 1] - reference[:, 1] * p[:, 0]).sum()) / norm
    return centre, a, b


class LandmarkSmoother:
    """Smooths one face's points over time; make a new one for a new face."""

    def __init__(self, reference: np.ndarray, params: SmoothingParams = SmoothingParams()):
        self.reference = centred(reference)
        self.reference_size = float(np.ptp(self.reference, axis=0).max())
        self.motion = MotionTracker(params.motion_gain)
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


@dataclass(frozen=True)
class OfflineSmoothingParams:
    """The whole-track smoother's process noise, in face sizes and seconds (the measurement noise
    is estimated from each track itself). Lower = steadier. Set on the synthetic clips and
    ../shared/videos (docs/how-it-works.md: offline smoothing)."""

    motion_jerk: float = 1.0  # head motion (constant acceleration): deviation of its jerk, /s^3
    shape_accel: float = 0.1  # each point in the face's own frame (constant velocity), /s^2
    # Head motion and expressive regions: the process noise rises to the acceleration the track
    # shows around each frame, times this; rigid regions (nose, eye corners) keep theirs.
    adapt: float = 1.0
    # A head-motion change this far (face sizes) from the constant-velocity guess of the frames
    # before is a sudden move, not noise: the smoother starts afresh there instead of spreading the
    # move over the frames around it. ``shape_jump``: the same for a region (root mean square over
    # its points): a blink, a mouth opening at once.
    jump: float = 0.05
    shape_jump: float = 0.02


def _noise_std(values: np.ndarray) -> float:
    """Measurement noise of (T, D) samples of a smooth signal: the robust spread of their second
    differences (white noise of deviation s gives second differences of deviation s * sqrt(6))."""
    second = values[2:] - 2 * values[1:-1] + values[:-2]
    return max(1.4826 * float(np.median(np.abs(second))) / math.sqrt(6), 1e-4)


def _transition(dt: float, order: int) -> np.ndarray:
    """State transition over dt for (value, its derivatives up to order - 1)."""
    return np.array(
        [[dt ** (j - i) / math.factorial(j - i) if j >= i else 0.0 for j in range(order)] for i in range(order)]
    )


def _process_noise(dt: float, order: int, deviation: float) -> np.ndarray:
    """Covariance added over dt by white noise of this deviation on the highest derivative."""
    n = order
    return deviation**2 * np.array(
        [
            [
                dt ** (2 * n - 1 - i - j)
                / (math.factorial(n - 1 - i) * math.factorial(n - 1 - j) * (2 * n - 1 - i - j))
                for j in range(n)
            ]
            for i in range(n)
        ]
    )


def _sudden(values: np.ndarray, dts: np.ndarray, limit: float) -> np.ndarray:
    """Per step of (T, K, D) values: is the change from the constant-velocity guess of the two
    frames before (root mean square over K) above ``limit``?"""
    guess = np.empty_like(values[1:])
    guess[0] = values[0]
    guess[1:] = values[1:-1] + (values[1:-1] - values[:-2]) * (dts[1:] / dts[:-1])[:, None, None]
    return np.sqrt(((values[1:] - guess) ** 2).sum(axis=-1).mean(axis=-1)) > limit


def _local_accel(values: np.ndarray, dts: np.ndarray, noise: float, span: int = 4) -> np.ndarray:
    """Per step, the acceleration the (T, D) values show around it beyond what their noise could
    make: second differences over ``span`` frames on each side (noise shrinks by span squared),
    less three times the noise's own deviation there, the largest within ``span`` frames."""
    steps = len(values)
    if steps <= 2 * span:
        return np.zeros(len(dts))
    second = np.zeros(steps)
    second[span:-span] = np.linalg.norm(values[2 * span :] - 2 * values[span:-span] + values[: -2 * span], axis=1)
    excess = np.maximum(second - 3 * math.sqrt(6 * values.shape[1]) * noise, 0.0)
    spread = np.max([np.roll(excess, shift) for shift in range(-span, span + 1)], axis=0)
    return spread[1:] / (span * np.maximum(dts, 1e-3)) ** 2


def _rts(
    values: np.ndarray, dts: np.ndarray, order: int, deviation: float, adapt: float, breaks: np.ndarray
) -> np.ndarray:
    """(T, D) values smoothed by a Kalman filter over (value, derivatives up to order - 1) and a
    backward Rauch-Tung-Striebel pass. The covariances are the same for every coordinate (same
    noise, same times), so they are computed once."""
    noise = _noise_std(values)
    drive = np.maximum(deviation, adapt * _local_accel(values, dts, noise)) if adapt else np.full(len(dts), deviation)
    r = noise**2
    # Unknown start: derivatives up to a face size per second (per second squared).
    covariance = np.diag([r] + [1.0] * (order - 1))
    gains, transitions, filtered, predicted = [np.eye(order)[0]], [], [covariance], [covariance]
    for t, dt in enumerate(dts):
        f = _transition(dt, order)
        prior = f @ covariance @ f.T + _process_noise(dt, order, drive[t])
        if breaks[t]:  # a sudden move: the state starts afresh here
            prior = prior + np.diag([dt ** (-2 * i) for i in range(order)])
        gain = prior[:, 0] / (prior[0, 0] + r)
        covariance = prior - np.outer(gain, prior[0])
        gains.append(gain)
        transitions.append(f)
        predicted.append(prior)
        filtered.append(covariance)
    states = np.zeros((len(values), values.shape[1], order))
    priors = np.zeros_like(states)
    states[0, :, 0] = values[0]
    state = states[0]
    for t in range(1, len(values)):
        priors[t] = state @ transitions[t - 1].T
        state = states[t] = priors[t] + np.outer(values[t] - priors[t][:, 0], gains[t])
    backs = np.array(filtered[:-1]) @ np.array(transitions).transpose(0, 2, 1) @ np.linalg.inv(np.array(predicted[1:]))
    out = np.empty_like(values)
    smoothed = states[-1]
    out[-1] = smoothed[:, 0]
    for t in range(len(values) - 2, -1, -1):
        smoothed = states[t] + (smoothed - priors[t + 1]) @ backs[t].T
        out[t] = smoothed[:, 0]
    return out


def smooth_track(
    points: np.ndarray,
    timestamps: np.ndarray,
    reference: np.ndarray,
    regions: tuple[tuple[tuple[int, ...], bool], ...] | None = None,
    params: OfflineSmoothingParams = OfflineSmoothingParams(),
) -> np.ndarray:
    """One face's whole track, (T, N, 2) points at increasing timestamps, smoothed without lag:
    the same split as ``LandmarkSmoother`` (head motion as a similarity, shape in the face's own
    frame), each through a forward Kalman filter and a backward Rauch-Tung-Striebel pass, which
    sees the frames after each one as well as those before. ``regions``: (points, expressive)
    groups smoothed apart, each free to change suddenly on its own; None: all points, rigid."""
    points = np.asarray(points, np.float64)
    if len(points) < 3:
        return points.astype(np.float32)
    reference = centred(reference)
    reference_size = float(np.ptp(reference, axis=0).max())
    fits = [fit_similarity(reference, p) for p in points]
    centres = np.array([c for c, _, _ in fits])
    a = np.array([f[1] for f in fits])
    b = np.array([f[2] for f in fits])
    unit = float(np.median(np.hypot(a, b))) * reference_size  # face sizes: one setting near and far
    inverse = np.stack([np.stack([a, b], -1), np.stack([-b, a], -1)], -2) / (np.hypot(a, b) ** 2)[:, None, None]
    shape = np.einsum("tnk,tjk->tnj", points - centres[:, None], inverse) / reference_size
    motion = np.column_stack([centres, a * reference_size, b * reference_size]) / unit
    dts = np.diff(np.asarray(timestamps, np.float64))
    dts = np.where(dts > 0, dts, 1 / 30)
    motion = _rts(motion, dts, 3, params.motion_jerk, params.adapt, _sudden(motion[:, None], dts, params.jump)) * unit
    for region, expressive in regions or ((tuple(range(len(reference))), False),):
        part = shape[:, region]
        smoothed = _rts(
            part.reshape(len(points), -1),
            dts,
            2,
            params.shape_accel,
            params.adapt if expressive else 0.0,
            _sudden(part, dts, params.shape_jump),
        )
        shape[:, region] = smoothed.reshape(part.shape)
    a_s, b_s = motion[:, 2] / reference_size, motion[:, 3] / reference_size
    forward = np.stack([np.stack([a_s, -b_s], -1), np.stack([b_s, a_s], -1)], -2)
    return (np.einsum("tnk,tjk->tnj", shape * reference_size, forward) + motion[:, None, :2]).astype(np.float32)

"""Whole-track smoothing: a file is there whole, so each face's track is smoothed with the frames
after each point as well as those before (a Kalman filter forward, Rauch-Tung-Striebel backward),
with no lag. The same split as the live smoother (pipeline/smoothing.py): head motion as a
similarity, the shape in the face's own frame, each expressive region free to change at once."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipnet_core.base.geometry import centred, fit_similarity


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

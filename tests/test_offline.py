"""Whole-track processing of files: offline smoothing against the live filter on clips with known
motion and on real clips, and blink events (synthetic eye measures; real eyelids against Face Mesh)."""

import numpy as np
import pytest
from synthetic import (
    SHARED_VIDEOS,
    MeanFaceModel,
    motion_errors,
    moved_reference,
    needs,
    reference_error,
    shared_points,
    template_points,
)
from test_fast_motion import head_frames

from pipnet_core.io.sample_clip import ClipSpec, generate
from pipnet_core.offline.measures import detect_blinks, eye_aspect_ratios, mouth_aspect_ratio
from pipnet_core.offline.tracks import smooth_offline
from pipnet_core.pipeline.landmarker import Landmarker
from pipnet_core.pipeline.pose import camera_matrix
from pipnet_core.pipeline.smoothing import SmoothingParams


def known_motion_clip(name):
    """Frames, timestamps and each frame's photo->frame matrix."""
    if name == "sample":  # the sample clip: sway, nod and sensor noise, 10 s
        frames = list(generate(ClipSpec(frames=300)))
        return [f for f, _, _ in frames], [t for _, t, _ in frames], [m[0] for _, _, m in frames]
    # 360 px/s across the frame; half a face width at once, on a frame the detector is not due on
    centres = {
        "glide": [(150.0 + 12 * i, 240.0) for i in range(30)],
        "jump": [(250.0, 240.0)] * 23 + [(305.0, 240.0)] * 15,
    }[name]
    images, matrices = head_frames(centres)
    return images, [i / 30 for i in range(len(images))], matrices


def tracked(model, smoothing, images, times):
    landmarker = Landmarker(model, smoothing=smoothing)
    # Plain tuples, as the public API documents them (FrameFaces is one too).
    return [(i, t, landmarker.process(image, t)) for i, (image, t) in enumerate(zip(images, times))]


def only_face(frames):
    assert all(len(faces) == 1 and faces[0].success for _, _, faces in frames)
    return np.stack([faces[0].points for _, _, faces in frames])


def errors(frames, truth):
    """Each frame's error against the truth; inf where there is not exactly one face."""
    return np.array(
        [
            reference_error(faces[0].points, t) if len(faces) == 1 and faces[0].success else np.inf
            for (_, _, faces), t in zip(frames, truth)
        ]
    )


def jitter(points, truth):
    """Frame-to-frame change of the error (on the shared points): what the eye sees as trembling."""
    return np.linalg.norm(np.diff(shared_points(points) - truth, axis=0), axis=-1).mean()


# Jitter against the live filter's: at most about half on smooth motion; around a jump both are
# dominated by the frames where the tracker catches up (test_fast_motion), so less is asked: there
# offline smoothing is about the live filter's equal, steadiness and motion alike. Model 1.2.1
# measures jitter 0.42x / 0.57x / 1.03x and motion error 0.79x / 0.92x / 1.04x the live filter's
# (1.2.0: jitter 0.39x / 0.52x / 0.93x; 1.1: 0.41x / 0.42x / 0.72x; docs/results.md).
@pytest.mark.parametrize("control", [False, True], ids=["shipped model", "mean-face control"])
@pytest.mark.parametrize(
    "name, jitter_limit, motion_limit", [("sample", 0.5, 1.0), ("glide", 0.6, 1.0), ("jump", 1.1, 1.1)]
)
def test_offline_smoothing_is_steadier_than_the_live_filter_on_smooth_motion_and_its_equal_around_a_jump(
    model, name, jitter_limit, motion_limit, control
):
    """Where the face is: within 4% of Face Mesh's points on every frame (ours 2.0-2.2%, the two
    schemes' own difference; the mean face fails). How it moves: no further from the photo's
    motion than the live filter's points (motion_errors: ours 0.18-0.34% of the eye distance; a
    filter that lags on the sample clip, 1.9%)."""
    images, times, matrices = known_motion_clip(name)
    truth = moved_reference(matrices)
    frames = tracked(MeanFaceModel(model.info) if control else model, None, images, times)
    raw = None if control else only_face(frames)  # before smoothing, which replaces the frames' points
    offline = smooth_offline(frames, model.info.codec.mean_face, camera_matrix(640, 480))
    assert (errors(offline, truth).max() < 0.04) != control
    if control:
        return
    live_points, offline_points = only_face(tracked(model, SmoothingParams(), images, times)), only_face(offline)
    live_motion, offline_motion = (
        motion_errors(live_points, matrices).mean(),
        motion_errors(offline_points, matrices).mean(),
    )
    print(
        f"{name}: motion error raw {100 * motion_errors(raw, matrices).mean():.3f}% live {100 * live_motion:.3f}% "
        f"offline {100 * offline_motion:.3f}%; jitter raw {jitter(raw, truth):.3f} live {jitter(live_points, truth):.3f} "
        f"offline {jitter(offline_points, truth):.3f} px"
    )
    assert offline_motion <= motion_limit * live_motion
    assert jitter(offline_points, truth) <= jitter_limit * jitter(live_points, truth)
    assert jitter(raw, truth) >= 2 * jitter(offline_points, truth)  # what the smoother removes is there to remove


def series_with_blinks(rng, frames=300, fps=30.0):
    """Eye aspect ratios of an open pair of eyes (0.30, noise 0.008, a slow drift as the head
    turns) with two blinks of both eyes and a wink of the right eye."""
    times = np.arange(frames) / fps
    right = 0.30 + 0.03 * np.sin(times / 3) + rng.normal(0, 0.008, frames)
    left = right + rng.normal(0, 0.008, frames)
    closing = np.array([0.5, 0.25, 0.15, 0.25, 0.6])  # fraction of the open level, frame by frame
    for start in (60, 200):
        right[start : start + 5] *= closing
        left[start : start + 5] *= closing
    right[130:135] *= closing
    return np.arange(frames), times, right, left


def test_blinks_and_a_wink_are_found_where_they_are_and_nowhere_else():
    frames, times, right, left = series_with_blinks(np.random.default_rng(3))
    found = detect_blinks(7, frames, times, right, left)
    assert [(b.eye, b.face_id) for b in found] == [("both", 7), ("right", 7), ("both", 7)]
    assert [abs(b.start_frame - s) <= 1 and abs(b.end_frame - (s + 3)) <= 1 for b, s in zip(found, (60, 130, 200))] == [
        True
    ] * 3
    assert found[0].start_time == pytest.approx(found[0].start_frame / 30)
    # Eyes that never close: no blink, whatever the noise and the drift.
    rng = np.random.default_rng(5)
    steady = 0.30 + 0.03 * np.sin(times / 3) + rng.normal(0, 0.008, 300)
    assert detect_blinks(0, frames, times, steady, steady + rng.normal(0, 0.008, 300)) == []


def test_eye_and_mouth_aspect_ratios_of_a_drawn_face():
    points = template_points()
    right, left = eye_aspect_ratios(points)
    assert right == pytest.approx(left) == pytest.approx(10 / 24)  # the template's eyes: 10 px tall, 24 wide
    closed = points.copy()
    closed[[37, 38, 43, 44], 1] += 5  # upper lids down to the corners' line
    closed[[40, 41, 46, 47], 1] -= 5
    assert eye_aspect_ratios(closed) == pytest.approx((0.0, 0.0))
    opened = points.copy()
    opened[[65, 66, 67], 1] += 20  # the jaw drops: the inner lower lip moves down
    assert mouth_aspect_ratio(opened) > mouth_aspect_ratio(points) + 0.3


@needs(SHARED_VIDEOS)
def test_on_real_clips_offline_smoothing_keeps_blinks_and_agreement_and_cuts_jitter():
    """Four clips of ../shared/videos (the longest one left out for time), against Face Mesh as
    `pipnet bench-quality --smooth offline|live` measures them."""
    from pipnet_core.evaluation.quality import measure_clip

    clips = [
        "expressions_hand_occlusion_640x360.mp4",
        "glasses_webcam_512x480.mp4",
        "news_anchor_700.mp4",
        "talking_head_turns_410.mp4",
    ]
    with Landmarker(detector="blazeface") as landmarker:
        offline = [measure_clip(SHARED_VIDEOS / clip, landmarker, "offline") for clip in clips]
        live = [measure_clip(SHARED_VIDEOS / clip, landmarker, "live") for clip in clips]
    for o, lv in zip(offline, live):
        print(o.row())
        assert o.jitter_ratio < lv.jitter_ratio
        assert o.agreement_p90 <= lv.agreement_p90 + 0.002
    assert np.median([o.jitter_ratio for o in offline]) <= 0.4

    def pooled_f1(results):
        return 2 * sum(r.blinks_matched for r in results) / sum(r.blinks_ours + r.blinks_mesh for r in results)

    print(f"blink F1: offline {pooled_f1(offline):.2f}, live {pooled_f1(live):.2f}")
    assert pooled_f1(offline) >= 0.8 > pooled_f1(live)

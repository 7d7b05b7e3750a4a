import numpy as np
import pytest

from pipnet_core.base.geometry import centred, fit_similarity
from pipnet_core.pipeline.pose import MODEL_3D, MODEL_INDEX, camera_matrix, estimate_pose
from pipnet_core.pipeline.smoothing import AlphaBetaFilter, LandmarkSmoother, OneEuroFilter


def rotation(yaw, pitch, roll):
    """Camera-frame rotation for the documented signs: +yaw turns the face to the image's right."""
    a, b, c = np.radians([-pitch, -yaw, roll])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def projected_face(yaw, pitch, roll, size=(640, 480)):
    camera = camera_matrix(*size)
    points3d = MODEL_3D @ rotation(yaw, pitch, roll).T + [15, -10, 650]
    image = points3d @ camera.T
    points = np.zeros((68, 2))
    points[MODEL_INDEX] = image[:, :2] / image[:, 2:]
    return points


@pytest.mark.parametrize("angles", [(0, 0, 0), (25, 0, 0), (0, 15, 0), (0, 0, -12), (-30, 10, 5)])
def test_head_pose_recovers_known_angles(angles):
    pose = estimate_pose(projected_face(*angles), camera_matrix(640, 480))
    np.testing.assert_allclose([pose.yaw, pose.pitch, pose.roll], angles, atol=0.5)


def test_pose_signs_match_what_the_image_shows():
    turned = projected_face(25, 0, 0)
    eye_middle = (turned[36] + turned[45]) / 2
    assert turned[30, 0] > eye_middle[0]  # +yaw: the nose swings to the image's right

    def nose_below_eyes(points):
        return points[30, 1] - (points[36, 1] + points[45, 1]) / 2

    # +pitch: the nose tip (in front of the eyes) rises towards them.
    assert nose_below_eyes(projected_face(0, 20, 0)) < nose_below_eyes(projected_face(0, 0, 0)) - 5


def test_one_euro_filter_removes_noise_on_a_still_signal():
    rng = np.random.default_rng(0)
    filt = OneEuroFilter(min_cutoff=0.5, beta=0.0)
    noisy = 10 + rng.normal(0, 1, 300)
    out = np.array([filt(np.array([v]), i / 30)[0] for i, v in enumerate(noisy)])
    assert out[100:].std() < 0.3 * noisy[100:].std()


def test_motion_tracker_follows_constant_velocity_without_lag():
    tracker = AlphaBetaFilter(0.5)
    for i in range(60):
        out = tracker(np.array([5.0 * i]), i / 30)
    assert out[0] == pytest.approx(5.0 * 59, abs=1e-3)


def test_similarity_fit_and_smoother_pass_a_rigidly_moving_shape_through():
    rng = np.random.default_rng(1)
    shape = rng.normal(0, 30, (68, 2))
    shape -= shape.mean(axis=0)
    centre, a, b = fit_similarity(shape, shape @ np.array([[0.8, -0.6], [0.6, 0.8]]).T * 2 + [100, 50])
    np.testing.assert_allclose([*centre, a, b], [100, 50, 1.6, 1.2], atol=1e-6)
    smoother = LandmarkSmoother(shape)
    for i in range(90):  # uniform translation: a constant-velocity tracker ends on the truth
        points = shape + [2.0 * i, 1.0 * i]
        out = smoother(points, i / 30)
    np.testing.assert_allclose(out, points, atol=0.05)


def test_the_middle_of_the_strength_knob_is_the_default_smoothing():
    from pipnet_core.pipeline.smoothing import SmoothingParams

    middle = SmoothingParams.from_strength(0.5)
    assert middle.min_cutoff == pytest.approx(SmoothingParams().min_cutoff)
    assert middle.motion_gain == pytest.approx(SmoothingParams().motion_gain)
    assert (
        SmoothingParams.from_strength(1.0).motion_gain
        < middle.motion_gain
        < SmoothingParams.from_strength(0.0).motion_gain
    )


def test_confidence_is_lowered_for_near_profile_views_and_implausible_shapes():
    from pipnet_core.model.onnx import OnnxLandmarkModel
    from pipnet_core.pipeline.plausibility import plausibility

    mean_face = OnnxLandmarkModel().info.codec.mean_face
    reference = centred(mean_face)
    face = mean_face * 1.7 + 40  # any position and size
    assert plausibility(face, reference, yaw=10.0) == 1.0
    assert plausibility(face, reference, yaw=-55.0) < 0.8 and plausibility(face, reference, yaw=80.0) == 0.5
    squashed = face.copy()
    squashed[:17, 0] = squashed[:17, 0].mean()  # the jaw collapsed onto one vertical line
    assert plausibility(squashed, reference, yaw=0.0) < 0.8

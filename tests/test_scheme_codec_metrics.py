import numpy as np
import pytest
from synthetic import template_points

from pipnet_core.base.scheme import FLIP_INDEX, LEFT_EYE_OUTER, RIGHT_EYE_OUTER
from pipnet_core.evaluation.evaluate import Evaluation
from pipnet_core.evaluation.metrics import auc, failure_rate, nme, point_errors
from pipnet_core.model.codec import PIPCodec


def test_flip_table_is_an_involution_that_swaps_the_eye_corners():
    assert np.array_equal(FLIP_INDEX[FLIP_INDEX], np.arange(68))
    assert FLIP_INDEX[LEFT_EYE_OUTER] == RIGHT_EYE_OUTER
    assert FLIP_INDEX[8] == 8 and FLIP_INDEX[30] == 30  # chin and nose tip stay


def test_flip_table_maps_a_mirrored_symmetric_face_onto_itself():
    face = template_points()
    mirrored = face * np.array([-1, 1])
    np.testing.assert_allclose(mirrored[FLIP_INDEX], face, atol=1e-4)
    assert not np.allclose(mirrored, face, atol=1)  # without re-indexing the points do not match


@pytest.fixture
def codec():
    rng = np.random.default_rng(0)
    faces = template_points() * 0.9 + 128 + rng.normal(0, 3, size=(50, 68, 2))
    return PIPCodec.fit(faces, num_neighbours=10, input_size=256, stride=32)


def test_fit_picks_the_nearest_other_points_as_neighbours(codec):
    assert codec.neighbours.shape == (68, 10)
    assert not np.any(codec.neighbours == np.arange(68)[:, None])
    # The inner eye corner's nearest points are on that eye.
    assert set(codec.neighbours[39, :3]) <= set(range(36, 42))


def test_encode_then_decode_returns_the_points(codec):
    rng = np.random.default_rng(1)
    points = np.stack([codec.mean_face + rng.normal(0, 6, size=(68, 2)) for _ in range(4)]).astype(np.float32)
    encoded = [codec.encode(p) for p in points]
    batched = type(encoded[0])(*(np.stack([getattr(e, f) for e in encoded]) for f in encoded[0].__dataclass_fields__))
    decoded, confidence = codec.decode(batched)
    assert np.abs(decoded - points).max() < 1e-3 * codec.input_size
    np.testing.assert_array_equal(confidence, 1.0)


def test_neighbour_votes_are_averaged_into_each_point(codec):
    points = codec.mean_face.copy()
    maps = codec.encode(points)
    # Corrupt landmark 30's own offset by one cell: the neighbours' votes pull it back.
    off_x = maps.offset_x.copy()
    off_x[30][maps.score[30] == 1] += 1.0
    corrupted = type(maps)(
        maps.score[None], off_x[None], maps.offset_y[None], maps.neighbour_x[None], maps.neighbour_y[None]
    )
    decoded, _ = codec.decode(corrupted)
    voters = np.count_nonzero(codec.neighbours == 30)
    assert voters > 0
    np.testing.assert_allclose(decoded[0, 30, 0] - points[30, 0], codec.stride / (1 + voters), rtol=1e-4)


def test_points_outside_the_crop_are_clamped_into_border_cells(codec):
    points = codec.mean_face.copy()
    points[0] = (-50, 300)
    maps = codec.encode(points)
    assert maps.score[0, -1, 0] == 1
    assert 0 <= maps.offset_x[0].max() <= 1 and 0 <= maps.offset_y[0].max() <= 1


def test_codec_survives_serialisation(codec):
    again = PIPCodec.from_dict(codec.to_dict())
    np.testing.assert_array_equal(again.neighbours, codec.neighbours)
    np.testing.assert_allclose(again.mean_face, codec.mean_face, atol=1e-4)


def test_nme_fr_auc_on_hand_computed_cases():
    truth = np.zeros((2, 68, 2))
    truth[:, RIGHT_EYE_OUTER] = (100, 0)  # outer-eye-corner distance 100
    predicted = truth.copy()
    predicted[0] += (3, 4)  # every point 5 px off -> 5%
    predicted[1, :34] += (20, 0)  # half the points 20 px off -> 10% mean
    np.testing.assert_allclose(nme(predicted, truth), [0.05, 0.10])
    assert point_errors(predicted, truth)[1, 0] == pytest.approx(0.2)
    assert failure_rate(np.array([0.05, 0.10, 0.2]), 0.1) == pytest.approx(1 / 3)  # 0.10 itself passes
    # One face at 0 error and one at 0.05: the CED is 0.5 until 0.05, then 1 -> area 0.75.
    assert auc(np.array([0.0, 0.05]), 0.1) == pytest.approx(0.75, abs=1e-3)
    assert auc(np.array([0.5]), 0.1) == 0.0


def test_an_evaluation_without_some_images_leaves_out_their_faces_and_misses():
    errors = np.repeat([[0.02], [0.5], [0.04]], 68, axis=1)
    result = Evaluation(["a.jpg", "b.jpg", "c.jpg"], errors, missed=["b.jpg", "d.jpg"])
    kept = result.without({"b.jpg"})
    assert kept.names == ["a.jpg", "c.jpg"] and kept.missed == ["d.jpg"]
    summary = kept.summary()
    assert summary["faces"] == 3 and summary["nme"] == pytest.approx(0.03)
    assert summary["fr@0.10"] == pytest.approx(1 / 3)  # the missed face is a failure

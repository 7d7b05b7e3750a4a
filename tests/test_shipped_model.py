"""The model in models/ on real faces."""

import numpy as np
import pytest
from synthetic import SHARED_DATA, needs

from pipnet_core.base.crop import CropBox, crop_matrix, to_network_input, warp
from pipnet_core.evaluation.evaluate import evaluate
from pipnet_core.io.labels import read_labeled
from pipnet_core.io.resources import INT8_MODEL_FILE, MODEL_FILE, packaged_model, shipped_model
from pipnet_core.io.sample_clip import face_photo
from pipnet_core.model.onnx import OnnxLandmarkModel
from pipnet_core.pipeline.landmarker import Landmarker

HELEN_TEST = SHARED_DATA / "300w_subset" / "helen" / "testset"


def test_the_shipped_model_is_small_and_self_describing(model):
    assert shipped_model().stat().st_size < 25 * 2**20
    assert model.info.num_points == 68 and model.info.codec.num_neighbours == 10


def test_features_land_in_anatomical_order_on_the_astronaut(model):
    faces = Landmarker(model).process_image(face_photo())
    assert len(faces) == 1
    p = faces[0].points
    right_eye, left_eye = p[36:42].mean(axis=0), p[42:48].mean(axis=0)  # image left, image right
    nose_tip, mouth, chin = p[30], p[48:68].mean(axis=0), p[8]
    brows = p[17:27].mean(axis=0)
    assert brows[1] < min(right_eye[1], left_eye[1])
    assert max(right_eye[1], left_eye[1]) < nose_tip[1] < mouth[1] < chin[1]
    assert right_eye[0] < nose_tip[0] < left_eye[0]
    assert p[48, 0] < p[54, 0] and p[0, 0] < p[16, 0]  # mouth corners and jaw ends left to right
    # Inside the face of the photo (x 170-280, y 75-200, checked by eye), eyes roughly level.
    assert (p[:, 0] > 160).all() and (p[:, 0] < 290).all() and (p[:, 1] > 70).all() and (p[:, 1] < 210).all()
    assert abs(right_eye[1] - left_eye[1]) < 10


@needs(HELEN_TEST)
def test_helen_test_nme_is_what_the_model_card_says_for_the_float_model_and_its_int8_twin():
    # All 330 faces, thresholds just above the card's 3.26% (float, model 1.2.1): a regression of
    # more than 0.05 points fails (1.2.0's 3.36% would); the INT8 twin (3.27% on the card), the
    # runtime's default, within 0.1 points of the float model, as pipnet quantize promises.
    faces = read_labeled(HELEN_TEST)
    float_result = evaluate(OnnxLandmarkModel(shipped_model(prefer_int8=False)), faces).summary()
    int8_result = evaluate(OnnxLandmarkModel(), faces).summary()
    assert float_result["faces"] == 330 and float_result["nme"] < 0.0331 and float_result["fr@0.10"] == 0
    assert int8_result["nme"] < float_result["nme"] + 0.001 and int8_result["fr@0.10"] == 0


def face_crops(model, points) -> np.ndarray:
    """The photo's face cropped as the runtime crops it, then shifted, turned and scaled."""
    crop = CropBox.around_points(points, model.info.crop_scale)
    size = model.info.input_size
    views = [(0, 0, 0, 1.0), (12, -8, 0, 1.0), (0, 0, 25, 1.0), (-6, 10, -40, 1.2), (0, 0, 180, 0.9)]
    return np.stack(
        [
            warp(
                face_photo(),
                crop_matrix(CropBox(crop.cx + dx, crop.cy + dy, crop.side * scale, crop.roll + turn), size),
                size,
            )
            for dx, dy, turn, scale in views
        ]
    )


@pytest.mark.parametrize("file", [MODEL_FILE, INT8_MODEL_FILE])
def test_the_shipped_models_decode_in_their_graph_as_the_codec_does(file):
    """The points and confidence the graph outputs against codec.decode of the same run's maps:
    within 1e-4 of the crop side (a decode without the neighbour vote is 0.41 of it off here)."""
    model = OnnxLandmarkModel(packaged_model(file))
    assert model.decodes_in_graph
    batch = to_network_input(face_crops(model, Landmarker(model).process_image(face_photo())[0].points))
    points, confidence = model.network_outputs(batch)
    expected, expected_confidence = model.info.codec.decode(model.grid_outputs(batch))
    assert np.abs(points - expected).max() / model.info.input_size <= 1e-4
    assert np.abs(confidence - expected_confidence).max() <= 1e-6


def test_a_model_without_the_graph_decode_gives_the_same_points(model, tmp_path):
    """Models exported before the decode moved into the graph are decoded by numpy, as before."""
    import onnx

    from pipnet_core.training.graph_decode import without_decoder

    proto = onnx.load(str(model.path))
    without_decoder(proto)
    onnx.save(proto, str(tmp_path / "maps_only.onnx"))
    older = OnnxLandmarkModel(tmp_path / "maps_only.onnx")
    assert not older.decodes_in_graph and len(older.session.get_outputs()) == 5
    crops = face_crops(model, Landmarker(model).process_image(face_photo())[0].points)
    (points, confidence), (old_points, old_confidence) = model.predict(crops), older.predict(crops)
    assert np.abs(points - old_points).max() / model.info.input_size <= 1e-4
    assert np.abs(confidence - old_confidence).max() <= 1e-6


def test_the_runtime_prefers_the_int8_twin_and_the_float_model_stays_available():
    assert OnnxLandmarkModel().path.name == INT8_MODEL_FILE
    assert OnnxLandmarkModel(shipped_model(prefer_int8=False)).path.name == MODEL_FILE
    for prefer in (True, False):
        assert shipped_model(prefer).stat().st_size < 25 * 2**20


@needs(SHARED_DATA / "300w_subset" / "helen" / "trainset")
def test_quantize_keeps_the_metadata_and_refuses_a_model_beyond_its_tolerance(tmp_path):
    from pipnet_core.training.quantize import quantize

    faces = read_labeled(SHARED_DATA / "300w_subset" / "helen" / "trainset")
    calibration, check = faces[:40:2], faces[1:40:2]
    source = shipped_model(prefer_int8=False)
    kept = quantize(source, tmp_path / "int8.onnx", calibration, check, tolerance=0.003)
    assert kept.path == tmp_path / "int8.onnx" and abs(kept.nme_change) < 0.003
    int8 = OnnxLandmarkModel(kept.path)
    assert int8.info.name == "pipnet_mbv2_68" and int8.info.codec.num_neighbours == 10 and int8.decodes_in_graph
    refused = quantize(source, tmp_path / "refused.onnx", calibration, check, tolerance=-1.0)
    assert refused.path is None and not (tmp_path / "refused.onnx").exists()

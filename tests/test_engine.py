"""The real-time engine on the shipped model: detection, tracking, smoothing, batching, bad input."""

import numpy as np
import pytest
from synthetic import (
    MeanFaceModel,
    astronaut_reference,
    motion_errors,
    moved_reference,
    reference_error,
    reference_errors,
    shared_points,
)

from pipnet_core.base.crop import CropBox, crop_matrix, invert, transform_points
from pipnet_core.base.errors import PipnetError
from pipnet_core.detection.blazeface import BlazeFaceDetector
from pipnet_core.io.sample_clip import ClipSpec, face_photo, generate
from pipnet_core.io.state_codec import decode_state, encode_state
from pipnet_core.model.onnx import OnnxLandmarkModel
from pipnet_core.pipeline.landmarker import Landmarker
from pipnet_core.pipeline.smoothing import SmoothingParams
from pipnet_core.pipeline.tracking import TrackerConfig

# The astronaut's face in scikit-image's photo (x0, y0, x1, y1), checked by eye.
ASTRONAUT_FACE = (170, 75, 280, 200)


def inside(point, box, margin=0):
    return box[0] - margin <= point[0] <= box[2] + margin and box[1] - margin <= point[1] <= box[3] + margin


def test_the_detector_finds_the_astronaut():
    detections = BlazeFaceDetector().detect(face_photo())
    assert len(detections) == 1
    x, y, w, h = detections[0].box
    assert inside((x + w / 2, y + h / 2), ASTRONAUT_FACE) and 60 < w < 160


@pytest.mark.parametrize("control", [False, True], ids=["shipped model", "mean-face control"])
def test_still_image_landmarks_land_on_the_face(model, control):
    """Within 4% of the eye distance of Face Mesh's points (ours: about 2%); a model that always
    outputs the mean face (about 10% here) must fail."""
    faces = Landmarker(MeanFaceModel(model.info) if control else model).process_image(face_photo())
    assert len(faces) == 1
    face = faces[0]
    assert all(inside(p, ASTRONAUT_FACE, margin=10) for p in face.points)
    assert face.mean_confidence > 0.3 and face.success
    assert abs(face.pose.yaw) < 25 and abs(face.pose.roll) < 15
    assert (reference_error(face.points, astronaut_reference()) < 0.04) != control


def clip_frames(faces=1, frames=60):
    return list(generate(ClipSpec(frames=frames, faces=faces)))


def run(landmarker, frames):
    return [landmarker.process(frame, t) for frame, t, _ in frames]


def test_tracking_keeps_one_id_on_a_moving_face(model):
    results = run(Landmarker(model, tracking=TrackerConfig(redetect_interval=10)), clip_frames(frames=90))
    assert all(len(faces) == 1 for faces in results)
    assert {faces[0].id for faces in results} == {0}


def test_a_face_that_leaves_and_returns_gets_a_new_id(model):
    frames = clip_frames(frames=60)
    blank = [(np.full_like(frames[0][0], 90), t, []) for _, t, _ in frames[20:35]]
    sequence = frames[:20] + blank + frames[35:]
    results = run(Landmarker(model), sequence)
    assert {f.id for faces in results[:20] for f in faces} == {0}
    assert all(not faces for faces in results[21:35])  # the frame it vanishes may still show it once
    assert {f.id for faces in results[40:] for f in faces} == {1}


def test_a_track_the_detector_stops_confirming_is_dropped(model):
    """A model confident on anything (always the mean face, full score) would keep a track alive
    forever once the face has gone; the detector's confirmation ends it within two detections."""
    frames = clip_frames(frames=20)
    blank = [(np.full_like(frames[0][0], 90), t, []) for _, t, _ in clip_frames(frames=60)[20:]]
    always_sure = Landmarker(MeanFaceModel(model.info), tracking=TrackerConfig(redetect_interval=10))
    results = run(always_sure, frames + blank)
    assert all(len(faces) == 1 for faces in results[:20])
    assert all(not faces for faces in results[45:])  # detections at frames 20 and 30 fail to confirm it


def test_three_faces_are_tracked_with_distinct_stable_ids(model):
    results = run(Landmarker(model, max_faces=3), clip_frames(faces=3, frames=40))
    assert all(len(faces) == 3 for faces in results[1:])
    assert {f.id for f in results[-1]} == {f.id for f in results[1]}
    assert len({f.id for f in results[-1]}) == 3


def test_max_faces_caps_the_number_of_tracks(model):
    results = run(Landmarker(model, max_faces=2), clip_frames(faces=3, frames=5))
    assert all(len(faces) <= 2 for faces in results) and len(results[-1]) == 2


def test_a_batch_gives_the_same_points_as_one_by_one(model):
    frame, _, matrices = clip_frames(faces=3, frames=1)[0]
    reference = Landmarker(model, max_faces=3).process_image(frame)
    crops = [
        crop_matrix(CropBox.around_points(f.points, model.info.crop_scale), model.info.input_size) for f in reference
    ]
    together, _ = model.predict_in_frames([frame] * 3, crops)
    for i, matrix in enumerate(crops):
        alone, _ = model.predict_in_frames([frame], [matrix])
        np.testing.assert_allclose(alone[0], together[i], atol=1e-3)


@pytest.mark.parametrize("control", [False, True], ids=["shipped model", "mean-face control"])
def test_smoothing_cuts_jitter_at_least_2x_and_costs_at_most_10_percent_nme(model, control):
    """Where the face is: Face Mesh's points on the still photo, moved like the photo (ours 2.1%
    from them; the mean face must fail). What smoothing costs: the points' error against the
    photo's own motion (motion_errors; raw 0.49%, smoothed 0.44% of the eye distance, a filter
    that lags 1.9%)."""
    frames = clip_frames(frames=150)
    matrices = [m[0] for _, _, m in frames]
    truth = moved_reference(matrices)

    def track(smoothing):  # NaN where the face is lost
        landmarker = Landmarker(MeanFaceModel(model.info) if control else model, smoothing=smoothing)
        with landmarker:
            return np.stack(
                [faces[0].points if faces else np.full((68, 2), np.nan) for faces in run(landmarker, frames)]
            )

    def jitter(points):  # frame-to-frame change of the error: what the eye sees as trembling
        return np.linalg.norm(np.diff(shared_points(points) - truth, axis=0), axis=-1).mean()

    raw = track(False)
    assert (reference_errors(raw, truth).mean() < 0.04) != control  # the tracked points are where the face is
    if not control:
        smooth = track(SmoothingParams())
        assert jitter(raw) >= 2 * jitter(smooth)
        assert motion_errors(smooth, matrices).mean() <= 1.10 * motion_errors(raw, matrices).mean()


@pytest.mark.parametrize(
    "frame",
    [
        np.zeros((480, 640, 3), np.uint8),
        np.zeros((1, 1, 3), np.uint8),
        np.zeros((480, 640), np.uint8),
        np.zeros((480, 640, 4), np.uint8),
    ],
    ids=["black", "1x1", "grey", "rgba"],
)
def test_degenerate_frames_give_no_face_and_no_exception(model, frame):
    assert Landmarker(model).process(frame) == []


def test_grey_and_rgba_versions_of_a_face_are_found(model):
    import cv2

    photo = face_photo()
    for frame in (cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY), cv2.cvtColor(photo, cv2.COLOR_BGR2BGRA)):
        faces = Landmarker(model).process_image(frame)
        assert len(faces) == 1 and inside(faces[0].points[30], ASTRONAUT_FACE)


def test_missing_or_wrong_model_files_give_clear_errors(tmp_path):
    with pytest.raises(PipnetError, match="model file not found"):
        OnnxLandmarkModel(tmp_path / "nope.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a model")
    with pytest.raises(PipnetError, match="not a loadable ONNX model"):
        OnnxLandmarkModel(garbage)
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    other = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(other))
    with pytest.raises(PipnetError, match="not a PIPNet model"):
        OnnxLandmarkModel(other)


class RejectingModel:
    """The shipped model, but while ``rejecting`` every point's confidence is 0: the model saying
    "not a face" to whatever the detector found."""

    def __init__(self, model):
        self.model, self.info, self.rejecting = model, model.info, True

    def predict_in_frames(self, frames, matrices, timings=None):
        points, confidence = self.model.predict_in_frames(frames, matrices, timings)
        return points, confidence * (0.0 if self.rejecting else 1.0)

    def close(self):
        pass


def test_detections_the_model_rejects_get_no_id_and_no_face(model):
    stand_in = RejectingModel(model)
    landmarker = Landmarker(model)
    landmarker.aligner.model = stand_in
    frames = clip_frames(frames=20)
    rejected = run(landmarker, frames[:10])
    assert rejected == [[]] * 10  # neither a face nor a "lost" row for something never accepted
    stand_in.rejecting = False
    accepted = run(landmarker, frames[10:])
    assert {f.id for faces in accepted for f in faces} == {0}  # the first face the model accepts is face 0


def threads_of_this_process() -> int:
    with open("/proc/self/status") as status:
        return int(status.read().split("Threads:")[1].split()[0])


def test_closing_landmarkers_and_detectors_releases_their_threads():
    """Each landmarker holds ONNX Runtime sessions (the model, the video and stills
    detectors), each with threads of its own: closed, they are gone, even while the objects live."""
    photo = face_photo()
    with Landmarker(detector="blazeface-both") as warm:  # libraries' one-time threads start here
        warm.process_image(photo)
    before = threads_of_this_process()
    kept = []
    for _ in range(4):
        with Landmarker(detector="blazeface-both") as landmarker:
            assert len(landmarker.process_image(photo)) == 1 and len(landmarker.process(photo)) == 1
        kept.append(landmarker)
    assert threads_of_this_process() <= before + 1


class CountingDetector:
    name = "counting"

    def __init__(self):
        self.closed = 0

    def detect(self, frame):
        return []

    def close(self):
        self.closed += 1


def test_a_landmarker_closes_the_detectors_it_made_and_not_the_callers(model, monkeypatch):
    from pipnet_core.pipeline import landmarker as landmarker_module

    made = []
    monkeypatch.setattr(landmarker_module, "create_detector", lambda *args: made.append(CountingDetector()) or made[-1])
    theirs = CountingDetector()
    landmarker = Landmarker(model, detector="blazeface")
    landmarker.set_detector("blazeface-full")  # replaces one it made: closed
    landmarker.set_detector(theirs)  # replaces another it made: closed; the caller's is not
    landmarker.set_detector("blazeface")
    landmarker.close()
    assert [d.closed for d in made] == [1, 1, 1] and theirs.closed == 0
    assert model.session is not None  # the model was passed in too: still usable


def test_a_restored_video_state_continues_exactly_like_the_uninterrupted_run(model):
    frames = clip_frames(frames=50)
    whole = Landmarker(model)
    results = run(whole, frames[:30])
    saved = encode_state("video", whole.video_state())  # through the file format --resume reads
    results += run(whole, frames[30:])
    resumed = Landmarker(model)
    resumed.restore_video_state(decode_state(saved, "video", "test.progress"))
    continued = run(resumed, frames[30:])
    assert [[f.id for f in faces] for faces in continued] == [[f.id for f in faces] for faces in results[30:]]
    np.testing.assert_array_equal(
        np.stack([faces[0].points for faces in continued]), np.stack([faces[0].points for faces in results[30:]])
    )
    cold = Landmarker(model)  # the plausible wrong answer: start again from the detector
    restarted = run(cold, frames[30:])
    assert not np.array_equal(restarted[5][0].points, results[35][0].points)


class ShapeModel:
    """The mean face, or the mean face with its points shuffled (no face has that shape), at a
    raw confidence of 0.7 whatever the crop."""

    def __init__(self, info, scrambled):
        self.info = info
        shape = info.codec.mean_face.copy()
        self.shape = shape[np.random.default_rng(0).permutation(len(shape))] if scrambled else shape

    def predict_in_frames(self, frames, matrices, timings=None):
        points = [transform_points(self.shape, invert(m)) for m in matrices]  # mean face: crop pixels
        return np.stack(points).astype(np.float32), np.full((len(matrices), len(self.shape)), 0.7, np.float32)

    def close(self):
        pass


def test_a_new_detection_with_an_implausible_shape_is_not_a_face_in_video(model):
    frames = clip_frames(frames=5)
    for scrambled, expected in ((True, [[]] * 5), (False, [[0]] * 5)):
        landmarker = Landmarker(model)
        landmarker.aligner.model = ShapeModel(model.info, scrambled)
        assert [[f.id for f in faces] for faces in run(landmarker, frames)] == expected


def test_a_still_between_video_frames_leaves_the_video_s_faces_and_ids_alone(model):
    """process_image used to drop every track (the next video frame re-detected, with a new id)."""
    frames = clip_frames(frames=30)
    landmarker = Landmarker(model)
    before = run(landmarker, frames[:15])
    tracks = list(landmarker.tracker.tracks)
    stills = landmarker.process_image(face_photo())
    assert [f.id for f in stills] == [0] and landmarker.tracker.tracks == tracks
    after = run(landmarker, frames[15:])
    assert {f.id for faces in before + after for f in faces} == {0} and all(len(faces) == 1 for faces in after)
    assert landmarker.tracker.tracks[0] is tracks[0]  # the same track went on


def test_faces_the_caller_found_are_used_instead_of_the_detector(model):
    """face-alignment's detected_faces: boxes (x, y, w, h) from the caller's own detector."""
    landmarker = Landmarker(model)
    x0, y0, x1, y1 = ASTRONAUT_FACE
    given = landmarker.process_image(face_photo(), detected_faces=[(x0, y0, x1 - x0, y1 - y0)])
    found = landmarker.process_image(face_photo())
    assert len(given) == 1 and reference_error(given[0].points, astronaut_reference()) < 0.04
    # The same face as the detector's: within a pixel or two (another crop of it moves the points a little).
    assert np.abs(given[0].points - found[0].points).max() < 1.5
    assert landmarker.process_image(face_photo(), detected_faces=[]) == []
    with pytest.raises(PipnetError, match="x, y, width, height"):
        landmarker.process_image(face_photo(), detected_faces=[(170, 75, 280)])
    # A box on the background is not a face the model accepts.
    assert landmarker.process_image(face_photo(), detected_faces=[(10, 400, 90, 90)]) == []


def test_rgb_frames_give_the_same_faces_as_their_bgr_originals(model):
    photo = face_photo()
    bgr = Landmarker(model).process_image(photo)
    rgb = Landmarker(model, rgb=True).process_image(np.ascontiguousarray(photo[..., ::-1]))
    swapped = Landmarker(model).process_image(np.ascontiguousarray(photo[..., ::-1]))  # told nothing: wrong colours
    assert len(bgr) == len(rgb) == 1 and np.array_equal(bgr[0].points, rgb[0].points)
    assert not swapped or not np.array_equal(swapped[0].points, bgr[0].points)

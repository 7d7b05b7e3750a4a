"""Faces as people show them to a camera: turned by any angle, small and far, several at once,
photos with an EXIF orientation. Each test names the wrong answer it rules out."""

import cv2
import numpy as np
import pytest
from synthetic import MeanFaceModel, astronaut_reference, reference_error, template_points

from pipnet_core.base.crop import CropBox, crop_matrix, face_roll, rotation, transform_points
from pipnet_core.detection.blazeface import BlazeFaceDetector
from pipnet_core.detection.search import QuarterTurnDetector
from pipnet_core.evaluation.evaluate import evaluate_clip, rotated_view, small_face_view
from pipnet_core.evaluation.metrics import point_errors
from pipnet_core.io.sample_clip import ClipSpec, face_photo, render_frame
from pipnet_core.pipeline.landmarker import Landmarker

CONTROL = pytest.mark.parametrize("control", [False, True], ids=["shipped model", "mean-face control"])


@pytest.fixture(scope="module")
def landmarker(model):
    return Landmarker(model, smoothing=False)


@pytest.fixture(scope="module")
def upright_points(landmarker):
    faces = landmarker.process_image(face_photo())
    assert len(faces) == 1
    return faces[0].points


@pytest.mark.parametrize("degrees", [0, 37, 90, 180, -120])
def test_the_model_crop_is_the_same_upright_face_whatever_the_roll(degrees):
    # An axis-aligned crop would show the face turned by `degrees`.
    points = template_points() + 300
    turned = (points - 300) @ rotation(degrees).T + 300
    assert abs((face_roll(turned) - degrees + 180) % 360 - 180) < 1e-6
    upright = transform_points(points, crop_matrix(CropBox.around_points(points, 1.2), 192))
    again = transform_points(turned, crop_matrix(CropBox.around_points(turned, 1.2), 192))
    np.testing.assert_allclose(again, upright, atol=1e-3)


@pytest.mark.parametrize("turn", [cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_180, cv2.ROTATE_90_COUNTERCLOCKWISE])
def test_the_quarter_turn_detector_finds_a_turned_face_and_its_roll(turn):
    # The upright detector alone misses an upside-down face or gives it the wrong roll.
    photo = face_photo()
    expected_roll = {cv2.ROTATE_90_CLOCKWISE: 90, cv2.ROTATE_180: 180, cv2.ROTATE_90_COUNTERCLOCKWISE: -90}[turn]
    detections = QuarterTurnDetector(BlazeFaceDetector()).detect(cv2.rotate(photo, turn))
    assert len(detections) == 1
    difference = (detections[0].roll - expected_roll + 180) % 360 - 180
    assert abs(difference) < 20


# The astronaut's head and shoulders (x0, y0, x1, y1): the orange suit of the whole photo, turned
# upside down, is face-like enough for BlazeFace to find a second "face" in it.
HEAD = (110, 10, 340, 260)


def framed(view, image, upright_points, origin=(0, 0)):
    """The view of the image (the photo from ``origin`` on) and where it puts Face Mesh's 8
    reference points (framed by our upright landmarks, as every view is, whichever model is judged)."""
    points = np.vstack([upright_points, astronaut_reference()]) - origin
    shown, moved = view(image, points)
    return shown, moved[len(upright_points) :]


@CONTROL
@pytest.mark.parametrize("degrees", [0, 60, 135, 180, -100])
def test_still_landmarks_follow_a_turned_photo(model, landmarker, upright_points, degrees, control):
    # The axis-aligned pipeline put the points on the wrong part of the face beyond about 45
    # degrees (36-73% NME on real faces); upright crops keep them where the turn puts them.
    # Judged against Face Mesh's points turned with the photo (ours: about 2%, the mean face 5-13%).
    x0, y0, x1, y1 = HEAD
    head = np.ascontiguousarray(face_photo()[y0:y1, x0:x1])
    image, expected = framed(rotated_view(degrees), head, upright_points, (x0, y0))
    judged = Landmarker(MeanFaceModel(model.info), smoothing=False) if control else landmarker
    faces = judged.process_image(image)
    assert len(faces) == 1
    error = reference_error(faces[0].points, expected)
    print(f"{degrees} degrees: {100 * error:.1f}%")
    assert (error < 0.04) != control


@CONTROL
def test_a_face_rolling_through_a_half_turn_keeps_one_id_and_its_accuracy(model, control):
    # 180 degrees in 3 s at 60 deg/s: a tracker that crops axis-aligned loses the face near 90.
    # (The mean-face control loses it, takes 3 ids and ends at 73% NME.)
    landmarker = Landmarker(MeanFaceModel(model.info) if control else model)
    rolling = evaluate_clip(landmarker, ClipSpec(frames=90, roll_speed=60.0))
    still = evaluate_clip(landmarker, ClipSpec(frames=90))
    kept = rolling.tracked == rolling.frames and len(rolling.ids) == 1
    assert (kept and rolling.nme.mean() <= 1.2 * still.nme.mean() + 0.002) != control


@CONTROL
@pytest.mark.parametrize("height", [45, 70])
def test_small_faces_in_a_wide_frame_are_found_by_stills(model, landmarker, upright_points, height, control):
    # BlazeFace short range alone finds no face this small (checked below).
    # The still search may also take a face-like patch for a face (the suit's round mission
    # patch, at a lower confidence): the face must be found, and be the most confident.
    # Judged against Face Mesh's points moved with the photo (not against our own upright points,
    # which a model that always outputs the mean face would match); the mean-face control must fail.
    image, expected = framed(small_face_view(height), face_photo(), upright_points)
    assert BlazeFaceDetector().detect(image) == []
    judged = Landmarker(MeanFaceModel(model.info), smoothing=False) if control else landmarker
    faces = sorted(judged.process_image(image), key=lambda f: -f.mean_confidence)
    assert faces
    error = reference_error(faces[0].points, expected)
    print(f"{height} px: {100 * error:.1f}%")  # ours about 2%, the mean face 7-19%
    assert (error < 0.05) != control


def test_stills_find_every_face_by_default(landmarker):
    # process_image used to return one face per photo.
    frame, matrices = render_frame(face_photo(), 0.0, ClipSpec(faces=3, noise=0), np.random.default_rng(0))
    faces = landmarker.process_image(frame)
    assert len(faces) == 3
    assert len(landmarker.process_image(frame, max_faces=2)) == 2


def test_a_photo_with_an_exif_orientation_is_read_upright(tmp_path, landmarker):
    # A camera held sideways stores the picture turned and says so in EXIF; ignoring the tag
    # would hand the pipeline a face lying on its side.
    from PIL import Image

    from pipnet_core.io.images import load_image

    stored = cv2.rotate(face_photo(), cv2.ROTATE_90_COUNTERCLOCKWISE)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    path = tmp_path / "sideways.jpg"
    Image.fromarray(cv2.cvtColor(stored, cv2.COLOR_BGR2RGB)).save(path, exif=exif, quality=95)
    image = load_image(path)
    assert image.shape == face_photo().shape
    faces = landmarker.process_image(image)
    assert len(faces) == 1 and abs(face_roll(faces[0].points)) < 15


class MarkerDetector:
    """A stand-in detector for a marker "face": a bright top half (the eyes) over a dimmer bottom
    half. Like a detector trained on upright faces, it reports the marker only upright (bright
    half on top, wider than tall), with the "eyes" at the top corners; like BlazeFace on a large
    frame, it misses a marker narrower than 5% of the frame it is given."""

    name = "marker"

    def detect(self, frame):
        from pipnet_core.detection.detector import Detection

        bright, dim = frame[..., 0] > 200, (frame[..., 0] > 100) & (frame[..., 0] <= 200)
        if not bright.any() or not dim.any():
            return []
        x, y, w, h = cv2.boundingRect((bright | dim).astype(np.uint8))
        upright = np.argwhere(bright)[:, 0].mean() < np.argwhere(dim)[:, 0].mean() and w > h
        if not upright or w < 0.05 * frame.shape[1]:
            return []
        return [Detection((float(x), float(y), float(w), float(h)), 0.9, self.name, (x, y, x + w, y))]

    def close(self):
        pass


def marker_frame(box, size=(1280, 720)):
    frame = np.zeros((size[1], size[0], 3), np.uint8)
    x, y, w, h = box
    frame[y : y + h // 2, x : x + w] = 255
    frame[y + h // 2 : y + h, x : x + w] = 150
    return frame


@pytest.mark.parametrize(
    "turn, roll", [(cv2.ROTATE_90_CLOCKWISE, 90), (cv2.ROTATE_180, 180), (cv2.ROTATE_90_COUNTERCLOCKWISE, -90)]
)
def test_quarter_turn_detections_come_back_to_the_frame_they_were_found_in(turn, roll):
    # The marker is upright only in one turned copy of the frame, so its box and eyes must be
    # mapped back through that turn; a wrong mapping puts them elsewhere or gives the wrong roll.
    from pipnet_core.detection.search import QuarterTurnDetector

    frame = cv2.rotate(marker_frame((300, 200, 100, 60)), turn)
    assert MarkerDetector().detect(frame) == []
    found = QuarterTurnDetector(MarkerDetector()).detect(frame)
    assert len(found) == 1
    np.testing.assert_allclose(found[0].box, cv2.boundingRect((frame[..., 0] > 100).astype(np.uint8)), atol=1)
    assert abs((found[0].roll - roll + 180) % 360 - 180) < 1


def test_tiles_find_a_face_too_small_for_the_whole_frame():
    from pipnet_core.detection.search import TiledDetector

    small = (700, 300, 40, 30)  # 3% of 1280: missed whole, found in a 540 px tile
    assert MarkerDetector().detect(marker_frame(small)) == []
    found = TiledDetector(MarkerDetector()).detect(marker_frame(small))
    assert len(found) == 1 and np.allclose(found[0].box, small, atol=1)
    assert found[0].eyes == (700, 300, 740, 300)


def test_a_new_upside_down_face_is_found_in_its_first_frame_with_few_model_passes(model):
    """The turned-frame search runs the three turns as one batch and only the best turn again
    (it used to run all three twice, one by one: 9 model calls and 9 crops for this frame, now
    5 calls and 7 crops)."""
    upright = render_frame(face_photo(), 0.0, ClipSpec(noise=0), np.random.default_rng(0))[0]
    frame = cv2.rotate(upright, cv2.ROTATE_180)
    landmarker = Landmarker(model)
    calls = []
    real = model.predict_in_frames
    model.predict_in_frames = lambda frames, *rest: (calls.append(len(frames)), real(frames, *rest))[1]
    try:
        faces = landmarker.process(frame, 0.0)
    finally:
        del model.predict_in_frames
    expected = Landmarker(model).process(upright, 0.0)[0].points
    h, w = frame.shape[:2]
    turned_back = np.stack([w - 1 - faces[0].points[:, 0], h - 1 - faces[0].points[:, 1]], axis=1)
    assert len(faces) == 1 and faces[0].mean_confidence > 0.7
    assert point_errors(turned_back[None], expected[None]).mean() < 0.02
    assert 3 in calls and len(calls) <= 5 and sum(calls) <= 7, calls  # the turns ran, as one batch

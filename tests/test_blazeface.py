"""BlazeFace through ONNX Runtime against MediaPipe's own detector, where mediapipe is importable:
the same faces, boxes and eyes within a pixel, scores within 0.02, on photos and real video frames."""

import cv2
import numpy as np
import pytest
from synthetic import SHARED_DATA, SHARED_VIDEOS

from pipnet_core.base.errors import PipnetError
from pipnet_core.detection.blazeface import BLAZEFACE, BlazeFaceDetector, ssd_anchor_centres
from pipnet_core.io.sample_clip import ClipSpec, face_photo, generate


def reference_or_skip(model_range):
    from pipnet_core.evaluation.face_mesh import MediaPipeFaceDetection

    try:
        return MediaPipeFaceDetection(model_range)
    except PipnetError as exc:
        pytest.skip(str(exc))


def pictures():
    """640x480 pictures: the astronaut, three faces, HELEN test photos and frames of the real clips
    when ../shared is here."""
    photo = face_photo()
    found = [
        cv2.resize(photo, (640, 480)),
        next(generate(ClipSpec(frames=1, faces=3)))[0],
        cv2.rotate(cv2.resize(photo, (640, 480)), cv2.ROTATE_90_CLOCKWISE),
    ]  # portrait: letterboxed sideways
    found += [
        cv2.resize(cv2.imread(str(p)), (640, 480))
        for p in sorted((SHARED_DATA / "300w_subset" / "helen" / "testset").glob("*.jpg"))[:12]
    ]
    for clip in sorted(SHARED_VIDEOS.glob("*.m*")) if SHARED_VIDEOS.is_dir() else []:
        capture = cv2.VideoCapture(str(clip))
        for index in (0, 40, 90):
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, frame = capture.read()
            if ok:
                found.append(cv2.resize(frame, (640, 480)))
        capture.release()
    return found


@pytest.mark.parametrize("model_range", ["short", "full"])
def test_boxes_eyes_and_scores_match_mediapipes_own_detector(model_range):
    reference = reference_or_skip(model_range)
    ours = BlazeFaceDetector(0.5, min_size=0, model_range=model_range)
    faces, worst = 0, np.zeros(3)
    try:
        for picture in pictures():
            theirs = sorted(reference.detect(picture))
            mine = sorted((d.box, d.eyes, d.score) for d in ours.detect(picture))
            assert len(mine) == len(theirs)
            for (box, eyes, score), (their_box, their_eyes, their_score) in zip(mine, theirs):
                worst = np.maximum(
                    worst,
                    [
                        np.abs(np.subtract(box, their_box)).max(),
                        np.abs(np.subtract(eyes, their_eyes)).max(),
                        abs(score - their_score),
                    ],
                )
            faces += len(theirs)
    finally:
        reference.close()
        ours.close()
    # `pytest tests/test_blazeface.py -s` prints what docs/results.md and the model card quote.
    print(
        f"{model_range} range, {faces} faces: largest differences box {worst[0]:.3f} px, eyes {worst[1]:.3f} px, "
        f"score {worst[2]:.4f}"
    )
    assert worst[0] <= 1.0 and worst[1] <= 1.0 and worst[2] <= 0.02
    assert faces >= 4  # without ../shared: of the astronaut (twice) and the three synthetic faces


def test_anchors_are_mediapipes_grids():
    short, full = ssd_anchor_centres(BLAZEFACE["short"]), ssd_anchor_centres(BLAZEFACE["full"])
    assert short.shape == (896, 2) and full.shape == (2304, 2)
    # Short range: a 16x16 grid with 2 anchors per cell, then an 8x8 grid with 6.
    np.testing.assert_allclose(short[:2], [[0.5 / 16, 0.5 / 16]] * 2)
    np.testing.assert_allclose(short[512:518], [[0.5 / 8, 0.5 / 8]] * 6)
    np.testing.assert_allclose(full[48], [0.5 / 48, 1.5 / 48])  # row-major: the second row starts at 48

"""The landmarker's two parts on their own: the aligner (crops -> points, no state) and the
tracker's settings (TrackerConfig)."""

import numpy as np
import pytest
from synthetic import MeanFaceModel, astronaut_reference, reference_error

from pipnet_core import FaceAligner, Landmarker, TrackerConfig
from pipnet_core.base.crop import CropBox
from pipnet_core.base.lifetime import Closing
from pipnet_core.detection.blazeface import BlazeFaceDetector
from pipnet_core.io.sample_clip import ClipSpec, face_photo, generate


def upside_down(image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    height, width = image.shape[:2]
    return np.ascontiguousarray(image[::-1, ::-1]), np.array([width - 1, height - 1]) - points


@pytest.mark.parametrize("control", [False, True], ids=["shipped model", "mean-face control"])
@pytest.mark.parametrize("turned", [False, True], ids=["upright", "upside down"])
def test_the_aligner_places_the_points_from_a_detection_and_keeps_no_state(model, control, turned):
    """From the detector's crop of the upright photo, and from that crop kept upright on the photo
    turned upside down (where only the search over other turns finds the face): within 4% of Face
    Mesh's points, twice the same, and the points ``process_image`` gives for that detection.
    The mean-face model must fail."""
    photo, reference = face_photo(), astronaut_reference()
    detection = BlazeFaceDetector().detect(photo)[0]
    aligner = FaceAligner(MeanFaceModel(model.info) if control else model)
    crop = aligner.crop_for(detection)
    if turned:
        photo, reference = upside_down(photo, reference)
        crop = CropBox(photo.shape[1] - 1 - crop.cx, photo.shape[0] - 1 - crop.cy, crop.side, crop.roll)
    points, confidence = aligner.align(photo, [crop])
    again, _ = aligner.align(photo, [crop])
    assert points.shape == (1, 68, 2) and confidence.shape == (1, 68)
    assert np.array_equal(points, again)
    assert (reference_error(points[0], reference) < 0.04) != control
    if not turned:
        with Landmarker(aligner.model, smoothing=False) as landmarker:
            still = landmarker.process_image(photo, detected_faces=[detection])
        assert np.array_equal(still[0].points, points[0])


class CountingDetector(Closing):
    """The video detector, counting the frames it is run on."""

    name = "blazeface"

    def __init__(self):
        self.detector, self.frames = BlazeFaceDetector(), []
        self.frame = 0

    def detect(self, frame):
        self.frames.append(self.frame)
        return self.detector.detect(frame)

    def close(self):
        self.detector.close()


@pytest.mark.parametrize("interval", [4, 10])
def test_the_tracker_config_sets_the_detection_schedule(model, interval):
    """A still face, tracked from the first frame: the detector runs on every interval-th frame
    and on no other (the default interval, 10, would fail the first case)."""
    detector = CountingDetector()
    frame = list(generate(ClipSpec(frames=1, faces=1)))[0][0]
    with Landmarker(model, detector=detector, tracking=TrackerConfig(redetect_interval=interval)) as landmarker:
        for number in range(21):
            detector.frame = number
            assert len(landmarker.process(frame, number / 30)) == 1
    detector.close()  # the caller's, not the landmarker's to close
    assert detector.frames == list(range(0, 21, interval))

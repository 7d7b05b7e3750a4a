"""The library's live loop (pipnet_core/stream/runner.py) on its own: any iterable of frames in, the newest
processed, events out, everything closed; and live blink onsets from the past alone."""

import time
from dataclasses import replace

import numpy as np

from pipnet_core.base.records import Face
from pipnet_core.io.sample_clip import ClipSpec, generate
from pipnet_core.offline.measures import LiveBlinks, eye_aspect_ratios
from pipnet_core.pipeline.landmarker import Landmarker
from pipnet_core.stream.runner import LiveRunner


class Collect:
    """A sink that keeps what it is sent."""

    name = "collect"

    def __init__(self):
        self.results, self.closed = [], False

    def send(self, result) -> None:
        self.results.append(result)

    def status(self) -> str:
        return f"{len(self.results)} results"

    def close(self) -> None:
        self.closed = True


def test_a_live_feed_from_a_generator_is_processed_frame_after_frame_and_closed(model):
    frames = [image for image, _, _ in generate(ClipSpec(faces=1, frames=40))]
    finished = []

    def feed():  # another capture library's frames, as they come (30 a second)
        try:
            for image in frames:
                time.sleep(1 / 30)
                yield image
        finally:
            finished.append(True)

    sink = Collect()
    with Landmarker(model) as landmarker:
        runner = LiveRunner(landmarker, [sink])
        runner.open(feed())
        done = runner.run()
        runner.close()
    assert done == len(sink.results) >= 30  # the newest frame each time: a slow moment may skip one
    assert [r.sequence for r in sink.results] == list(range(done))  # contiguous, whatever was skipped
    assert ("found", 0) in sink.results[0].events and all(r.faces for r in sink.results[5:])
    assert all(r.captured_at <= r.taken_at <= r.processed_at for r in sink.results)
    message = sink.results[-1].message
    assert message["frame"] == done - 1 and len(message["faces"][0]["points_normalized"]) == 68
    assert sink.closed and finished == [True]  # the sinks and the generator's own clean-up


def eyes_closed_by(points: np.ndarray, amount: float) -> np.ndarray:
    """The face's eyelids moved towards each other by ``amount`` of their opening."""
    closed = points.copy()
    for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
        middle = (points[upper] + points[lower]) / 2
        closed[upper] += amount * (middle - points[upper])
        closed[lower] += amount * (middle - points[lower])
    return closed


def test_live_blinks_find_each_closing_once_as_it_begins(model):
    mean = model.info.codec.mean_face * 200
    face = Face(0, (0, 0, 200, 200), 0.9, mean, np.ones(68), None, True)
    blinks, onsets = LiveBlinks(), []
    closing = {30: 0.6, 31: 0.9, 32: 0.9, 33: 0.5, 70: 0.8, 71: 0.8}  # two blinks, the frames they span
    for frame in range(100):
        points = eyes_closed_by(mean, closing.get(frame, 0.0))
        if blinks.update([replace(face, points=points)], frame / 30):
            onsets.append(frame)
    assert onsets == [30, 70]
    # The control: a face whose eyes stay as they are blinks never, open or half shut.
    for amount in (0.0, 0.5):
        steady = LiveBlinks()
        assert not any(steady.update([replace(face, points=eyes_closed_by(mean, amount))], f / 30) for f in range(100))
    assert eye_aspect_ratios(eyes_closed_by(mean, 0.9))[0] < 0.2 * eye_aspect_ratios(mean)[0]

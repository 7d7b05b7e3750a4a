"""The desktop app, headless (QT_QPA_PLATFORM=offscreen): it plays, draws, reacts, survives failures
and shuts down. Cameras are stand-ins the tests control, never the host's.

Screenshots land in tests/artifacts/ (ignored by git) to be looked at."""

import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from synthetic import MeanFaceModel, astronaut_reference, reference_error  # noqa: E402

from pipnet_core.app.main_window import THRESHOLD_DEBOUNCE_MS  # noqa: E402
from pipnet_core.app.worker import SAMPLE_CLIP as SAMPLE  # noqa: E402
from pipnet_core.base.crop import transform_points  # noqa: E402
from pipnet_core.io.frames import CameraInfo, Frame  # noqa: E402
from pipnet_core.io.sample_clip import ClipSpec, face_photo, generate, photo_to_frame  # noqa: E402

ARTIFACTS = Path(__file__).parent / "artifacts"


def make_window(qtbot, cameras=()):
    from pipnet_core.app.main_window import MainWindow

    win = MainWindow(camera_lister=lambda: list(cameras))
    qtbot.addWidget(win)
    win.show()
    return win


@pytest.fixture
def window(qtbot):
    win = make_window(qtbot)
    yield win
    win.close()


def wait_for_frames(qtbot, win, count, timeout=30000):
    start = win.worker.frames_processed
    qtbot.waitUntil(
        lambda: win.worker.frames_processed >= start + count and bool(win.worker.last.faces), timeout=timeout
    )


def difference_at_landmarks(win):
    """Mean absolute difference between the annotated and the raw frame in 5x5 patches around the points."""
    last = win.worker.last
    raw, shown = last.raw.astype(int), last.annotated.astype(int)
    diffs = [
        np.abs(
            shown[int(y) - 2 : int(y) + 3, int(x) - 2 : int(x) + 3]
            - raw[int(y) - 2 : int(y) + 3, int(x) - 2 : int(x) + 3]
        ).mean()
        for x, y in last.faces[0].points
    ]
    return float(np.mean(diffs))


class FlakyCamera:
    """A stand-in camera: frames of the sample clip at 30 fps; reads fail from frame ``fail_at`` on
    until the source has been reopened ``reopen_attempts`` times (unplugged, plugged back)."""

    name, is_camera, fps, frame_count = "stand-in camera", True, 30.0, 0

    def __init__(self, fail_at: int, reopen_attempts: int):
        self.frames = [f for f, _, _ in generate(ClipSpec(frames=60))]
        self.fail_at, self.reopen_attempts = fail_at, reopen_attempts
        self.reads = self.reopens = 0
        self.failing = False

    def read(self):
        time.sleep(1 / self.fps)
        if self.reads == self.fail_at and not self.reopens:
            self.failing = True
        if self.failing:
            return None
        frame = Frame(self.reads, self.reads / self.fps, self.frames[self.reads % len(self.frames)])
        self.reads += 1
        return frame

    def reopen(self) -> bool:
        self.reopens += 1
        self.failing = self.reopens < self.reopen_attempts
        return not self.failing

    def close(self):
        pass


def shown_error(win) -> float:
    """How far the shown face's points are from Face Mesh's points on the photo, moved as the
    sample clip moves it at the shown frame's time (NME on the 8 shared points)."""
    last = win.worker.last
    clip_time = last.timestamp % (ClipSpec().frames / ClipSpec().fps)  # the sample clip loops; its time runs on
    return reference_error(
        last.faces[0].points, transform_points(astronaut_reference(), photo_to_frame(clip_time, 0, 1))
    )


def test_first_launch_without_a_camera_plays_the_sample_clip_with_landmarks(qtbot, window):
    wait_for_frames(qtbot, window, 20)
    assert "No camera" in window.banner.text() and window.banner.isVisible()
    assert window.camera_box.currentText() == "no camera found"
    assert "face(s)" in window.status.text() and "processing" in window.status.text()
    assert window.last_stats["faces"] == 1
    assert difference_at_landmarks(window) > 20  # the overlay is drawn where the landmarks are
    print(f"shown points: {100 * shown_error(window):.1f}% of the eye distance from Face Mesh's")
    assert shown_error(window) < 0.05  # and the landmarks are where the face is
    ARTIFACTS.mkdir(exist_ok=True)
    assert window.grab().save(str(ARTIFACTS / "gui_sample_clip.png"))
    assert window.save_screenshot(ARTIFACTS / "gui_frame.png")


def test_cameras_are_listed_by_name_and_the_first_one_opens(qtbot, monkeypatch):
    opened = []
    import pipnet_core.app.worker as worker_module

    def fake_open(target, loop=False, camera_format=None, name=None):
        opened.append((target, camera_format, name))
        return FlakyCamera(fail_at=10**9, reopen_attempts=1)

    monkeypatch.setattr(worker_module, "open_source", fake_open)
    win = make_window(qtbot, [CameraInfo(2, "Integrated Webcam"), CameraInfo(4, "USB Camera")])
    try:
        wait_for_frames(qtbot, win, 5)
        assert [win.camera_box.itemText(i) for i in range(win.camera_box.count())] == [
            "Integrated Webcam",
            "USB Camera",
        ]
        win.resolution_box.setCurrentText("1280 x 720")
        win.rate_box.setCurrentText("60 FPS")
        win._reopen_camera()
        qtbot.waitUntil(lambda: len(opened) == 2, timeout=5000)
        assert opened[0][0] == 2 and opened[0][2] == "Integrated Webcam"
        assert (opened[1][1].width, opened[1][1].height, opened[1][1].fps) == (1280, 720, 60.0)
    finally:
        win.close()


def test_a_model_that_always_outputs_the_mean_face_fails_the_landmark_check(qtbot, window):
    """The standing negative control for the check above: drawn on the face, but not on its points."""
    from pipnet_core.pipeline.landmarker import Landmarker

    wait_for_frames(qtbot, window, 5)
    shipped = window.worker._runner.landmarker
    window.worker._runner.landmarker = Landmarker(MeanFaceModel(shipped.model.info))
    wait_for_frames(qtbot, window, 20)
    shipped.close()
    assert window.last_stats["faces"] == 1 and difference_at_landmarks(window) > 20
    print(f"mean face shown: {100 * shown_error(window):.1f}% of the eye distance from Face Mesh's")
    assert shown_error(window) >= 0.05


def test_a_camera_that_fails_and_comes_back_is_reconnected(qtbot, window):
    from pipnet_core.app.worker import OpenSource

    wait_for_frames(qtbot, window, 2)
    camera = FlakyCamera(fail_at=20, reopen_attempts=2)
    window.worker.post(OpenSource(camera))
    qtbot.waitUntil(lambda: "camera lost" in window.banner.text() and window.banner.isVisible(), timeout=10000)
    qtbot.waitUntil(lambda: window.view.fps_text == "camera lost", timeout=5000)  # not a frozen FPS
    window.grab().save(str(ARTIFACTS / "gui_camera_lost.png"))
    qtbot.waitUntil(lambda: not window.banner.isVisible(), timeout=10000)
    assert camera.reopens == 2
    wait_for_frames(qtbot, window, 10)  # frames flow again, from the same camera
    assert window.worker.capture_alive and "FPS" in window.view.fps_text


def test_an_exception_inside_the_pipeline_is_a_banner_and_processing_goes_on(qtbot, window):
    wait_for_frames(qtbot, window, 3)
    landmarker = window.worker.landmarker
    real = landmarker.process
    failures = iter([True, False] * 1 + [False] * 10**6)

    def sometimes_broken(frame, timestamp=None):
        if next(failures):
            raise ValueError("injected failure")
        return real(frame, timestamp)

    landmarker.process = sometimes_broken
    qtbot.waitUntil(lambda: "injected failure" in window.banner.text(), timeout=10000)
    wait_for_frames(qtbot, window, 10)


def test_bad_video_and_bad_model_show_errors_and_the_bad_model_is_not_kept(qtbot, window, tmp_path):
    wait_for_frames(qtbot, window, 3)
    bad_video = tmp_path / "broken.mp4"
    bad_video.write_text("not a video")
    window.open_source(str(bad_video))
    qtbot.waitUntil(lambda: "broken.mp4" in window.banner.text() and window.banner.isVisible(), timeout=10000)
    bad_model = tmp_path / "model.onnx"
    bad_model.write_text("not a model")
    window.change_settings(model_path=str(bad_model))
    qtbot.waitUntil(lambda: "model.onnx" in window.banner.text(), timeout=10000)
    qtbot.waitUntil(lambda: window.settings.model_path == "", timeout=5000)  # back to the model in force
    wait_for_frames(qtbot, window, 5)  # still processing with the previous model
    window._save_settings()
    assert window.store.value("model_path", "", type=str) == ""  # the next launch does not retry it
    window.grab().save(str(ARTIFACTS / "gui_error.png"))


def test_overlay_changes_redraw_a_paused_frame_without_resetting_smoothing(qtbot, window):
    wait_for_frames(qtbot, window, 5)
    smoothers = {id(t.smoother) for t in window.worker.landmarker.tracker.tracks}
    window.actions_by_name["pause"].trigger()
    qtbot.wait(300)
    before = window.worker.frames_processed
    for key in ("points", "contours", "box", "face_id"):
        window.overlay_boxes[key].setChecked(False)
    qtbot.waitUntil(lambda: difference_at_landmarks(window) < 1, timeout=5000)  # redrawn with nothing on it
    window.overlay_boxes["points"].setChecked(True)
    window.overlay_boxes["pose_axes"].setChecked(True)
    qtbot.waitUntil(lambda: difference_at_landmarks(window) > 20, timeout=5000)
    assert window.worker.frames_processed == before  # paused: redrawn, not reprocessed
    window.grab().save(str(ARTIFACTS / "gui_points_and_pose.png"))
    window.actions_by_name["pause"].trigger()
    wait_for_frames(qtbot, window, 5)
    assert {id(t.smoother) for t in window.worker.landmarker.tracker.tracks} == smoothers


def test_an_image_source_and_the_session_export(qtbot, window, tmp_path):
    from pipnet_core.app.worker import Export

    image = tmp_path / "face.png"
    cv2.imwrite(str(image), face_photo())
    wait_for_frames(qtbot, window, 2)
    export = tmp_path / "session.csv"
    window.worker.post(Export(export))
    qtbot.waitUntil(lambda: export.is_file() and export.read_text().count("\n") >= 3, timeout=10000)
    window.open_source(str(image))  # another source: the export of this one ends
    qtbot.waitUntil(lambda: window.worker.last.raw.shape[:2] == (512, 512), timeout=10000)
    assert window.worker._exporter is None and len(window.worker.last.faces) == 1
    lines = export.read_text().splitlines()
    assert lines[0].startswith("frame,timestamp,face_id") and len(lines) >= 3
    assert "model_sha256" in export.with_name("session.csv.json").read_text()


def test_closing_stops_every_thread(qtbot, window):
    wait_for_frames(qtbot, window, 3)
    worker = window.worker
    window.close()
    assert not worker.isRunning() and not worker.capture_alive
    assert not [t for t in threading.enumerate() if t.name == "capture"]


def test_detector_and_threshold_changes_keep_the_model_and_the_face_and_close_the_old_detector(qtbot, window):
    wait_for_frames(qtbot, window, 5)
    worker = window.worker
    landmarker, model = worker.landmarker, worker.landmarker.model
    ids = {face.id for face in worker.last.faces}
    calls = []
    real = landmarker.set_detector
    landmarker.set_detector = lambda *args: (calls.append(args), real(*args))
    old = landmarker.detector
    for _ in range(4):  # four steps of the spin box, each well within the rest: one change, once it rests
        window.threshold.stepUp()
        qtbot.wait(THRESHOLD_DEBOUNCE_MS // 4)
    qtbot.waitUntil(lambda: bool(calls), timeout=5000)
    qtbot.wait(2 * THRESHOLD_DEBOUNCE_MS)
    assert calls == [("blazeface", 0.7)] and old._session is None  # the old detector's session is gone
    second = landmarker.detector
    window.change_settings(detector="blazeface-both")
    qtbot.waitUntil(lambda: len(calls) == 2, timeout=5000)
    wait_for_frames(qtbot, window, 5)
    assert worker.landmarker is landmarker and landmarker.model is model  # no reload
    assert {face.id for face in worker.last.faces} == ids  # the tracked face kept its id
    assert landmarker.detector.name != "blazeface" and second._session is None


class SteadyClip:
    """A stand-in camera at 30 fps: the sample clip with real timestamps, looping."""

    name, is_camera, fps, frame_count = "steady stand-in", True, 30.0, 0

    def __init__(self):
        self.frames = [f for f, _, _ in generate(ClipSpec(frames=60))]
        self.reads, self.started = 0, time.monotonic()

    def read(self):
        time.sleep(max(0.0, self.started + self.reads / self.fps - time.monotonic()))
        frame = Frame(self.reads, self.reads / self.fps, self.frames[self.reads % len(self.frames)])
        self.reads += 1
        return frame

    def reopen(self) -> bool:
        return True

    def close(self):
        pass


def test_a_recording_plays_at_the_source_s_speed_when_frames_are_dropped(qtbot, window, tmp_path):
    """Processing slowed to about 10 FPS under a 30 FPS source: two of three frames are dropped,
    and the recording repeats what it has, so its length is the time that passed."""
    from pipnet_core.app.worker import OpenSource, Record

    window.worker.post(OpenSource(SteadyClip()))
    wait_for_frames(qtbot, window, 3)
    landmarker = window.worker.landmarker
    real = landmarker.process
    landmarker.process = lambda frame, timestamp=None: (time.sleep(0.1), real(frame, timestamp))[1]
    path = tmp_path / "recording.avi"
    window.worker.post(Record(path))
    qtbot.waitUntil(lambda: window.worker._recorded > 0, timeout=5000)
    first = window.worker._record_start
    qtbot.wait(2500)
    window.worker.post(Record(None))
    qtbot.waitUntil(lambda: window.worker._recorder is None, timeout=5000)
    last = window.worker.last.timestamp
    video = cv2.VideoCapture(str(path))
    frames, fps = int(video.get(cv2.CAP_PROP_FRAME_COUNT)), video.get(cv2.CAP_PROP_FPS)
    video.release()
    assert fps == pytest.approx(30)
    # About 75; one per processed frame would be about 25. The last frame read may follow the stop.
    assert frames == pytest.approx((last - first) * 30 + 1, abs=4)


def test_outputs_stop_when_the_source_changes_and_a_writer_that_fails_unchecks_its_button(qtbot, window, tmp_path):
    from pipnet_core.app.worker import Export, Record

    wait_for_frames(qtbot, window, 2)
    for kind, message, path in (("record", Record, tmp_path / "a.avi"), ("export", Export, tmp_path / "a.csv")):
        window.actions_by_name[kind].setChecked(True)  # as the toolbar does, without its file dialog
        window.worker.post(message(path))
    qtbot.waitUntil(lambda: (tmp_path / "a.avi").is_file() and (tmp_path / "a.csv").is_file(), timeout=5000)
    window.open_source(SAMPLE)
    qtbot.waitUntil(
        lambda: not window.actions_by_name["record"].isChecked() and not window.actions_by_name["export"].isChecked(),
        timeout=5000,
    )
    assert "replaced the source" in window.banner.text()
    assert window.worker._recorder is None and window.worker._exporter is None
    window.actions_by_name["record"].setChecked(True)
    window.worker.post(Record(tmp_path / "missing" / "b.mp4"))  # a folder that does not exist
    qtbot.waitUntil(lambda: not window.actions_by_name["record"].isChecked(), timeout=5000)
    assert "cannot write a video there" in window.banner.text()
    window.actions_by_name["export"].setChecked(True)
    window.banner.setText("")
    window.worker.post(Export(tmp_path / "missing" / "b.csv"))
    qtbot.waitUntil(lambda: not window.actions_by_name["export"].isChecked(), timeout=5000)
    assert "cannot write" in window.banner.text()
    wait_for_frames(qtbot, window, 3)  # and processing goes on


def test_a_camera_is_asked_for_motion_jpeg_above_640x480_before_its_size(monkeypatch):
    from pipnet_core.io import frames
    from pipnet_core.io.frames import CameraFormat, CameraSource

    class Device:
        calls: list = []

        def __init__(self, index):
            Device.calls = []

        def set(self, prop, value):
            Device.calls.append(prop)

        def isOpened(self):
            return True

        def grab(self):
            return True

        def get(self, prop):
            return 30.0

        def release(self):
            pass

    monkeypatch.setattr(frames.cv2, "VideoCapture", Device)
    CameraSource(0, CameraFormat(1280, 720, 30)).close()
    assert Device.calls[:2] == [cv2.CAP_PROP_FOURCC, cv2.CAP_PROP_FRAME_WIDTH]
    CameraSource(0, CameraFormat(640, 480, 30)).close()
    assert cv2.CAP_PROP_FOURCC not in Device.calls


def opens_with_a_problem(path: Path) -> bool:
    """What the library says of a file: refused, a damaged still, or a video without a frame."""
    from pipnet_core.base.errors import PipnetError
    from pipnet_core.io.frames import ImageSource, open_source

    try:
        source = open_source(str(path))
    except PipnetError:
        return True
    try:
        return bool(source.problem) if isinstance(source, ImageSource) else source.read() is None
    finally:
        source.close()


def test_every_broken_file_of_the_fuzz_corpus_opened_as_the_dialog_does_is_a_banner_and_the_app_goes_on(
    qtbot, window, tmp_path
):
    from fuzz_corpus import write_corpus

    corpus = write_corpus(tmp_path / "corpus")
    broken = [path for path in corpus if opens_with_a_problem(path)]
    assert len(broken) >= 120
    wait_for_frames(qtbot, window, 3)
    for path in broken:  # choose_image / choose_video hand the dialog's path to open_source
        window.banner.setText("")
        window.open_source(str(path))
        qtbot.waitUntil(
            lambda path=path: f"{path}: " in window.banner.text() and window.banner.isVisible(), timeout=10000
        )
    assert window.worker.isRunning()
    window.open_source(SAMPLE)
    wait_for_frames(qtbot, window, 5)


def test_output_stream_reaches_a_websocket_client_shows_its_state_and_is_remembered(qtbot, window):
    import json
    import socket

    from websockets.sync.client import connect

    from pipnet_core.stream.command import StreamChoice

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    wait_for_frames(qtbot, window, 3)
    window.set_streams(StreamChoice(ws=str(port)))  # what Output > Stream's OK does
    qtbot.waitUntil(lambda: f"WebSocket http://127.0.0.1:{port}/" in window.stream_status.text(), timeout=10000)
    with connect(f"ws://127.0.0.1:{port}/stream", open_timeout=5) as client:
        message = json.loads(client.recv(timeout=10))
        assert message["schema"] == "pipnet-live/1" and len(message["faces"][0]["points"]) == 68
        qtbot.waitUntil(lambda: "1 client(s)" in window.stream_status.text(), timeout=5000)
    streams, texts = window._load_streams()  # what the next launch reads: the same stream again
    assert streams == StreamChoice(ws=str(port)) and texts["ws"] == str(port)
    window.set_streams(StreamChoice())
    qtbot.waitUntil(lambda: window.stream_status.text() == "", timeout=5000)
    with pytest.raises(OSError):
        connect(f"ws://127.0.0.1:{port}/stream", open_timeout=2)

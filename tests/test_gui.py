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

from pipnet_core.frames import CameraInfo, Frame  # noqa: E402
from pipnet_core.sample_clip import ClipSpec, face_photo, generate  # noqa: E402

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
    qtbot.waitUntil(lambda: win.worker.frames_processed >= start + count and bool(win.worker.last.faces), timeout=timeout)


def difference_at_landmarks(win):
    """Mean absolute difference between the annotated and the raw frame in 5x5 patches around the points."""
    last = win.worker.last
    raw, shown = last.raw.astype(int), last.annotated.astype(int)
    diffs = [np.abs(shown[int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3] - raw[int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3]).mean()
             for x, y in last.faces[0].points]
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


def test_first_launch_without_a_camera_plays_the_sample_clip_with_landmarks(qtbot, window):
    wait_for_frames(qtbot, window, 20)
    assert "No camera" in window.banner.text() and window.banner.isVisible()
    assert window.camera_box.currentText() == "no camera found"
    assert "face(s)" in window.status.text() and "processing" in window.status.text()
    assert window.last_stats["faces"] == 1
    assert difference_at_landmarks(window) > 20  # the overlay is drawn where the landmarks are
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
        assert [win.camera_box.itemText(i) for i in range(win.camera_box.count())] == ["Integrated Webcam", "USB Camera"]
        win.resolution_box.setCurrentText("1280 x 720")
        win.rate_box.setCurrentText("60 FPS")
        win._reopen_camera()
        qtbot.waitUntil(lambda: len(opened) == 2, timeout=5000)
        assert opened[0][0] == 2 and opened[0][2] == "Integrated Webcam"
        assert (opened[1][1].width, opened[1][1].height, opened[1][1].fps) == (1280, 720, 60.0)
    finally:
        win.close()


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
    landmarker = window.worker._landmarker
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
    smoothers = {id(t.smoother) for t in window.worker._landmarker.tracker.tracks}
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
    assert {id(t.smoother) for t in window.worker._landmarker.tracker.tracks} == smoothers


def test_an_image_source_and_the_session_export(qtbot, window, tmp_path):
    from pipnet_core.app.worker import Export

    image = tmp_path / "face.png"
    cv2.imwrite(str(image), face_photo())
    wait_for_frames(qtbot, window, 2)
    export = tmp_path / "session.csv"
    window.worker.post(Export(export))
    window.open_source(str(image))
    qtbot.waitUntil(lambda: window.worker.last.raw.shape[:2] == (512, 512), timeout=10000)
    window.worker.post(Export(None))
    qtbot.waitUntil(lambda: export.with_name("session.csv.json").is_file(), timeout=5000)
    lines = export.read_text().splitlines()
    assert lines[0].startswith("frame,timestamp,face_id") and len(lines) >= 2
    assert "model_sha256" in export.with_name("session.csv.json").read_text()


def test_closing_stops_every_thread(qtbot, window):
    wait_for_frames(qtbot, window, 3)
    worker = window.worker
    window.close()
    assert not worker.isRunning() and not worker.capture_alive
    assert not [t for t in threading.enumerate() if t.name == "capture"]

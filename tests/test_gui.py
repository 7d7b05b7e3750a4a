"""The desktop app, headless (QT_QPA_PLATFORM=offscreen): it plays, draws, reacts and shuts down.

Screenshots land in tests/artifacts/ (ignored by git) to be looked at."""
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QSettings  # noqa: E402

ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture
def window(qtbot, tmp_path):
    QSettings.setPath(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, str(tmp_path))  # not the user's settings
    from app.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
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


def test_first_launch_without_a_camera_plays_the_sample_clip_with_landmarks(qtbot, window):
    wait_for_frames(qtbot, window, 20)
    assert "No camera" in window.banner.text() and window.banner.isVisible()
    assert "face(s)" in window.status.text() and "processing" in window.status.text()
    assert window.last_stats["faces"] == 1
    assert difference_at_landmarks(window) > 20  # the overlay is drawn where the landmarks are
    ARTIFACTS.mkdir(exist_ok=True)
    assert window.grab().save(str(ARTIFACTS / "gui_sample_clip.png"))
    assert window.save_screenshot(ARTIFACTS / "gui_frame.png")


def test_toggling_the_overlay_changes_what_is_drawn(qtbot, window):
    wait_for_frames(qtbot, window, 5)
    for key in ("points", "contours", "box", "face_id"):
        window.overlay_boxes[key].setChecked(False)
    wait_for_frames(qtbot, window, 5)
    assert difference_at_landmarks(window) < 1  # nothing drawn
    window.overlay_boxes["points"].setChecked(True)
    window.overlay_boxes["pose_axes"].setChecked(True)
    wait_for_frames(qtbot, window, 5)
    assert difference_at_landmarks(window) > 20
    window.grab().save(str(ARTIFACTS / "gui_points_and_pose.png"))


def test_bad_video_and_bad_model_show_errors_and_the_app_keeps_running(qtbot, window, tmp_path):
    wait_for_frames(qtbot, window, 3)
    bad_video = tmp_path / "broken.mp4"
    bad_video.write_text("not a video")
    assert not window.open_source(str(bad_video))
    assert "broken.mp4" in window.banner.text() and window.banner.isVisible()
    bad_model = tmp_path / "model.onnx"
    bad_model.write_text("not a model")
    window.change_settings(model_path=str(bad_model))
    qtbot.waitUntil(lambda: "model.onnx" in window.banner.text(), timeout=10000)
    wait_for_frames(qtbot, window, 5)  # still processing with the previous model
    window.grab().save(str(ARTIFACTS / "gui_error.png"))


def test_an_image_source_and_the_session_export(qtbot, window, tmp_path):
    import cv2

    from pipnet_core.sample_clip import face_photo

    image = tmp_path / "face.png"
    cv2.imwrite(str(image), face_photo())
    wait_for_frames(qtbot, window, 2)
    export = tmp_path / "session.csv"
    window.worker.start_export(export)
    assert window.open_source(str(image))
    qtbot.waitUntil(lambda: window.worker.last.raw.shape[:2] == (512, 512), timeout=10000)
    window.worker.stop_export()
    lines = export.read_text().splitlines()
    assert lines[0].startswith("frame,timestamp,face_id") and len(lines) >= 2


def test_closing_stops_every_thread(qtbot, window):
    wait_for_frames(qtbot, window, 3)
    worker = window.worker
    window.close()
    assert not worker.isRunning() and not worker.capture_alive

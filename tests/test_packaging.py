"""The installed product: a wheel that works without the checkout, every entry point's --help and
--version, and the desktop app in a real X11 window (when Xvfb is installed)."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from synthetic import REPO

from pipnet_core.io.sample_clip import ClipSpec, face_photo, write_clip

VENV_BIN = Path(sys.executable).parent


def run(command, **kwargs):
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    wheels = tmp_path_factory.mktemp("wheels")
    built = run([sys.executable, "-m", "pip", "wheel", REPO, "--no-deps", "-q", "-w", wheels], timeout=300)
    assert built.returncode == 0, built.stderr
    wheel = next(wheels.glob("pipnet_live-*.whl"))
    assert wheel.stat().st_size < 25 * 2**20
    return wheel


SUPPORTED = ("3.10", "3.11", "3.12", "3.13")
THIS_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def other_python(version: str) -> Path | None:
    """Another Python of this machine (pyenv keeps several; the newest patch release), or None."""
    versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"), "versions")
    found = sorted(
        versions.glob(f"{version}.*/bin/python{version}"),
        key=lambda p: [int(part) for part in p.parent.parent.name.split(".") if part.isdigit()],
    )
    if found:
        return found[-1]
    return Path(shutil.which(f"python{version}")) if shutil.which(f"python{version}") else None


def install_and_run(python: Path, wheel: Path, tmp_path: Path, numpy2: bool = False) -> str:
    """The wheel in a fresh venv of ``python`` with the runtime pins (numpy 2 if asked); `pipnet
    detect` on a photo and `pipnet annotate` on a clip, away from the checkout. Returns pip's freeze."""
    venv = tmp_path / "venv"
    assert run([python, "-m", "venv", venv]).returncode == 0
    pins = tmp_path / "pins.txt"
    lines = (REPO / "requirements" / "runtime.txt").read_text().splitlines()
    pins.write_text(
        "\n".join(["numpy==2.2.6"] + [line for line in lines if not line.startswith("numpy")] if numpy2 else lines)
        + "\n"
    )
    # The checkout's pins as constraints: the same versions, from pip's cache when it has them.
    installed = run(
        [venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel, "-c", pins],
        timeout=900,
    )
    assert installed.returncode == 0, installed.stderr
    image, clip = tmp_path / "photo.jpg", tmp_path / "clip.avi"
    cv2.imwrite(str(image), face_photo())
    write_clip(clip, ClipSpec(frames=20))
    away = tmp_path / "elsewhere"  # not the checkout: everything must come from the installed package
    away.mkdir()
    result = run([venv / "bin" / "pipnet", "detect", image, "--json", "--out", away / "out"], cwd=away, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "1 face(s)" in result.stdout
    record = json.loads((away / "out" / "photo.json").read_text())
    assert len(record["faces"]) == 1 and len(record["faces"][0]["points"]) == 68
    result = run([venv / "bin" / "pipnet", "annotate", clip, "--out", away / "tables"], cwd=away, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (away / "tables" / "clip.csv").read_text().count("\n") == 21
    return run([venv / "bin" / "python", "-m", "pip", "list", "--format=freeze"]).stdout.lower()


def test_the_wheel_runs_in_a_fresh_environment_with_runtime_dependencies_only(wheel, tmp_path):
    listing = install_and_run(Path(sys.executable), wheel, tmp_path)
    # Training and GUI are extras; MediaPipe only a reference for tests and benchmarks.
    assert "torch" not in listing and "pyside6" not in listing and "mediapipe" not in listing
    away = tmp_path / "elsewhere"
    version = run([tmp_path / "venv" / "bin" / "pipnet", "--version"], cwd=away)
    assert "pipnet_mbv2_68" in version.stdout and str(REPO) not in version.stdout  # the packaged model
    gui = run([tmp_path / "venv" / "bin" / "pipnet-live"], cwd=away)
    assert gui.returncode == 1 and "pip install 'pipnet-live[gui]'" in gui.stderr and "Traceback" not in gui.stderr


@pytest.mark.parametrize("version", SUPPORTED)
def test_the_wheel_works_on_the_other_pythons_of_this_machine(wheel, tmp_path, version):
    if version == THIS_PYTHON:
        pytest.skip(f"Python {version} runs this suite: the test above")
    python = other_python(version)
    if python is None:
        pytest.skip(f"Python {version} is not installed here")
    numpy2 = version >= "3.12"  # numpy 1.26 below, as the pins; the newer ones take numpy 2
    listing = install_and_run(python, wheel, tmp_path, numpy2)
    assert ("numpy==2." in listing) == numpy2


@pytest.mark.parametrize("command", [["pipnet"], ["pipnet-live"], ["pipnet", "annotate"], ["pipnet", "train"]])
def test_every_entry_point_answers_help_and_version(command):
    helped = run([VENV_BIN / command[0], *command[1:], "--help"], timeout=60)
    assert helped.returncode == 0 and helped.stdout.startswith("usage:"), helped.stderr
    if len(command) == 1:
        version = run([VENV_BIN / command[0], "--version"], timeout=60)
        assert version.returncode == 0 and version.stdout.startswith("pipnet-live ")


def test_no_display_is_one_line_not_a_qt_abort(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    result = run([VENV_BIN / "pipnet-live"], env=env, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "no display" in result.stderr


def test_missing_xcb_libraries_are_named_with_their_packages(monkeypatch):
    from pipnet_core.app import platform_check

    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.setattr(platform_check, "missing_libraries", lambda _: ["libxcb-cursor.so.0", "libxkbcommon-x11.so.0"])
    problem = platform_check.qt_platform_problem()
    assert "libxcb-cursor.so.0" in problem and "sudo apt-get install libxcb-cursor0 libxkbcommon-x11-0" in problem
    monkeypatch.setattr(platform_check, "missing_libraries", lambda _: [])
    assert platform_check.qt_platform_problem() is None


SCREENSHOT_SCRIPT = """
import sys, time
from PySide6.QtWidgets import QApplication
from pipnet_core.app.main_window import MainWindow
app = QApplication([])
window = MainWindow(camera_lister=lambda: [])
window.show()
deadline = time.monotonic() + 60
while time.monotonic() < deadline and window.worker.frames_processed < 30:
    app.processEvents()
    time.sleep(0.01)
app.processEvents()
screen = app.primaryScreen().grabWindow(0)  # what the X server shows, not a widget rendering
screen.save(sys.argv[1])
print(app.platformName(), window.worker.frames_processed, window.isVisible())
window.close()
"""


def _xcb_missing() -> list[str]:
    """The libraries Qt's X11 plugin lacks here (a machine with Xvfb but without Qt's xcb libraries)."""
    from pipnet_core.app.platform_check import missing_libraries, xcb_plugin

    plugin = xcb_plugin()
    return missing_libraries(plugin) if plugin else ["Qt's xcb plugin"]


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed (apt-get install xvfb)")
@pytest.mark.skipif(bool(_xcb_missing()), reason=f"Qt's X11 plugin lacks {', '.join(_xcb_missing())} here")
def test_the_app_draws_landmarks_in_a_real_x11_window(tmp_path):
    display = ":97"
    server = subprocess.Popen(
        ["Xvfb", display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
        shot = Path(__file__).parent / "artifacts" / "gui_xvfb_screen.png"
        shot.parent.mkdir(exist_ok=True)
        result = run([sys.executable, "-c", SCREENSHOT_SCRIPT, shot], env=env, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        platform, frames, visible = result.stdout.split()[-3:]
        assert platform == "xcb" and int(frames) >= 30 and visible == "True"
        screen = cv2.imread(str(shot))
        # The window covers part of the black root window, and the frame view shows the sample clip.
        assert (screen.reshape(-1, 3).max(axis=1) > 0).mean() > 0.2
        assert screen.std() > 20
    finally:
        server.terminate()
        server.wait(10)

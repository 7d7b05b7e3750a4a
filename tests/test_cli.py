"""Every user error on the command line is one line on stderr and a non-zero exit, never a traceback."""
import subprocess
import sys

import pytest

from synthetic import REPO


def pipnet(*args, code=None):
    command = code or f"from pipnet_core.cli import main; import sys; sys.exit(main({list(map(str, args))!r}))"
    return subprocess.run([sys.executable, "-c", command], capture_output=True, text=True, cwd=REPO)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_config_errors(tmp_path):
    assert_one_line_error(pipnet("train", "--config", tmp_path / "none.toml"), "none.toml", "cannot read config")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nepoch = 3\n")
    assert_one_line_error(pipnet("train", "--config", bad), "bad.toml", "unknown key 'epoch'")


def test_model_and_data_errors(tmp_path):
    assert_one_line_error(pipnet("eval", "--model", tmp_path / "none.onnx", "--data", tmp_path), "none.onnx", "not found")
    assert_one_line_error(pipnet("export", "--checkpoint", tmp_path / "none.pt", "--out", tmp_path / "m.onnx"),
                          "none.pt", "checkpoint not found")
    assert_one_line_error(pipnet("eval", "--model", REPO / "models" / "pipnet_mbv2_68.onnx", "--data", tmp_path / "nothing"),
                          "nothing", "no such folder")


def test_detect_reports_unreadable_images_and_still_does_the_rest(tmp_path):
    from pipnet_core.sample_clip import face_photo
    import cv2

    good = tmp_path / "good.png"
    cv2.imwrite(str(good), face_photo())
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really")
    result = pipnet("detect", good, broken, "--out", tmp_path / "out", "--json")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "broken.jpg: is not a readable image" in result.stderr
    assert (tmp_path / "out" / "good_landmarks.png").exists() and (tmp_path / "out" / "good.json").exists()


@pytest.mark.parametrize("command", [["train", "--config", "configs/pipnet_mbv2_68.toml"],
                                     ["export", "--checkpoint", "x.pt", "--out", "x.onnx"]])
def test_training_commands_without_torch_say_what_to_install(command):
    code = ("import sys; sys.modules['torch'] = None; from pipnet_core.cli import main; "
            f"sys.exit(main({command!r}))")
    assert_one_line_error(pipnet(code=code), "needs torch", "make install-dev")


def test_eval_rotate_prints_one_row_per_angle_with_found_rate_and_nme(tmp_path):
    # Labels: the model's own still landmarks on the astronaut's head, so a turned copy scores
    # near 0% when the pipeline follows the turn and far above 10% when it does not.
    import cv2

    from pipnet_core.data import write_pts
    from pipnet_core.landmarker import Landmarker
    from pipnet_core.sample_clip import face_photo

    head = face_photo()[10:260, 110:340].copy()
    (tmp_path / "faces").mkdir()
    cv2.imwrite(str(tmp_path / "faces" / "head.png"), head)
    write_pts(tmp_path / "faces" / "head.pts", Landmarker(smoothing=False).process_image(head)[0].points)
    result = pipnet("eval", "--model", REPO / "models" / "pipnet_mbv2_68.onnx", "--data", tmp_path / "faces",
                    "--rotate", "0", "180")
    assert result.returncode == 0, result.stderr
    table = [line.split() for line in result.stdout.splitlines() if " deg " in line and not line.startswith("worst")]
    rows = {row[0]: row for row in table}
    assert set(rows) == {"0", "180"}
    for angle, (_, _, found, nme, _) in rows.items():
        assert float(found) == 100.0 and float(nme) < 2.0, result.stdout


def test_bench_runs_and_reports_every_stage():
    result = pipnet("bench", "--frames", "5", "--faces", "1", "--no-compare")
    assert result.returncode == 0, result.stderr
    assert "ms per face" in result.stdout and "FPS" in result.stdout and "Traceback" not in result.stderr

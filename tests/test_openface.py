"""`--format openface`: OpenFace 2.x's own CSV, read the way researchers' tools read it."""

import csv
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from synthetic import write_grey_video

from pipnet_core.export.read_back import read_records
from pipnet_core.io.sample_clip import ClipSpec, generate, write_clip
from pipnet_core.pipeline.pose import camera_matrix, openface_angles

FIXTURE = Path(__file__).parent / "fixtures" / "openface_2dfp_3dfp_pose_header.csv"


def pipnet(*args):
    return subprocess.run([sys.executable, "-m", "pipnet_core", *map(str, args)], capture_output=True, text=True)


def read_like_py_feat(path: Path) -> tuple[list[str], list[dict[str, float]]]:
    """What py-feat's ``read_openface`` does: read with "," as the separator, then strip the
    spaces from the column names (the values' leading spaces go with the number conversion)."""
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle, delimiter=","))
    columns = [name.strip(" ") for name in rows[0]]
    return columns, [{name: float(value) for name, value in zip(columns, row)} for row in rows[1:]]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A 40-frame clip whose head sways and rolls (10 degrees a second), in our CSV and OpenFace's."""
    folder = tmp_path_factory.mktemp("openface")
    clip = write_clip(folder / "clip.avi", ClipSpec(frames=40, roll_speed=10.0))
    result = pipnet("annotate", clip, "--out", folder / "out", "--format", "csv,openface")
    assert result.returncode == 0, result.stderr
    return folder / "out"


def test_the_header_is_openface_s_byte_for_byte(exported):
    written = (exported / "clip_openface.csv").read_bytes()
    assert written.split(b"\n", 1)[0] + b"\n" == FIXTURE.read_bytes()


def test_rows_have_openface_s_separator_frame_numbers_and_number_formats(exported):
    lines = (exported / "clip_openface.csv").read_text().splitlines()
    rows = [line.split(", ") for line in lines[1:]]
    assert len(rows) == 40 and all(len(row) == 11 + 5 * 68 for row in rows)
    assert [int(row[0]) for row in rows] == list(range(1, 41))  # OpenFace counts frames from 1
    formats = {
        2: r"\d+\.\d{3}",
        3: r"[01]\.\d{2}",
        4: r"[01]",
        5: r"-?\d+\.\d",
        8: r"-?\d\.\d{3}",
        11: r"-?\d+\.\d",
        11 + 4 * 68: r"-?\d+\.\d",
    }  # timestamp, confidence, success, pose_Tx, pose_Rx, x_0, Z_0
    for row in rows:
        for column, pattern in formats.items():
            assert re.fullmatch(pattern, row[column]), (column, row[column])
    assert float(rows[30][2]) == pytest.approx(30 / 30, abs=1e-3)


def test_it_loads_as_py_feat_reads_it_with_the_same_points_as_our_csv(exported):
    columns, rows = read_like_py_feat(exported / "clip_openface.csv")
    assert columns == FIXTURE.read_text().rstrip("\n").split(", ")
    ours = read_records(exported / "clip.csv")
    for row in rows:
        face = ours[int(row["frame"]) - 1][0]
        points = np.array([[row[f"x_{i}"], row[f"y_{i}"]] for i in range(68)])
        assert np.abs(points - face.points).max() <= 0.051  # one decimal against two
        assert row["success"] == 1 and row["confidence"] == pytest.approx(face.mean_confidence, abs=0.006)
    # And our reader takes OpenFace's files too.
    assert sorted(read_records(exported / "clip_openface.csv")) == sorted(ours)


def test_pose_and_3d_landmarks_follow_openface_s_camera_convention(exported):
    from test_pose_smooth import rotation  # ours: yaw, pitch, roll in degrees -> rotation matrix

    _, rows = read_like_py_feat(exported / "clip_openface.csv")
    ours = {int(r["frame"]): r for r in csv.DictReader((exported / "clip.csv").open())}
    camera = camera_matrix(640, 480)
    assert camera[0, 0] == camera[1, 1] == 500 and tuple(camera[:2, 2]) == (320, 240)  # OpenFace's guess
    for row in rows:
        a, b, c = row["pose_Rx"], row["pose_Ry"], row["pose_Rz"]
        openface = (
            np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
            @ np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
            @ np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
        )
        mine = ours[int(row["frame"]) - 1]
        expected = rotation(*(float(mine[f"pose_{k}"]) for k in ("yaw", "pitch", "roll")))
        assert np.abs(openface - expected).max() < 0.003  # the same rotation, as OpenFace composes it
        landmarks = np.array([[row[f"{axis}_{i}"] for axis in "XYZ"] for i in range(68)])
        assert 300 < row["pose_Tz"] < 3000 and (landmarks[:, 2] > 0).all()  # in front of the camera, in mm
        projected = landmarks[:, :2] / landmarks[:, 2:] * 500 + (320, 240)
        points = np.array([[row[f"x_{i}"], row[f"y_{i}"]] for i in range(68)])
        assert np.abs(projected - points).max() < 0.6  # they project onto the 2D points
        assert row["pose_Tz"] > landmarks[30, 2]  # the head's centre lies behind the nose tip
    # The head turns in the image as the clip turns it (its photo -> frame matrices).
    turned = [math.atan2(m[0][1, 0], m[0][0, 0]) for _, _, m in generate(ClipSpec(frames=40, roll_speed=10.0))]
    rolls = [row["pose_Rz"] for row in rows]
    assert np.abs(np.subtract(rolls, rolls[0]) - np.subtract(turned, turned[0])).max() < 0.03


def test_given_intrinsics_move_the_head_as_a_longer_lens_would(exported, tmp_path):
    clip = exported.parent / "clip.avi"
    result = pipnet("annotate", clip, "--out", tmp_path, "--format", "openface", "--fx", "1000", "--fy", "1000")
    assert result.returncode == 0, result.stderr
    _, default = read_like_py_feat(exported / "clip_openface.csv")
    _, longer = read_like_py_feat(tmp_path / "clip_openface.csv")
    ratios = [b["pose_Tz"] / a["pose_Tz"] for a, b in zip(default, longer)]
    assert np.median(ratios) == pytest.approx(2.0, rel=0.03)  # twice the focal length: twice as far


@pytest.mark.parametrize("angles", [(0.3, -0.2, 0.1), (-0.5, 0.4, -1.2), (0.0, 0.0, 2.5)])
def test_openface_angles_invert_its_rotation_order(angles):
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    assert openface_angles(rx @ ry @ rz) == pytest.approx(angles, abs=1e-9)
    # Not the other order (which our yaw/pitch/roll use): the test tells them apart.
    if a and b:
        assert openface_angles(rz @ ry @ rx) != pytest.approx(angles, abs=1e-3)


def test_a_frame_without_a_face_is_one_row_of_zeros_with_success_0(tmp_path):
    path = write_grey_video(tmp_path / "empty.avi", 5)
    assert pipnet("annotate", path, "--out", tmp_path / "out", "--format", "openface").returncode == 0
    _, rows = read_like_py_feat(tmp_path / "out" / "empty_openface.csv")
    assert [row["frame"] for row in rows] == [1, 2, 3, 4, 5]
    assert all(
        row["success"] == 0 and not any(v for k, v in row.items() if k not in ("frame", "timestamp")) for row in rows
    )

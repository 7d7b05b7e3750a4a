"""`pipnet annotate` under faults: kills at random moments, a kill between two writers of one frame,
torn lines, a full filesystem, a file-size limit, settings that differ at --resume. Most of them
with live smoothing, whose outputs are written frame by frame; offline smoothing (outputs written
whole at the end, from a working file written frame by frame) under kills and a full disk too."""

import csv
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipnet_core.evaluation.metrics import point_errors
from pipnet_core.io.sample_clip import ClipSpec, face_photo, write_clip

FORMATS = ("--format", "csv,json,pts", "--smooth", "live")


def pipnet(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "pipnet_core", *map(str, args)], capture_output=True, text=True, **kwargs
    )


def annotate_command(clip, out, *extra):
    return [
        sys.executable,
        "-m",
        "pipnet_core",
        "annotate",
        str(clip),
        "--out",
        str(out),
        *FORMATS,
        "--video-out",
        str(out / "seen.avi"),
        *extra,
    ]


def rows_by_frame(table: Path) -> dict[int, list[dict]]:
    frames: dict[int, list[dict]] = {}
    with open(table, newline="") as handle:
        for row in csv.DictReader(handle):
            assert None not in row.values() and None not in row, f"a torn row in {table}"
            frames.setdefault(int(row["frame"]), []).append(row)
    return frames


def json_frames(path: Path) -> list[dict]:
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["type"] == "header"
    return [json.loads(line) for line in lines[1:]]  # every line must parse


def points_of(row: dict) -> np.ndarray:
    return np.array([[float(row[f"x_{i}"]), float(row[f"y_{i}"])] for i in range(68)])


def assert_same_export(out: Path, reference: Path, frames: int, tolerance: float = 0.001):
    """Every frame once in every format, every line parsing, the same ids, points within
    ``tolerance`` of the outer-eye distance of the reference run's."""
    ours, theirs = rows_by_frame(out / "clip.csv"), rows_by_frame(reference / "clip.csv")
    assert sorted(ours) == list(range(frames)) == sorted(theirs)
    assert [[r["face_id"] for r in ours[i]] for i in range(frames)] == [
        [r["face_id"] for r in theirs[i]] for i in range(frames)
    ]
    records = json_frames(out / "clip.jsonl")
    assert [r["frame"] for r in records] == list(range(frames))
    assert [[str(f["face_id"]) for f in r["faces"]] for r in records] == [
        [r["face_id"] for r in ours[i] if r["face_id"] != "-1"] for i in range(frames)
    ]
    pts = {p.name: p.read_text() for p in (out / "clip_pts").glob("*.pts")}
    assert pts == {p.name: p.read_text() for p in (reference / "clip_pts").glob("*.pts")}
    assert not list(out.rglob("*.partial*"))
    faced = [(i, j) for i in range(frames) for j, row in enumerate(ours[i]) if row["face_id"] != "-1"]
    mine = np.stack([points_of(ours[i][j]) for i, j in faced])
    truth = np.stack([points_of(theirs[i][j]) for i, j in faced])
    worst = point_errors(mine, truth).max()
    print(f"worst point: {100 * worst:.3f}% of the eye distance")
    assert worst <= tolerance, f"a point {100 * worst:.2f}% of the eye distance from the uninterrupted run's"
    video = cv2.VideoCapture(str(out / "seen.avi"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == frames
    video.release()
    return worst


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("fault_clip") / "clip.avi", ClipSpec(frames=240, seed=3))


@pytest.fixture(scope="module")
def reference(clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    result = subprocess.run(annotate_command(clip, out), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return out


def test_killed_at_random_moments_and_resumed_it_equals_an_uninterrupted_run(clip, reference, tmp_path):
    rng = random.Random(20)
    table, kills = tmp_path / "clip.jsonl", 0
    for _ in range(60):
        before = table.stat().st_size if table.exists() else 0
        process = subprocess.Popen(
            annotate_command(clip, tmp_path, "--resume"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while (
            process.poll() is None
            and time.monotonic() < deadline
            and (not table.exists() or table.stat().st_size <= before)
        ):
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.15))  # mid-frame, mid-write, between writers: wherever it lands
        if process.poll() is not None:
            break
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
        if kills == 20:
            break
    assert kills == 20, "the run finished before 20 kills: use a longer clip"
    assert (tmp_path / "clip.progress").is_file()  # the tracker states the resumed runs restored
    result = subprocess.run(annotate_command(clip, tmp_path, "--resume"), capture_output=True, text=True)
    assert result.returncode == 0 and "1 of 1 files complete" in result.stdout, result.stderr
    assert_same_export(tmp_path, reference, 240)


def test_killed_between_two_writers_of_one_frame_and_with_torn_lines(reference, clip, tmp_path):
    """The disk as kills leave it, made from the uninterrupted run's files: the JSON lines of the
    last frames missing (the CSV rows and .pts files written), a torn JSON line, a CSV cut inside a
    row. Each resumes at the earliest frame some output lacks, and ends equal to the reference."""
    cases = {
        "between writers": (120, 119, 120),
        "json behind": (120, 110, 111),
        "torn json": (239, 119, 120),
        "torn csv": (120, 239, 120),
    }
    for case, (csv_last, json_last, resumed_at) in cases.items():
        out = tmp_path / case.replace(" ", "_")
        shutil.copytree(reference, out)
        (out / "seen.avi").unlink()
        lines = (out / "clip.jsonl").read_bytes().splitlines(keepends=True)
        csv_lines = (out / "clip.csv").read_bytes().splitlines(keepends=True)  # one face per frame here
        torn_json = lines[json_last + 2][:40] if case == "torn json" else b""
        torn_csv = csv_lines[csv_last + 2][:300] if case == "torn csv" else b""
        (out / "clip.jsonl").write_bytes(b"".join(lines[: json_last + 2]) + torn_json)
        (out / "clip.csv").write_bytes(b"".join(csv_lines[: csv_last + 2]) + torn_csv)
        for pts in (out / "clip_pts").glob("*.pts"):
            if int(pts.stem.split("_")[0]) > csv_last:
                pts.unlink()
        result = subprocess.run(annotate_command(clip, out, "--resume"), capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert f"resumed at frame {resumed_at}" in result.stdout, (case, result.stdout)
        assert_same_export(out, reference, 240)


def test_resume_skips_a_finished_file_without_running_it(reference, clip, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    result = subprocess.run(annotate_command(clip, out, "--resume"), capture_output=True, text=True)
    assert result.returncode == 0 and "clip.avi: already complete" in result.stdout, result.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_resume_refuses_other_settings_and_a_format_it_did_not_write(reference, clip, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    cases = {
        ("--every", "2"): "every 1",
        ("--smooth", "none"): "smoothing 'live'",
        ("--smooth", "offline"): "smoothing 'live'",
        ("--detector", "blazeface"): "detector 'blazeface-both'",
        ("--max-faces", "2"): "max_faces None",
    }
    other = tmp_path / "other" / "clip.avi"  # another input that happens to share the name
    other.parent.mkdir()
    write_clip(other, ClipSpec(frames=30))
    result = pipnet("annotate", other, "--out", out, *FORMATS, "--resume")
    assert result.returncode == 2 and "cannot resume: made with source_bytes" in result.stderr
    for extra, said in cases.items():
        result = pipnet(*annotate_command(clip, out, "--resume", *extra)[3:])
        assert result.returncode == 2 and "cannot resume: made with " + said in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    result = pipnet("annotate", clip, "--out", out, "--format", "csv,json", "--smooth", "live", "--resume")
    assert result.returncode == 2 and "formats ['csv', 'json', 'pts']" in result.stderr
    same_in_another_order = pipnet(
        "annotate", clip, "--out", out, "--format", "pts,json,csv", "--smooth", "live", "--resume"
    )
    assert same_in_another_order.returncode == 0 and "already complete" in same_in_another_order.stdout
    (out / "clip.jsonl").unlink()
    result = pipnet(*annotate_command(clip, out, "--resume")[3:])
    assert result.returncode == 2 and "clip.jsonl: missing" in result.stderr
    assert len(rows_by_frame(out / "clip.csv")) == 240  # refusing touched nothing


def run_limited(command, max_bytes):
    """A command whose files may grow to ``max_bytes`` (RLIMIT_FSIZE; Python ignores SIGXFSZ, so a
    write past it fails with EFBIG)."""

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return subprocess.run(command, capture_output=True, text=True, preexec_fn=limit)


def test_a_file_size_limit_fails_that_file_alone_and_the_next_input_completes(clip, tmp_path):
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), face_photo())
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "pipnet_core",
        "annotate",
        str(clip),
        str(image),
        "--out",
        str(out),
        "--format",
        "csv,json",
        "--smooth",
        "live",
    ]
    result = run_limited(command, 60_000)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 2 and errors[0].startswith(f"pipnet annotate: error: {out / 'clip.'}")
    assert "cannot write (File too large)" in errors[0]
    assert "Traceback" not in result.stderr and "1 of 2 files complete" in result.stdout
    written = rows_by_frame(out / "clip.csv")
    assert 0 < len(written) < 240 and sorted(written) == list(range(len(written)))
    json_frames(out / "clip.jsonl")
    assert len(rows_by_frame(out / "face.csv")) == 1 and len(json_frames(out / "face.jsonl")) == 1
    result = pipnet("annotate", clip, image, "--out", out, "--format", "csv,json", "--smooth", "live", "--resume")
    assert result.returncode == 0 and "2 of 2 files complete" in result.stdout, result.stderr
    assert sorted(rows_by_frame(out / "clip.csv")) == list(range(240))


@pytest.fixture
def small_filesystem(tmp_path):
    """A real 160 KiB tmpfs, where the tests run as root; skipped elsewhere."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_one_error_line_with_no_torn_line_and_resume_finishes_once_there_is_room(
    clip, reference, small_filesystem, tmp_path
):
    out = small_filesystem / "out"
    result = pipnet("annotate", clip, "--out", out, "--format", "csv,json", "--smooth", "live")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert "No space left on device" in errors[0] and len(errors) == 2  # the file's line and the summary
    written = rows_by_frame(out / "clip.csv")
    assert 0 < len(written) < 240 and (out / "clip.csv").read_bytes().endswith(b"\n")
    assert [r["frame"] for r in json_frames(out / "clip.jsonl")] == sorted(written)[
        : len(json_frames(out / "clip.jsonl"))
    ]
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)  # the user makes room (here: a bigger disk) and resumes
    result = pipnet("annotate", clip, "--out", moved, "--format", "csv,json", "--smooth", "live", "--resume")
    assert result.returncode == 0, result.stderr
    assert sorted(rows_by_frame(moved / "clip.csv")) == list(range(240))
    assert [r["frame"] for r in json_frames(moved / "clip.jsonl")] == list(range(240))


def test_an_offline_run_killed_at_random_moments_also_while_finishing_and_resumed_equals_an_uninterrupted_one(
    clip, tmp_path
):
    """Offline smoothing: the faces go to NAME.raw.jsonl frame by frame, the outputs are written
    whole at the end (in a staging folder, then moved). Kills while the working file grows and
    once while the outputs are being written; the resumed run's outputs are the uninterrupted
    run's, and nothing of the working state is left."""
    reference, out = tmp_path / "reference", tmp_path / "out"

    def command(folder, *extra):
        return [
            sys.executable,
            "-m",
            "pipnet_core",
            "annotate",
            str(clip),
            "--out",
            str(folder),
            "--format",
            "csv,json,pts",
            "--video-out",
            str(folder / "seen.avi"),
            *extra,
        ]

    assert subprocess.run(command(reference), capture_output=True).returncode == 0
    rng = random.Random(7)
    raw, staging = out / "clip.raw.jsonl", out / ".clip.finishing"
    for kill in range(6):
        before = raw.stat().st_size if raw.exists() else 0
        process = subprocess.Popen(command(out, "--resume"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        if kill < 5:
            while (
                process.poll() is None
                and time.monotonic() < deadline
                and (not raw.exists() or raw.stat().st_size <= before)
            ):
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.3))
        else:  # the last kill lands while the outputs are written
            while process.poll() is None and time.monotonic() < deadline and not staging.exists():
                time.sleep(0.001)
        assert process.poll() is None, "the run finished before the kill: use a longer clip"
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert raw.is_file() and not (out / "clip.csv").exists()  # no output before the video is done
    result = subprocess.run(command(out, "--resume"), capture_output=True, text=True)
    assert result.returncode == 0 and "1 of 1 files complete" in result.stdout, result.stderr
    assert_same_export(out, reference, 240)
    assert (out / "clip_blinks.csv").read_text() == (reference / "clip_blinks.csv").read_text()
    assert not raw.exists() and not staging.exists()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    result = subprocess.run(command(out, "--resume"), capture_output=True, text=True)
    assert result.returncode == 0 and "clip.avi: already complete" in result.stdout, result.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_a_full_disk_in_an_offline_run_is_one_error_line_and_resume_finishes_once_there_is_room(
    clip, small_filesystem, tmp_path
):
    out = small_filesystem / "out"
    result = pipnet("annotate", clip, "--out", out, "--format", "csv,json")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert "No space left on device" in errors[0] and len(errors) == 2
    raw = (out / "clip.raw.jsonl").read_bytes()
    assert raw.endswith(b"\n") and 0 < raw.count(b"\n") - 1 < 240 and not (out / "clip.csv").exists()
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    result = pipnet("annotate", clip, "--out", moved, "--format", "csv,json", "--resume")
    assert result.returncode == 0, result.stderr
    assert sorted(rows_by_frame(moved / "clip.csv")) == list(range(240))
    assert [r["frame"] for r in json_frames(moved / "clip.jsonl")] == list(range(240))

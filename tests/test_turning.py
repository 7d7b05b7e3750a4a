"""Turned faces made from labelled ones (`pipnet prepare-data`, training/turning.py), and the
per-yaw evaluation that reads them (`pipnet eval --yaw`)."""

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from synthetic import SHARED_DATA, needs

from pipnet_core import Landmarker
from pipnet_core.base.errors import PipnetError
from pipnet_core.evaluation.evaluate import Evaluation, by_yaw
from pipnet_core.io.labels import Sample, TurnedFace, read_labeled
from pipnet_core.io.sample_clip import face_photo
from pipnet_core.training.prepare import TurnPlan, target_yaws
from pipnet_core.training.turning import lift, turn


@pytest.fixture(scope="module")
def photo():
    """The astronaut photo and its 68 points (the shipped model's: labels for geometry, not accuracy)."""
    image = face_photo()
    with Landmarker() as landmarker:
        return image, landmarker.process_image(image)[0].points


@pytest.fixture(scope="module", params=["generic face", "face mesh"])
def lifted(request, photo):
    image, points = photo
    mesh = None
    if request.param == "face mesh":
        pytest.importorskip("mediapipe")
        from pipnet_core.evaluation.face_mesh import FaceMesh

        with FaceMesh(stills=True) as face_mesh:
            mesh = face_mesh.meshes_3d(image)[0]
    face = lift(image, points, mesh)
    assert face.lifted_by == request.param
    return face


def test_a_turn_by_nothing_gives_the_picture_and_its_labels_back(lifted, photo):
    turned, labels = turn(lifted, 0.0, 0.0)
    assert np.abs(turned.astype(int) - photo[0]).mean() < 0.5
    assert np.abs(labels - photo[1]).max() < 1e-3


def test_the_nose_moves_the_way_the_face_is_turned_and_further_the_more_it_turns(lifted):
    """+yaw turns the face towards the image's right (the pose convention): the nose tip moves
    right of the eyes' midpoint, by more at 60 degrees than at 30."""

    def nose_offset(yaw: float) -> float:
        labels = turn(lifted, yaw)[1]
        return float((labels[30, 0] - (labels[36, 0] + labels[45, 0]) / 2) / np.ptp(labels[:, 0]))

    frontal = nose_offset(0.0)
    offsets = [nose_offset(yaw) - frontal for yaw in (-60, -30, 30, 60)]
    assert offsets[0] < offsets[1] < -0.05 and 0.05 < offsets[2] < offsets[3], offsets


@pytest.mark.parametrize("yaw", [-75.0, -60.0, 45.0, 75.0])
def test_the_far_jaw_is_labelled_on_the_visible_outline(lifted, photo, yaw):
    """The jaw points of the half the face turns away from (0-7 or 9-16 of the upright photo) lie on
    the outline of their row: no brow, eye, nose or mouth point of that row is further out (the
    hidden jaw would be behind them)."""
    labels = turn(lifted, yaw)[1]
    far = np.sign(yaw)
    band = 0.04 * np.ptp(labels[:, 1])
    far_half = range(9, 17) if far > 0 else range(0, 8)
    assert all((photo[1][j, 0] - photo[1][8, 0]) * far > 0 for j in far_half)  # the photo is upright
    for j in far_half:
        row = [far * labels[k, 0] for k in range(17, 68) if abs(labels[k, 1] - labels[j, 1]) <= band]
        slack = 0.02 * np.ptp(labels[:, 1])  # 2% of the face height: on the outline, not behind the cheek
        assert not row or far * labels[j, 0] >= max(row) - slack, (j, labels[j], max(row))


def test_by_yaw_bins_faces_and_divides_by_the_3d_eye_distance_and_the_face_box():
    # Faces with the same points: outer eye corners 50 px apart in the picture, a 100 x 100 px
    # landmark box. Errors of 10% of the picture's eye distance are 5 px: 5% of the box, and 5% of
    # an eye distance of 100 px in 3D (a face turned far enough to halve it in the picture).
    points = np.zeros((68, 2))
    points[:, 0], points[:, 1] = np.linspace(0, 100, 68), np.linspace(0, 100, 68)[::-1]
    points[36], points[45] = (25, 50), (75, 50)
    samples = [Sample(Path(f"{name}.jpg"), points) for name in ("a", "b", "c")]
    errors = np.full((2, 68), 0.10)
    errors[1, :17] = 0.40  # the second face's jaw is off: the inner 51 do not see it
    result = Evaluation(["a.jpg", "b.jpg"], errors, missed=["c.jpg"])
    turns = {name: TurnedFace(yaw, eyes, "evaluation", f"{name}.source") for name, yaw, eyes in
             (("a.jpg", 10.0, 50.0), ("b.jpg", -70.0, 100.0), ("c.jpg", 90.0, 50.0))}  # fmt: skip
    rows = by_yaw(result, samples, turns)
    assert [row["faces"] for row in rows] == [1, 0, 1] and [row["missed"] for row in rows] == [0, 0, 1]
    assert rows[0]["eye_68"] == pytest.approx(0.10) and rows[0]["box_68"] == pytest.approx(0.05)
    assert rows[2]["eye_51"] == pytest.approx(0.05) and rows[2]["box_51"] == pytest.approx(0.05)
    assert rows[2]["eye_68"] == pytest.approx((17 * 0.4 + 51 * 0.1) / 68 / 2)
    # b (0.09 of its 3D eye distance) is no failure; c, missed, is one.
    assert rows[0]["failure_rate"] == 0.0 and rows[2]["failure_rate"] == pytest.approx(0.5)


def test_copies_turn_the_way_the_face_looks_and_never_back_towards_frontal():
    rng = np.random.default_rng(0)
    plan = TurnPlan(per_face=3, yaw_range=(0.0, 90.0), stratify=True)
    for own in (-40.0, 12.0, 50.0):
        targets = target_yaws(plan, rng, own)
        assert all(np.sign(t) == np.sign(own) and abs(t) >= abs(own) for t in targets), (own, targets)
    sides = {np.sign(t) for _ in range(20) for t in target_yaws(plan, rng, 2.0)}
    assert sides == {-1.0, 1.0}  # a frontal face either way
    frontal = target_yaws(plan, rng, 0.0)
    assert [int(abs(t) // 30) for t in frontal] == [0, 1, 2]  # one per bin


def test_training_refuses_turned_faces_made_for_evaluation(tmp_path):
    from synthetic import drawn_face

    from pipnet_core.io.labels import write_pts
    from pipnet_core.training.config import DataConfig
    from pipnet_core.training.sources import load_sources

    folder = tmp_path / "helen_test_turned"
    folder.mkdir()
    image, points = drawn_face(np.random.default_rng(0))
    import cv2

    cv2.imwrite(str(folder / "a_t0.jpg"), image)
    write_pts(folder / "a_t0.pts", points)
    columns = "image,source,lifted_by,own_yaw,turn_yaw,turn_pitch,yaw,eye_distance,purpose"
    for purpose, refused in (("training", False), ("evaluation", True)):
        (folder / "turns.csv").write_text(f"{columns}\na_t0.jpg,a.jpg,face mesh,0,40,0,40,60,{purpose}\n")
        data = DataConfig(root=str(tmp_path), train=[{"path": folder.name}], val_fraction=0.0)
        if refused:
            with pytest.raises(PipnetError, match="made for evaluation"):
                load_sources(data, 0)
        else:
            assert len(load_sources(data, 0)[0].train) == 1


@needs(SHARED_DATA / "300w_subset" / "helen" / "trainset")
def test_prepare_data_writes_turned_faces_that_eval_reads_per_yaw_bin(tmp_path):
    pytest.importorskip("mediapipe")
    source = tmp_path / "testset"  # named like a test set: prepare-data needs --for-evaluation
    source.mkdir()
    for sample in read_labeled(SHARED_DATA / "300w_subset" / "helen" / "trainset")[:4]:
        (source / sample.image_path.name).write_bytes(sample.image_path.read_bytes())
        (source / sample.image_path.with_suffix(".pts").name).write_bytes(
            sample.image_path.with_suffix(".pts").read_bytes()
        )
    out = tmp_path / "turned"

    def pipnet(*args):
        command = [sys.executable, "-m", "pipnet_core", *map(str, args)]
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    made = pipnet("prepare-data", "--data", source, "--out", out, "--per-face", "3", "--yaw-range", "0", "90",
                  "--stratify", "--for-evaluation")  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "4 faces -> 12 turned copies" in made.stdout and "by Face Mesh: 4" in made.stdout, made.stdout
    with (out / "turns.csv").open() as handle:
        turns = list(csv.DictReader(handle))
    assert len(turns) == 12 and len(read_labeled(out)) == 12
    # One copy in each 30-degree bin per face (stratified), on the side the face already looks to.
    for start in range(0, 12, 3):
        sizes = sorted(abs(float(row["yaw"])) for row in turns[start : start + 3])
        assert [int(size // 30) for size in sizes] == [0, 1, 2], sizes
    evaluated = pipnet("eval", "--model", "models/pipnet_mbv2_68.onnx", "--data", out, "--yaw")
    assert evaluated.returncode == 0, evaluated.stderr
    bins = [
        line.split() for line in evaluated.stdout.splitlines() if line.strip().startswith(("0-30", "30-60", "60-90"))
    ]
    assert [(row[0], row[1]) for row in bins] == [("0-30", "4"), ("30-60", "4"), ("60-90", "4")], evaluated.stdout
    # The same copies again from the same seed: the folder is reproducible.
    again = pipnet("prepare-data", "--data", source, "--out", tmp_path / "again", "--per-face", "3", "--yaw-range",
                   "0", "90", "--stratify", "--for-evaluation")  # fmt: skip
    assert again.returncode == 0
    for made_file in sorted(out.iterdir()):  # every picture, label file and the table, byte for byte
        assert (tmp_path / "again" / made_file.name).read_bytes() == made_file.read_bytes(), made_file.name
    assert {row["purpose"] for row in turns} == {"evaluation"}


def test_prepare_data_keeps_test_sets_for_evaluation(tmp_path):
    made = subprocess.run(
        [sys.executable, "-m", "pipnet_core", "prepare-data", "--data", str(tmp_path / "testset"), "--out",
         str(tmp_path / "out")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert made.returncode == 2 and "--for-evaluation" in made.stderr and "Traceback" not in made.stderr
    assert len(made.stderr.strip().splitlines()) == 1


def test_turned_copies_of_a_face_held_out_for_validation_are_never_trained_on(tmp_path):
    """A face is held out whole: its turned copies go to validation together, and no copy of a
    face another source holds out (plain or turned) is trained on."""
    import cv2
    from synthetic import drawn_face

    from pipnet_core.io.labels import write_pts
    from pipnet_core.training.config import DataConfig
    from pipnet_core.training.sources import load_sources

    faces, turned, profile = tmp_path / "faces", tmp_path / "turned", tmp_path / "profile"
    faces.mkdir(), turned.mkdir(), profile.mkdir()
    rng = np.random.default_rng(1)
    header = "image,source,lifted_by,own_yaw,turn_yaw,turn_pitch,yaw,eye_distance,purpose"
    rows = {turned: [header], profile: [header]}
    for k in range(10):
        image, points = drawn_face(rng)
        cv2.imwrite(str(faces / f"a{k}.jpg"), image)
        write_pts(faces / f"a{k}.pts", points)
        # Copies of 7 of the 10 in one folder, of 9 in the other: the three splits differ.
        for folder, count in ((turned, 2 if k < 7 else 0), (profile, 1 if k > 0 else 0)):
            for copy in range(count):
                cv2.imwrite(str(folder / f"a{k}_t{copy}.jpg"), image)
                write_pts(folder / f"a{k}_t{copy}.pts", points)
                rows[folder].append(
                    f"a{k}_t{copy}.jpg,{(faces / f'a{k}.jpg').resolve()},face mesh,0,30,0,30,60,training"
                )
    for folder, lines in rows.items():
        (folder / "turns.csv").write_text("\n".join(lines) + "\n")
    data = DataConfig(
        root=str(tmp_path), train=[{"path": "faces"}, {"path": "turned"}, {"path": "profile"}], val_fraction=0.3
    )
    plain, copies, profiles = load_sources(data, 0)
    held = {s.image_path.stem for s in plain.val}
    assert len(held) == 3
    source_of = {s.image_path.name: s.image_path.stem.split("_")[0] for s in copies.train + copies.val}
    held_copies = {source_of[s.image_path.name] for s in copies.val}
    assert len(copies.val) == 2 * len(held_copies) == 4  # both copies of each of its 2 held-out faces
    held_profiles = {s.image_path.stem.split("_")[0] for s in profiles.val}
    assert held_copies != held_profiles  # the splits differ, so the rule is what keeps them apart
    trained = {source_of[s.image_path.name] for s in copies.train}
    trained |= {s.image_path.stem.split("_")[0] for s in profiles.train}
    assert not trained & (held | held_copies | held_profiles)


def test_a_face_turning_to_profile_and_back_keeps_one_id_and_every_frame_within_10_percent():
    """The tracked case: the photo's face turned by Face Mesh's 3D to 75 degrees either way and
    back (as `pipnet eval-clip --turn 75`), through the whole video pipeline with the shipped model."""
    pytest.importorskip("mediapipe")
    from pipnet_core.evaluation.evaluate import track_clip
    from pipnet_core.evaluation.face_mesh import FaceMesh
    from pipnet_core.io.sample_clip import face_photo
    from pipnet_core.training.turning import turning_clip

    photo = face_photo()
    with FaceMesh(stills=True) as mesh, Landmarker() as landmarker:
        face = lift(photo, landmarker.process_image(photo)[0].points, mesh.meshes_3d(photo)[0])
        frames = ((image, t, labels, face.eye_distance) for image, t, labels in turning_clip(face, 75.0, 90))
        result = track_clip(landmarker, frames)
    assert result.tracked == result.frames == 90 and len(result.ids) == 1, result.line()
    assert result.nme.max() <= 0.10, result.line()


def test_face_mesh_yaw_has_the_pose_sign_and_bench_quality_bins_by_it(lifted):
    """mesh_yaw on the photo turned either way follows the turn's sign and grows with it; the
    per-bin table counts a frame without our face as missed, not as a perfect frame."""
    pytest.importorskip("mediapipe")
    if lifted.lifted_by != "face mesh":
        pytest.skip("the Face Mesh lift alone: the generic face's turns add nothing to this check")
    from pipnet_core.evaluation.face_mesh import FaceMesh, mesh_yaw
    from pipnet_core.evaluation.quality import yaw_bins

    with FaceMesh(stills=True) as mesh:
        yaws = {turn_by: mesh_yaw(mesh.meshes_3d(turn(lifted, turn_by)[0])[0]) for turn_by in (-45, 0, 45)}
    assert yaws[-45] < -20 and abs(yaws[0]) < 10 and yaws[45] > 20, yaws
    rows = yaw_bins([(5.0, 0.02), (-10.0, 0.04), (45.0, np.nan), (-50.0, 0.08), (89.0, 0.3), (90.0, 0.5)])
    assert [(r["bin"], r["frames"], r["missed"]) for r in rows] == [("0-30", 2, 0), ("30-60", 2, 1), ("60-90", 2, 0)]
    assert rows[0]["median"] == pytest.approx(0.03) and rows[1]["median"] == pytest.approx(0.08)

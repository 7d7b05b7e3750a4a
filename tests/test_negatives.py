"""Crops with no face (`pipnet prepare-data --negatives`, training/negatives.py): how they are made,
how training reads them (empty score maps), and `pipnet eval --negatives`, which counts the ones
the model takes for a face."""

import csv
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from pipnet_core import Landmarker
from pipnet_core.base.crop import CropBox
from pipnet_core.base.errors import PipnetError
from pipnet_core.detection.registry import create_detector
from pipnet_core.io.labels import Sample, read_negatives, write_pts
from pipnet_core.io.sample_clip import face_photo
from pipnet_core.training.batches import LandmarkDataset, preload
from pipnet_core.training.config import Config, DataConfig
from pipnet_core.training.loss import pip_loss
from pipnet_core.training.negatives import NegativePlan, drawn_texture, prepare_negatives
from pipnet_core.training.sources import load_sources


def pipnet(*args):
    return subprocess.run([sys.executable, "-m", "pipnet_core", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def two_people(tmp_path_factory):
    """One picture of two faces side by side with a wide margin; only the left one is labelled
    (as pictures hold people nobody labelled). Returns the folder, the labelled sample and the
    unlabelled face's box (x, y, w, h)."""
    photo = face_photo()
    with Landmarker() as landmarker:
        points = landmarker.process_image(photo)[0].points
    small = cv2.resize(photo, (256, 256), interpolation=cv2.INTER_AREA)
    points = points / 2
    picture = np.full((512, 900, 3), 200, np.uint8)
    picture[128:384, 40:296], picture[128:384, 600:856] = small, small
    folder = tmp_path_factory.mktemp("two_people")
    cv2.imwrite(str(folder / "pair.png"), picture)
    labelled = points + (40, 128)
    write_pts(folder / "pair.pts", labelled)
    unlabelled = CropBox.around_points(points + (600, 128), 1.0).as_xywh()
    return folder, Sample(folder / "pair.png", labelled), unlabelled


def test_background_patches_keep_clear_of_every_face_labelled_or_not(two_people, tmp_path):
    _, sample, unlabelled = two_people
    out = tmp_path / "negatives"
    counts = prepare_negatives([sample], out, NegativePlan(per_image=150, textures=0.2, seed=3))
    patches = read_negatives(out)
    assert counts["background"] == 150 and counts["texture"] == 30 and len(patches) == 180
    assert counts["refused by the detector"] > 0  # the unlabelled face was in reach, and refused
    with (out / "negatives.csv").open() as handle:
        rows = [row for row in csv.DictReader(handle) if row["kind"] == "background"]
    labelled = CropBox.around_points(sample.points, 1.0).as_xywh()
    with create_detector("blazeface-both") as detector:
        for row in rows:
            x, y, side = float(row["x"]), float(row["y"]), float(row["side"])
            for fx, fy, fw, fh in (labelled, unlabelled):
                across = max(0.0, min(fx + fw, x + side) - max(fx, x))
                down = max(0.0, min(fy + fh, y + side) - max(fy, y))
                if (fx, fy, fw, fh) == labelled:  # never more than a tenth of the labelled face or of the patch
                    assert across * down <= 0.1 * min(fw * fh, side * side) + 1e-6, row
            assert not detector.detect(cv2.imread(str(out / row["image"]))), row["image"]


def test_negatives_are_reproducible_and_textures_vary():
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    first = [drawn_texture(rng_a, 64) for _ in range(8)]
    assert all(np.array_equal(a, drawn_texture(rng_b, 64)) for a in first)
    assert all(t.std() > 5 for t in first)  # a pattern, not a flat colour
    assert len({t.tobytes() for t in first}) == 8


def test_a_negative_trains_to_empty_score_maps_and_no_offsets(two_people, tmp_path):
    folder, sample, _ = two_people
    negatives = tmp_path / "negatives"
    prepare_negatives([sample], negatives, NegativePlan(per_image=2, textures=1.0))
    data = DataConfig(root=str(tmp_path), train=[{"path": str(folder)}, {"path": "negatives"}], val_fraction=0.0)
    faces, patches = load_sources(data, 0)
    assert len(patches.train) == 4 and patches.val == []  # validation measures faces only
    cfg = Config(data=data)
    cfg.model.input_size = 192
    from pipnet_core.training.batches import fit_codec

    codec = fit_codec(faces.train + patches.train, cfg)  # the patches add nothing to the mean face
    samples = faces.train + patches.train
    dataset = LandmarkDataset(samples, preload(samples), codec, cfg, augment=True)
    items = [dataset[i] for i in range(len(samples))]
    assert items[0][2].sum() == 68  # the face: one cell per landmark
    assert all(float(t.abs().sum()) == 0.0 for item in items[1:] for t in item[2:])
    # A batch of negatives alone: the score loss only, finite, and 0 where the maps are empty.
    targets = [torch.stack([item[k] for item in items[1:]]) for k in range(2, 7)]
    outputs = [torch.rand_like(t) for t in targets]
    total, parts = pip_loss(outputs, targets, cfg)
    assert parts["offset"] == 0.0 and parts["neighbour"] == 0.0
    assert torch.isclose(total, cfg.train.score_weight * (outputs[0] ** 2).mean())
    assert float(pip_loss([t.clone() for t in targets], targets, cfg)[0]) == 0.0


def test_training_refuses_negatives_made_for_evaluation(two_people, tmp_path):
    _, sample, _ = two_people
    prepare_negatives([sample], tmp_path / "held", NegativePlan(per_image=1, purpose="evaluation"))
    with pytest.raises(PipnetError, match="never trained on"):
        load_sources(DataConfig(root=str(tmp_path), train=[{"path": "held"}]), 0)


def test_eval_negatives_counts_faces_among_the_patches(two_people, tmp_path):
    """Textures and background pass rarely; the same table with face crops slipped in as
    "negatives" says they pass: the count can fail."""
    folder, sample, _ = two_people
    made = pipnet("prepare-data", "--negatives", "--data", folder, "--out", tmp_path / "neg", "--per-image", "6",
                  "--textures", "2")  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "6 background patches and 12 textures" in made.stdout, made.stdout
    faces = tmp_path / "faces"
    faces.mkdir()
    box = CropBox.around_points(sample.points, 1.2)
    picture = cv2.imread(str(sample.image_path))
    rows = ["image,source,x,y,side,kind,purpose"]
    for k, shift in enumerate((-0.04, 0.0, 0.04)):
        x, y = int(box.cx - box.side / 2 + shift * box.side), int(box.cy - box.side / 2)
        cv2.imwrite(str(faces / f"face{k}.png"), picture[y : y + int(box.side), x : x + int(box.side)])
        rows.append(f"face{k}.png,,,,,face,evaluation")
    (faces / "negatives.csv").write_text("\n".join(rows) + "\n")

    def table(folder_):
        result = pipnet("eval", "--model", "models/pipnet_mbv2_68_int8.onnx", "--negatives", folder_)
        assert result.returncode == 0, result.stderr
        return {line.split()[0]: float(line.split()[2]) for line in result.stdout.splitlines()[2:]}

    plain = table(tmp_path / "neg")
    assert plain["all"] <= 10.0 and set(plain) == {"background", "texture", "all"}
    assert table(faces)["face"] == 100.0


def test_eval_negatives_refuses_options_that_need_faces(tmp_path):
    result = pipnet("eval", "--model", "models/pipnet_mbv2_68_int8.onnx", "--negatives", tmp_path, "--yaw")
    assert result.returncode == 2 and "--negatives" in result.stderr and "Traceback" not in result.stderr
    missing = pipnet("eval", "--model", "models/pipnet_mbv2_68_int8.onnx", "--negatives", tmp_path)
    assert missing.returncode == 2 and "negatives.csv" in missing.stderr and "Traceback" not in missing.stderr

"""`pipnet pack` and `pipnet train --archive`: a config's data as one file of crops that gives
training the crops and labels its folders give, on a machine without the folders."""

import shutil

import cv2
import numpy as np
import pytest
import torch
from synthetic import MeanFaceModel, write_drawn_faces

from pipnet_core.base.errors import PipnetError
from pipnet_core.model.interface import ModelInfo
from pipnet_core.training.archive import distillation, pack, read_archive
from pipnet_core.training.augment import training_crop
from pipnet_core.training.batches import LandmarkDataset, fit_codec, preload
from pipnet_core.training.config import AugmentConfig, Config, DataConfig, DistilConfig, ModelConfig, TrainConfig
from pipnet_core.training.sources import is_negative, load_sources
from pipnet_core.training.train import train


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """Ten drawn faces in pictures larger than the crops, and a folder of three crops with no face."""
    root = tmp_path_factory.mktemp("data")
    write_drawn_faces(root / "faces", 10, size=384, seed=3)
    rng = np.random.default_rng(4)
    (root / "empty").mkdir()
    rows = ["image,source,x,y,side,kind,purpose"]
    for i in range(3):
        cv2.imwrite(str(root / "empty" / f"{i}.png"), rng.integers(0, 255, (200, 200, 3), dtype=np.uint8))
        rows.append(f"{i}.png,,,,,texture,training")
    (root / "empty" / "negatives.csv").write_text("\n".join(rows) + "\n")
    return root


def config(root, out_dir="runs/x", epochs=1) -> Config:
    return Config(
        model=ModelConfig(input_size=96, pretrained=""),
        data=DataConfig(
            root=str(root), train=[{"path": "faces", "repeat": 2.0}, {"path": "empty", "repeat": 1.0}], val_fraction=0.2
        ),
        augment=AugmentConfig(rotation_deg=40, rotation_prob=1.0, occlusion_prob=0, blur_prob=0, colour_prob=0),
        train=TrainConfig(epochs=epochs, batch_size=4, lr=1e-3, workers=0, threads=2, out_dir=str(out_dir)),
    )


def test_an_archive_gives_the_crops_and_labels_the_folders_give(data_root, tmp_path):
    cfg = config(data_root)
    report = pack(cfg, tmp_path / "crops.npz", quality=100)
    assert (report.crops, report.faces) == (13, 10)
    packed = read_archive(tmp_path / "crops.npz", cfg)
    folders = load_sources(cfg.data, cfg.train.seed)
    assert [(s.name, len(s.train), len(s.val), s.repeat) for s in packed.sources] == [
        (s.name, len(s.train), len(s.val), s.repeat) for s in folders
    ]
    images = preload([s for src in folders for s in src.train + src.val])
    centre = slice(24, 72)  # the middle half: what a 40-degree turn never takes from beyond the margin
    for mine, theirs in zip(packed.sources[0].train + packed.sources[0].val, folders[0].train + folders[0].val):
        for seed in range(3):  # the same augmented draw from each: scale, shift, turn, mirror
            a, pa = training_crop(
                packed.images[mine.image_path], mine.points, 1.2, 96, cfg.augment, np.random.default_rng(seed)
            )
            b, pb = training_crop(
                images[theirs.image_path], theirs.points, 1.2, 96, cfg.augment, np.random.default_rng(seed)
            )
            np.testing.assert_allclose(pa, pb, atol=0.02)
            # Compared smoothed: the pictures' background is per-pixel noise, which a second resampling
            # changes pixel by pixel; a crop placed 2 px off differs by about 9 here.
            smooth_a, smooth_b = (cv2.GaussianBlur(c, (0, 0), 1.5)[centre, centre].astype(int) for c in (a, b))
            difference = np.abs(smooth_a - smooth_b).mean()
            assert difference < 2.5, (theirs.image_path.name, seed, difference)
    assert all(is_negative(s) for s in packed.sources[1].train) and len(packed.sources[1].train) == 3


def test_training_reads_the_archive_with_the_folders_gone(data_root, tmp_path):
    moved = tmp_path / "data"
    shutil.copytree(data_root, moved)
    cfg = config(moved, tmp_path / "run")
    pack(cfg, tmp_path / "crops.npz")
    shutil.rmtree(moved)
    lines = []
    best = train(cfg, archive=str(tmp_path / "crops.npz"), log=lines.append)
    assert best.is_file() and any("crop archive" in line for line in lines), lines


def test_a_teachers_points_are_stored_in_crop_pixels(data_root, tmp_path):
    """A teacher that always answers its mean face: the stored points are that face placed in the
    label's crop of each stored picture, not the labels (a copy of the labels would pass otherwise)."""
    cfg = config(data_root)
    folders = load_sources(cfg.data, cfg.train.seed)
    codec = fit_codec([s for src in folders for s in src.train], cfg)
    teacher = MeanFaceModel(ModelInfo(codec, 1.2, "mobilenet_v2"))
    pack(cfg, tmp_path / "crops.npz", teacher=teacher)
    packed = read_archive(tmp_path / "crops.npz", cfg)
    from pipnet_core.base.crop import landmark_crop_matrix, transform_points

    for sample in packed.sources[0].train:
        matrix = landmark_crop_matrix(sample.points, 1.2, 96)
        expected = transform_points(codec.mean_face, cv2.invertAffineTransform(matrix))
        np.testing.assert_allclose(packed.teacher[sample.image_path], expected, atol=0.05)
        assert np.abs(packed.teacher[sample.image_path] - sample.points).mean() > 0.5


def test_a_bad_archive_or_one_without_a_configs_source_is_refused_in_one_line(data_root, tmp_path):
    cfg = config(data_root)
    pack(cfg, tmp_path / "crops.npz")
    other = config(data_root)
    other.data.train = [{"path": "elsewhere"}]
    with pytest.raises(PipnetError, match="holds no source 'elsewhere'"):
        read_archive(tmp_path / "crops.npz", other)
    (tmp_path / "junk.npz").write_bytes(b"not an archive" * 10)
    with pytest.raises(PipnetError, match="not a pipnet crop archive"):
        read_archive(tmp_path / "junk.npz", cfg)
    whole = (tmp_path / "crops.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(whole[: len(whole) // 2])  # a copy cut short
    with pytest.raises(PipnetError, match="damaged"):
        read_archive(tmp_path / "cut.npz", cfg)


def test_a_failed_write_keeps_the_old_archive(data_root, tmp_path, monkeypatch):
    cfg = config(data_root)
    pack(cfg, tmp_path / "crops.npz")
    before = (tmp_path / "crops.npz").read_bytes()

    def disk_full(*_, **__):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(PipnetError, match="No space left on device"):
        pack(cfg, tmp_path / "crops.npz", quality=50)
    assert (tmp_path / "crops.npz").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["crops.npz"]


def still_config(root) -> Config:
    """No geometric augmentation: a draw's crop is the label's crop."""
    cfg = config(root)
    cfg.augment = AugmentConfig(
        rotation_prob=0, scale_min=1, scale_max=1, translate=0, flip_prob=0, occlusion_prob=0, blur_prob=0,
        grey_prob=0, colour_prob=0,
    )  # fmt: skip
    return cfg


def test_distilled_targets_are_the_teachers_points_on_the_labels_crop_in_the_share_asked(data_root, tmp_path):
    cfg = still_config(data_root)
    folders = load_sources(cfg.data, cfg.train.seed)
    codec = fit_codec([s for src in folders for s in src.train], cfg)
    pack(cfg, tmp_path / "crops.npz", teacher=MeanFaceModel(ModelInfo(codec, 1.2, "mobilenet_v2")))

    def draws(share: float, teacher_only: list[str]):
        cfg.distil = DistilConfig(teacher_share=share, teacher_only=teacher_only)
        packed = read_archive(tmp_path / "crops.npz", cfg)
        samples = [s for src in packed.sources for s in src.train]
        dataset = LandmarkDataset(samples, packed.images, codec, cfg, True, distillation(packed, cfg))
        out = []
        for epoch in range(12):
            dataset.epoch = epoch
            out.append([dataset[i][:2] for i in range(len(packed.sources[0].train))])
        return out

    labels, taught, half = draws(0.0, []), draws(0.0, ["faces"]), draws(0.5, [])
    from_teacher = []
    for (crop_l, points_l), (crop_t, points_t), (_, points_h) in zip(*(sum(d, []) for d in (labels, taught, half))):
        assert torch.equal(crop_l, crop_t)  # the crop comes from the labels either way
        assert np.abs(points_t.numpy() - codec.mean_face).max() < 0.05  # what the teacher said on that crop
        assert np.abs(points_l.numpy() - codec.mean_face).mean() > 0.5
        from_teacher.append(np.abs(points_h.numpy() - codec.mean_face).max() < 0.05)
    assert 0.3 < np.mean(from_teacher) < 0.7, np.mean(from_teacher)


def test_distilling_needs_an_archive_with_a_teachers_points(data_root, tmp_path):
    cfg = config(data_root, tmp_path / "run")
    cfg.distil = DistilConfig(teacher_share=0.5)
    with pytest.raises(PipnetError, match="give --archive"):
        train(cfg, log=lambda *_: None)
    pack(cfg, tmp_path / "crops.npz")
    with pytest.raises(PipnetError, match="pack --teacher"):
        train(cfg, archive=str(tmp_path / "crops.npz"), log=lambda *_: None)
    cfg.distil = DistilConfig(teacher_only=["nowhere"])
    with pytest.raises(PipnetError, match="'nowhere', not a source"):
        train(cfg, archive=str(tmp_path / "crops.npz"), log=lambda *_: None)


def test_an_archive_packed_for_other_settings_or_over_its_size_is_refused(data_root, tmp_path):
    cfg = config(data_root)
    pack(cfg, tmp_path / "crops.npz")
    before = (tmp_path / "crops.npz").read_bytes()
    other = config(data_root)
    other.train.seed = 7  # another seed holds out other faces
    with pytest.raises(PipnetError, match="seed"):
        read_archive(tmp_path / "crops.npz", other)
    other = config(data_root)
    other.model.input_size = 128  # its crops were stored for 96
    with pytest.raises(PipnetError, match="smaller than the config's 128"):
        read_archive(tmp_path / "crops.npz", other)
    with pytest.raises(PipnetError, match="over --max-mb 0.01"):
        pack(cfg, tmp_path / "crops.npz", quality=100, max_mib=0.01)
    assert (tmp_path / "crops.npz").read_bytes() == before

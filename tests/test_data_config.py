import cv2
import numpy as np
import pytest
from synthetic import SHARED_DATA, drawn_face, needs

from pipnet_core.base.errors import PipnetError
from pipnet_core.io.images import load_image
from pipnet_core.io.labels import Sample, conflicting_labels, list_images, read_labeled, read_pts, write_pts
from pipnet_core.training.config import Config


@pytest.fixture
def labeled_folder(tmp_path):
    rng = np.random.default_rng(0)
    truth = {}
    for i in range(3):
        image, points = drawn_face(rng)
        cv2.imwrite(str(tmp_path / f"face{i}.png"), image)
        write_pts(tmp_path / f"face{i}.pts", points)
        truth[f"face{i}.png"] = points
    return tmp_path, truth


def test_300w_folder_round_trips_points_and_uses_one_based_files(labeled_folder):
    folder, truth = labeled_folder
    samples = read_labeled(folder)
    assert [s.image_path.name for s in samples] == sorted(truth)
    for s in samples:
        np.testing.assert_allclose(s.points, truth[s.image_path.name], atol=1e-3)
    first_line = (folder / "face0.pts").read_text().splitlines()[3]
    assert float(first_line.split()[0]) == pytest.approx(truth["face0.png"][0, 0] + 1, abs=1e-3)


def test_csv_layout_finds_images_in_the_same_named_folder(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "train").mkdir()
    rows = []
    for i in range(2):
        image, points = drawn_face(rng)
        cv2.imwrite(str(tmp_path / "train" / f"f{i}.jpg"), image)
        rows.append(",".join([f"f{i}.jpg", *(f"{v:.2f}" for v in points.reshape(-1))]))
    header = ",".join(["", *map(str, range(136))])
    (tmp_path / "train.csv").write_text("\n".join([header, *rows]) + "\n")
    for path in (tmp_path / "train.csv", tmp_path / "train"):
        samples = read_labeled(path)
        assert len(samples) == 2 and samples[1].image_path == tmp_path / "train" / "f1.jpg"
        assert load_image(samples[0].image_path).shape == (256, 256, 3)


def test_two_labelings_of_one_face_conflict_but_two_faces_of_one_image_do_not(tmp_path):
    _, face = drawn_face(np.random.default_rng(2))
    other_face = face + [300, 0]  # beside the first: a group photo
    samples = [
        Sample(tmp_path / "group.jpg", face),
        Sample(tmp_path / "group.jpg", other_face),
        Sample(tmp_path / "twice.jpg", face),
        Sample(tmp_path / "twice.jpg", face + 6),
        Sample(tmp_path / "same.jpg", face),
        Sample(tmp_path / "same.jpg", face + 0.2),
    ]
    assert conflicting_labels(samples) == {tmp_path / "twice.jpg"}


def test_bad_files_give_one_line_errors_naming_the_file(tmp_path):
    bad_pts = tmp_path / "bad.pts"
    bad_pts.write_text("version: 1\nn_points: 68\n{\n1 2\n}\n")
    with pytest.raises(PipnetError, match="bad.pts: expected 68 points"):
        read_pts(bad_pts)
    (tmp_path / "x.csv").write_text("h\nimg.jpg,1,2,3\n")
    with pytest.raises(PipnetError, match=r"x.csv:2: expected 137 columns"):
        read_labeled(tmp_path / "x.csv")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(PipnetError, match="broken.jpg: is not an image this program reads"):
        load_image(tmp_path / "broken.jpg")
    with pytest.raises(PipnetError, match="no such folder"):
        read_labeled(tmp_path / "missing")
    assert list_images(tmp_path) == [tmp_path / "broken.jpg"]


def test_config_rejects_unknown_keys_and_wrong_types(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nlr = 0.001\nepochs = 2\n")
    cfg = Config.load(path)
    assert cfg.train.lr == 0.001 and cfg.train.epochs == 2 and cfg.model.input_size == 256
    path.write_text("[train]\nlrr = 0.001\n")
    with pytest.raises(PipnetError, match="unknown key 'lrr'"):
        Config.load(path)
    path.write_text("[train]\nepochs = 'ten'\n")
    with pytest.raises(PipnetError, match="epochs = 'ten': expected int"):
        Config.load(path)
    path.write_text("[trian]\n")
    with pytest.raises(PipnetError, match=r"unknown section \[trian\]"):
        Config.load(path)


def test_set_overrides_a_key_over_the_file_and_is_checked_like_it(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nlr = 0.001\nepochs = 2\nlr_milestones = [30, 50]\n")
    cfg = Config.load(
        path, ["train.lr=3e-4", "train.lr_milestones=[1, 2]", "train.out_dir=runs/2026-12-04", "model.width=1"]
    )
    assert (cfg.train.lr, cfg.train.epochs, cfg.train.lr_milestones) == (3e-4, 2, [1, 2])
    assert cfg.train.out_dir == "runs/2026-12-04" and cfg.model.width == 1.0  # text as typed; an int for a float
    assert Config.load(path, ["train.init=a=b.pt", "train.freeze_batchnorm = true"]).train.init == "a=b.pt"
    with pytest.raises(PipnetError, match=r"^--set train.lrr=1: unknown key 'lrr' in \[train\]"):
        Config.load(path, ["train.lrr=1"])
    with pytest.raises(PipnetError, match=r"^--set train.epochs=ten: 'ten' is not a TOML value"):
        Config.load(path, ["train.epochs=ten"])
    with pytest.raises(PipnetError, match=r"^--set train.epochs=2.5: \[train\] epochs = 2.5: expected int"):
        Config.load(path, ["train.epochs=2.5"])
    with pytest.raises(PipnetError, match="give SECTION.KEY=VALUE"):
        Config.load(path, ["lr=1e-3"])
    for split in ("data.val_fraction=0.1", "train.seed=1"):  # eval --validation-of rebuilds it from the file
        with pytest.raises(PipnetError, match="the held-out split comes from the config file"):
            Config.load(path, [split])


@needs(SHARED_DATA)
@pytest.mark.parametrize("layout", ["300w_subset/helen/testset", "300w_subset/afw", "ytf68/test"])
def test_real_data_loads_as_shipped(layout):
    samples = read_labeled(SHARED_DATA / layout)
    assert len(samples) > 300
    for sample in samples[:3]:
        image = load_image(sample.image_path)
        h, w = image.shape[:2]
        # Labels lie on the image and the outer eye corners are apart.
        assert (
            (sample.points >= -2).all()
            and (sample.points[:, 0] <= w + 2).all()
            and (sample.points[:, 1] <= h + 2).all()
        )
        assert np.linalg.norm(sample.points[36] - sample.points[45]) > 10

"""End to end on generated faces: train (overfit), resume, export to ONNX, evaluate both."""

import csv
import math

import cv2
import numpy as np
import pytest
from synthetic import MeanFaceModel, drawn_face

from pipnet_core.evaluation.evaluate import evaluate
from pipnet_core.io.labels import read_labeled, write_pts
from pipnet_core.training.config import AugmentConfig, Config, DataConfig, ModelConfig, TrainConfig
from pipnet_core.training.export import export_onnx
from pipnet_core.training.loading import load_landmark_model
from pipnet_core.training.train import RunLog, train

EPOCHS = 60
NO_AUGMENTATION = AugmentConfig(
    rotation_prob=0,
    scale_min=1,
    scale_max=1,
    translate=0,
    flip_prob=0,
    occlusion_prob=0,
    blur_prob=0,
    grey_prob=0,
    colour_prob=0,
)


def tiny_config(data_root, out_dir, epochs) -> Config:
    return Config(
        model=ModelConfig(input_size=128, pretrained=""),
        data=DataConfig(root=str(data_root), train=[{"path": "faces", "repeat": 4.0}], val_fraction=0.25),
        augment=NO_AUGMENTATION,
        train=TrainConfig(
            epochs=epochs, batch_size=8, lr=2e-3, lr_milestones=[100], workers=0, threads=2, out_dir=str(out_dir)
        ),
    )


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    (root / "faces").mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        image, points = drawn_face(rng, size=160, vary_shape=True)
        cv2.imwrite(str(root / "faces" / f"{i}.png"), image)
        write_pts(root / "faces" / f"{i}.pts", points)
    out = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RunLog, "REDRAW_SECONDS", math.inf)  # the first epoch draws, then only the end
        best = train(tiny_config(root, out, epochs=EPOCHS), log=lambda *_: None)
    return root, out, best


def log_rows(out):
    with (out / "log.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_short_training_overfits_and_writes_its_records(trained_run):
    _, out, best = trained_run
    rows = log_rows(out)
    assert len(rows) == EPOCHS
    assert float(rows[0]["loss"]) > 5 * float(rows[-1]["loss"])
    assert best.exists() and (out / "last.pt").exists() and (out / "curves.png").stat().st_size > 1000
    assert (out / "curves.png").stat().st_mtime_ns >= (out / "log.csv").stat().st_mtime_ns  # drawn after the last row


def test_the_curves_an_interrupted_run_did_not_draw_are_drawn_when_it_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(RunLog, "REDRAW_SECONDS", math.inf)
    interrupted = RunLog(tmp_path)
    for epoch in (1, 2, 3):
        interrupted.append(
            {
                "epoch": epoch,
                "lr": 1e-4,
                "loss": 1 / epoch,
                "score": 0,
                "offset": 0,
                "neighbour": 0,
                "val_nme": 0.1 / epoch,
                "seconds": 1,
                "images_per_s": 1,
            }
        )
    drawn = interrupted.png_path.stat().st_mtime_ns
    assert drawn < interrupted.csv_path.stat().st_mtime_ns  # drawn after epoch 1 only
    RunLog(tmp_path).finish()
    assert interrupted.png_path.stat().st_mtime_ns > interrupted.csv_path.stat().st_mtime_ns


def test_resume_continues_from_the_last_epoch(trained_run):
    root, out, _ = trained_run
    train(tiny_config(root, out, epochs=EPOCHS + 1), resume=True, log=lambda *_: None)
    rows = log_rows(out)
    assert [int(r["epoch"]) for r in rows] == list(range(1, EPOCHS + 2))


def test_export_matches_torch_and_both_evaluate_the_same(trained_run, tmp_path):
    root, _, best = trained_run
    report = export_onnx(best, tmp_path / "tiny.onnx")
    assert report.verified and report.max_point_difference < 1e-4  # torch + codec against the graph's own decode
    assert load_landmark_model(report.path).decodes_in_graph
    samples = read_labeled(root / "faces")
    from_torch = evaluate(load_landmark_model(best), samples).summary()
    from_onnx = evaluate(load_landmark_model(report.path), samples).summary()
    assert from_torch["nme"] == pytest.approx(from_onnx["nme"], rel=1e-4)
    # It learnt the drawn faces' own shapes, not just their mean: a model that always answers the
    # mean face (same crops, same decode) scores 5.8% here; 60 epochs from scratch on 6 faces
    # reach about 3.7%.
    mean_face = evaluate(MeanFaceModel(load_landmark_model(report.path).info), samples).summary()
    assert from_onnx["nme"] < 0.75 * mean_face["nme"], (from_onnx["nme"], mean_face["nme"])


def test_fine_tuning_starts_from_another_runs_weights_with_a_fresh_schedule(trained_run, tmp_path):
    root, out, best = trained_run
    cfg = tiny_config(root, tmp_path / "tuned", epochs=2)
    cfg.train.init, cfg.train.init_state, cfg.train.lr = str(best), "weights", 1e-4
    train(cfg, log=lambda *_: None)
    tuned = log_rows(tmp_path / "tuned")
    assert [int(r["epoch"]) for r in tuned] == [1, 2] and float(tuned[0]["lr"]) == 1e-4
    assert float(tuned[0]["loss"]) < 0.5 * float(log_rows(out)[0]["loss"])  # not from scratch


def test_an_exported_model_fine_tunes_from_its_onnx_file_with_batch_norm_frozen(trained_run, tmp_path):
    # No checkpoint ships with a model: fine-tuning starts from the ONNX file, whose batch norms
    # are folded. The rebuilt network must compute what the file does, and training must leave
    # the (identity) statistics alone: batch statistics would change what every layer computes.
    from torch import nn

    from pipnet_core.model.onnx import OnnxLandmarkModel
    from pipnet_core.training.export import verification_crops
    from pipnet_core.training.torch_runner import (
        TorchLandmarkModel,
        eval_mode,
        load_checkpoint,
        network_from_onnx,
        set_training_mode,
    )

    root, out, best = trained_run
    exported = export_onnx(best, tmp_path / "tiny.onnx").path
    network, info = network_from_onnx(exported)
    crops = verification_crops(info.input_size)
    rebuilt, _ = TorchLandmarkModel(network, info).predict(crops)
    from_file, _ = OnnxLandmarkModel(exported).predict(crops)
    assert np.abs(rebuilt - from_file).max() < 1e-3 * info.input_size

    set_training_mode(network, freeze_batchnorm=True)
    with eval_mode(network):
        assert not any(m.training for m in network.modules())
    norms = [m for m in network.modules() if isinstance(m, nn.BatchNorm2d)]
    assert network.training and not any(m.training for m in norms)  # modes restored, norms still frozen

    cfg = tiny_config(root, tmp_path / "tuned", epochs=1)
    cfg.train.init, cfg.train.init_state, cfg.train.lr, cfg.train.freeze_batchnorm = (
        str(exported),
        "weights",
        1e-4,
        True,
    )
    train(cfg, log=lambda *_: None)
    state = load_checkpoint(tmp_path / "tuned" / "last.pt")["model"]
    variances = [v for k, v in state.items() if k.endswith("running_var")]
    assert variances and all(float((v - (1 - 1e-5)).abs().max()) < 1e-6 for v in variances)
    assert float(log_rows(tmp_path / "tuned")[0]["loss"]) < 0.5 * float(log_rows(out)[0]["loss"])  # not from scratch


DDP_CONFIG = """
[model]
input_size = 128
pretrained = ""
[data]
root = "{root}"
train = [{{ path = "faces", repeat = 4.0 }}]
val_fraction = 0.25
[augment]
rotation_prob = 0.0
flip_prob = 0.0
occlusion_prob = 0.0
blur_prob = 0.0
grey_prob = 0.0
[train]
epochs = 2
batch_size = 8
lr = 2e-3
workers = 0
threads = 1
freeze_batchnorm = true
"""


def test_two_ddp_processes_train_exactly_like_one(trained_run, tmp_path):
    """torchrun with 2 CPU processes (gloo) against one process, same global batch. Batch norm is
    frozen so that nothing depends on how a batch is split: the two runs must then agree to float
    rounding (with batch norm learning, each process would normalise its own half-batch)."""
    import socket
    import subprocess
    import sys

    root, _, _ = trained_run
    config = tmp_path / "tiny.toml"
    config.write_text(DDP_CONFIG.format(root=root))
    one = subprocess.run(
        [sys.executable, "-m", "pipnet_core", "train", "--config", config, "--out", tmp_path / "one"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert one.returncode == 0, one.stderr[-2000:]
    with socket.socket() as probe:  # a free port for the process group's rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            f"--master_port={port}",
            "-m",
            "pipnet_core",
            "train",
            "--config",
            config,
            "--out",
            tmp_path / "two",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert two.returncode == 0, two.stderr[-2000:]
    single, double = log_rows(tmp_path / "one"), log_rows(tmp_path / "two")
    assert len(single) == len(double) == 2  # rank 0 alone wrote the log
    for a, b in zip(single, double):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-4)
        assert float(a["val_nme"]) == pytest.approx(float(b["val_nme"]), rel=1e-3)

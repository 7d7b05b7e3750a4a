"""Self-training with curriculum: schedule, pseudo-labels, and a short run that resumes."""

import json

import cv2
import numpy as np
from synthetic import drawn_face
from test_training_export import NO_AUGMENTATION, log_rows

from pipnet_core.io.labels import write_pts
from pipnet_core.io.sample_clip import face_photo
from pipnet_core.model.onnx import OnnxLandmarkModel
from pipnet_core.pipeline.landmarker import Landmarker
from pipnet_core.training.config import Config, DataConfig, ModelConfig, STCConfig, TrainConfig
from pipnet_core.training.stc import pseudo_label
from pipnet_core.training.train import train


def test_the_curriculum_moves_through_the_strides_in_order():
    stc = STCConfig(unlabeled="pool", start_epoch=2, epochs_per_round=2, strides=[96, 64, 32])
    rounds = [stc.round_of(epoch) for epoch in range(9)]
    assert rounds == [None, None, 0, 0, 1, 1, 2, 2, 2]
    assert [stc.strides[r] for r in rounds if r is not None] == [96, 96, 64, 64, 32, 32, 32]
    assert STCConfig(unlabeled="").round_of(50) is None  # off without an unlabeled folder


def test_pseudo_labels_are_the_models_own_predictions(tmp_path):
    model = OnnxLandmarkModel()
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), face_photo())
    kept, found = pseudo_label(model, [path], "blazeface", min_confidence=0.0)
    expected = Landmarker(model, smoothing=False).process_image(face_photo())[0].points
    assert found == 1 and len(kept) == 1
    np.testing.assert_allclose(kept[0].points, expected, atol=1e-4)
    assert pseudo_label(model, [path], "blazeface", min_confidence=1.01)[0] == []  # the threshold drops faces


def test_pseudo_labels_on_a_network_mid_training_use_eval_mode_and_leave_it_training(tmp_path):
    """The torch path STC takes inside train(): the network is in training mode. Pseudo-labelling
    must neither normalise by each image's own statistics nor overwrite the running statistics,
    and must hand the network back in training mode."""
    import copy

    import torch

    from pipnet_core.io.resources import shipped_model
    from pipnet_core.training.torch_runner import TorchLandmarkModel, network_from_onnx

    network, info = network_from_onnx(shipped_model(prefer_int8=False))
    network.train()
    reference = copy.deepcopy(network).eval()
    statistics = {k: v.clone() for k, v in network.state_dict().items() if "running" in k}
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), face_photo())
    kept, found = pseudo_label(TorchLandmarkModel(network, info), [path], "blazeface", min_confidence=0.0)
    assert found == 1 and network.training and all(m.training for m in network.modules())
    for key, value in network.state_dict().items():
        if key in statistics:
            assert torch.equal(value, statistics[key]), key
    expected = Landmarker(TorchLandmarkModel(reference, info), smoothing=False).process_image(face_photo())[0].points
    np.testing.assert_allclose(kept[0].points, expected, atol=1e-3)


def stc_config(root, out, epochs):
    return Config(
        model=ModelConfig(input_size=128, pretrained=""),
        data=DataConfig(root=str(root), train=[{"path": "labeled", "repeat": 2.0}], val_fraction=0.25),
        augment=NO_AUGMENTATION,
        train=TrainConfig(
            epochs=epochs, batch_size=4, lr=1e-3, lr_milestones=[100], workers=0, threads=2, out_dir=str(out)
        ),
        stc=STCConfig(
            unlabeled="unlabeled",
            start_epoch=1,
            epochs_per_round=1,
            strides=[64, 32],
            min_confidence=0.0,
            error_probe="probe",
        ),
    )


def test_a_short_stc_run_completes_and_resumes(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "labeled").mkdir()
    (tmp_path / "unlabeled").mkdir()
    for i in range(8):
        image, points = drawn_face(rng, size=160)
        cv2.imwrite(str(tmp_path / "labeled" / f"{i}.png"), image)
        write_pts(tmp_path / "labeled" / f"{i}.pts", points)
    photo = face_photo()
    for i in range(4):  # real faces for the detector: the photo at a few scales
        scale = 0.8 + 0.1 * i
        cv2.imwrite(str(tmp_path / "unlabeled" / f"{i}.jpg"), cv2.resize(photo, None, fx=scale, fy=scale))
    (tmp_path / "probe").mkdir()  # labeled faces pseudo-labeled as if they were not
    cv2.imwrite(str(tmp_path / "probe" / "photo.png"), photo)
    write_pts(tmp_path / "probe" / "photo.pts", Landmarker().process_image(photo)[0].points)
    out = tmp_path / "run"
    messages = []
    train(stc_config(tmp_path, out, epochs=3), log=messages.append)
    assert [int(r["epoch"]) for r in log_rows(out)] == [1, 2, 3]
    assert any("round 1: pseudo-labeled 4 of 4" in m for m in messages)
    rounds = [json.loads((out / f"pseudo_round{r}.json").read_text()) for r in (0, 1)]
    assert all(len(r["samples"]) == 4 for r in rounds)
    assert rounds[0]["probe"]["faces"] == 1 and np.isfinite(rounds[0]["probe"]["nme"])  # a 1-epoch model: large
    train(stc_config(tmp_path, out, epochs=4), resume=True, log=messages.append)
    assert [int(r["epoch"]) for r in log_rows(out)] == [1, 2, 3, 4]
    assert any("continuing from" in m and "at epoch 4" in m for m in messages)


def test_a_coarse_task_trains_the_exported_score_layer_through_pooled_features():
    """The paper's curriculum: the coarse score map is the network's own score layer on max-pooled
    stride-32 features, so the coarse rounds train weights that are exported; offsets and
    neighbours are not part of a coarse task."""
    import torch
    import torch.nn.functional as F

    from pipnet_core.training.network import PIPNet
    from pipnet_core.training.stc import coarse_scores

    network = PIPNet("mobilenet_v2", 68, 10)
    crops = torch.rand(2, 3, 192, 192) * 255
    scores = coarse_scores(network, crops, 96)
    assert scores.shape == (2, 68, 2, 2)
    expected = network.heads[0](F.max_pool2d(network.features(crops), 3))
    torch.testing.assert_close(scores, expected)
    scores.square().sum().backward()
    assert network.heads[0].weight.grad.abs().sum() > 0
    assert all(head.weight.grad is None for head in network.heads[1:])

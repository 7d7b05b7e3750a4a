"""A lighter MobileNetV2 (issue 34's student): its shapes, and its start from the full ImageNet
network by keeping each layer's strongest channels."""

import numpy as np
import pytest
import torch
from torch import nn

from pipnet_core.base.errors import PipnetError
from pipnet_core.training.narrow import narrow_imagenet_weights, recompute_batchnorm
from pipnet_core.training.network import InvertedResidual, MobileNetV2, PIPNet


@pytest.mark.parametrize(
    ("width", "last", "stride", "size", "grid", "channels"),
    [(1.0, 1280, 32, 192, 6, 1280), (0.5, 0, 32, 160, 5, 160), (0.75, 320, 16, 128, 8, 320)],
)
def test_a_slim_network_gives_the_grid_and_channels_it_is_shaped_for(width, last, stride, size, grid, channels):
    network = PIPNet(num_neighbours=5, stride=stride, width=width, last_channels=last).eval()
    assert network.backbone.out_channels == channels
    score, _, _, neighbour_x, _ = network(torch.zeros(1, 3, size, size))
    assert score.shape == (1, 68, grid, grid) and neighbour_x.shape == (1, 68 * 5, grid, grid)


def test_slim_shapes_are_refused_for_resnet_and_odd_strides():
    with pytest.raises(PipnetError, match="mobilenet_v2"):
        PIPNet("resnet18", width=0.5)
    with pytest.raises(PipnetError, match="stride 24"):
        PIPNet(stride=24)


def _stage_lists(blocks: list[InvertedResidual]) -> list[list[InvertedResidual]]:
    stages: list[list[InvertedResidual]] = []
    for block in blocks:
        if block.residual:
            stages[-1].append(block)
        else:
            stages.append([block])
    return stages


def _full_network_with_a_slim_one_inside(slim: MobileNetV2, seed: int = 0) -> tuple[MobileNetV2, dict]:
    """A full-width network whose channels outside a random slim subset are dead: their convolution
    weights, batch-norm scales and shifts are zero, so they output zero. The L1 choice must find the
    live ones, and the slim network then computes exactly the live channels of the full one."""
    generator = torch.Generator().manual_seed(seed)
    full = MobileNetV2()
    for module in full.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.uniform_(-0.2, 0.2, generator=generator)
            module.running_mean.uniform_(-0.1, 0.1, generator=generator)
            module.running_var.uniform_(0.5, 1.5, generator=generator)
    full.eval()

    def kill(conv: nn.Conv2d, norm: nn.BatchNorm2d, alive: torch.Tensor) -> None:
        dead = torch.ones(conv.out_channels, dtype=torch.bool)
        dead[alive] = False
        conv.weight.data[dead] = 0
        norm.weight.data[dead], norm.bias.data[dead] = 0, 0

    def pick(total: int, count: int) -> torch.Tensor:
        return torch.randperm(total, generator=generator)[:count]

    layers, slim_layers = list(full.features), list(slim.features)
    alive = pick(32, slim_layers[0][0].out_channels)
    kill(layers[0][0], layers[0][1], alive)
    blocks = [m for m in layers if isinstance(m, InvertedResidual)]
    slim_blocks = [m for m in slim_layers if isinstance(m, InvertedResidual)]
    for full_stage, slim_stage in zip(_stage_lists(blocks), _stage_lists(slim_blocks)):
        stage_alive = pick(full_stage[0].conv[-2].out_channels, slim_stage[0].conv[-2].out_channels)
        for k, block in enumerate(full_stage):
            if k >= len(slim_stage):  # dropped from the slim network: a residual block that adds zero
                kill(block.conv[-2], block.conv[-1], torch.zeros(0, dtype=torch.long))
                continue
            hidden_alive = alive
            if len(block.conv) == 4:
                hidden_alive = pick(block.conv[0][0].out_channels, slim_stage[k].conv[0][0].out_channels)
                kill(block.conv[0][0], block.conv[0][1], hidden_alive)
            depthwise = block.conv[-3]
            kill(depthwise[0], depthwise[1], hidden_alive)
            kill(block.conv[-2], block.conv[-1], stage_alive)
            alive = stage_alive
    last_alive = pick(1280, slim.out_channels) if slim.out_channels != alive.numel() else alive
    if not isinstance(slim_layers[-1], InvertedResidual):
        kill(layers[-1][0], layers[-1][1], last_alive)
    return full, {"last": last_alive.sort().values}


@pytest.mark.parametrize(
    ("width", "last", "blocks"), [(0.5, 0, ()), (0.75, 320, ()), (0.5, 320, (1, 1, 2, 2, 1, 2, 1))]
)
def test_narrowed_weights_compute_the_full_networks_strongest_channels(tmp_path, width, last, blocks):
    slim = MobileNetV2(width=width, last_channels=last, blocks=blocks)
    full, alive = _full_network_with_a_slim_one_inside(slim)
    weights = tmp_path / "imagenet.pth"
    torch.save({**full.state_dict(), "classifier.1.weight": torch.zeros(1000, 1280)}, weights)
    narrow_imagenet_weights(slim, weights)
    image = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = full.eval()(image)
        got = slim.eval()(image)
    if last:
        expected = expected[:, alive["last"]]
    else:  # no last convolution: the 320-channel stage, whose live channels are the slim ones
        expected = full.features[:-1](image)
        expected = expected[:, expected.abs().flatten(2).sum((0, 2)) > 0]
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5), float((got - expected).abs().max())


def test_full_width_narrowing_is_the_plain_imagenet_load(tmp_path):
    full = MobileNetV2()
    torch.nn.init.normal_(full.features[0][0].weight)
    weights = tmp_path / "imagenet.pth"
    torch.save(full.state_dict(), weights)
    same = MobileNetV2()
    narrow_imagenet_weights(same, weights)
    for name, tensor in full.state_dict().items():
        assert torch.equal(same.state_dict()[name], tensor), name


def test_batchnorm_statistics_are_measured_afresh_and_the_modes_restored():
    network = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    network.eval()
    network[1].running_mean.fill_(100.0)
    batches = [torch.full((2, 3, 4, 4), 1.0), torch.full((2, 3, 4, 4), 3.0)]
    seen = recompute_batchnorm(network, batches)
    with torch.no_grad():
        conv_means = [network[0](b).mean((0, 2, 3)) for b in batches]
    assert seen == 4 and not network.training and not network[1].training
    np.testing.assert_allclose(network[1].running_mean, (conv_means[0] + conv_means[1]) / 2, atol=1e-6)
    assert network[1].momentum == 0.1


def test_a_student_trains_from_narrowed_weights_exports_and_fine_tunes_from_its_file(tmp_path):
    """A width-0.5 student without the last convolution, on a grid of stride 16: narrowed from
    (stand-in) ImageNet weights with its batch norm measured on the crops, exported with its shape
    in the metadata, and rebuilt from the file computing what the file computes."""
    from synthetic import write_drawn_faces

    from pipnet_core.model.onnx import OnnxLandmarkModel
    from pipnet_core.training.config import AugmentConfig, Config, DataConfig, ModelConfig, TrainConfig
    from pipnet_core.training.export import export_onnx, verification_crops
    from pipnet_core.training.torch_runner import network_from_onnx
    from pipnet_core.training.train import train

    write_drawn_faces(tmp_path / "faces", 6, size=160, seed=0)
    torch.save(MobileNetV2().state_dict(), tmp_path / "imagenet.pth")
    cfg = Config(
        model=ModelConfig(
            input_size=96, stride=16, width=0.5, last_channels=0, num_neighbours=5,
            pretrained=str(tmp_path / "imagenet.pth"),
        ),
        data=DataConfig(root=str(tmp_path), train=[{"path": "faces", "repeat": 2.0}], val_fraction=0.2),
        augment=AugmentConfig(rotation_prob=0),
        train=TrainConfig(epochs=1, batch_size=4, workers=0, threads=2, out_dir=str(tmp_path / "run")),
    )  # fmt: skip
    lines = []
    best = train(cfg, log=lines.append)
    assert any("narrowed" in line and "measured afresh on 10 " in line for line in lines), lines
    report = export_onnx(best, tmp_path / "student.onnx")
    assert report.verified
    model = OnnxLandmarkModel(report.path)
    assert (model.info.width, model.info.last_channels, model.info.codec.grid) == (0.5, 0, 6)
    rebuilt, _ = network_from_onnx(report.path)
    crops = verification_crops(96, count=2)
    with torch.no_grad():
        score = rebuilt(torch.from_numpy(crops).permute(0, 3, 1, 2).float())[0].numpy()
    np.testing.assert_allclose(
        score, model.grid_outputs(crops.transpose(0, 3, 1, 2).astype(np.float32)).score, atol=1e-4
    )
    model.close()


def test_only_a_smaller_network_is_narrowed_from_imagenet(tmp_path):
    torch.save(MobileNetV2().state_dict(), tmp_path / "imagenet.pth")
    for larger, what in ((dict(width=1.5), "width"), (dict(blocks=(1, 2, 3, 5, 3, 3, 1)), "stage 4's blocks")):
        with pytest.raises(PipnetError, match=what):
            narrow_imagenet_weights(MobileNetV2(**larger), tmp_path / "imagenet.pth")

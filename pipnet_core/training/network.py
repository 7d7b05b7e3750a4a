"""PIPNet in torch: a MobileNetV2 or ResNet-18 backbone and the pixel-in-pixel head.

Backbones follow torchvision's module layout exactly, so its published ImageNet weights load
strictly without torchvision itself (which does not install beside the CPU torch we pin).
torch is imported only by training, evaluation of checkpoints and export; the runtime uses ONNX.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pipnet_core.base.errors import PipnetError

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)

PRETRAINED_FILES = {"mobilenet_v2": "mobilenet_v2-b0353104.pth", "resnet18": "resnet18-f37072fd.pth"}
_DOWNLOAD_ROOT = "https://download.pytorch.org/models/"


class Normalise(nn.Module):
    """Raw BGR 0..255 pixels -> ImageNet-normalised RGB, inside the graph so ONNX carries it."""

    def __init__(self):
        super().__init__()
        mean = torch.tensor(IMAGENET_MEAN_RGB[::-1]).view(1, 3, 1, 1) * 255
        std = torch.tensor(IMAGENET_STD_RGB[::-1]).view(1, 3, 1, 1) * 255
        self.register_buffer("mean_bgr", mean, persistent=False)
        self.register_buffer("std_bgr", std, persistent=False)

    def forward(self, bgr: torch.Tensor) -> torch.Tensor:
        return ((bgr - self.mean_bgr) / self.std_bgr).flip(1)


# -- MobileNetV2 (torchvision layout) -----------------------------------------------------------
class ConvBNReLU6(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = [ConvBNReLU6(cin, hidden, kernel=1)] if expand != 1 else []
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


def divisible_by_8(channels: float) -> int:
    """A width-scaled channel count rounded as the MobileNetV2 paper rounds it: to a multiple of 8,
    never more than 10% below the unrounded count."""
    rounded = max(8, int(channels + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * channels else rounded


class MobileNetV2(nn.Module):
    # (expansion, output channels, repeats, first stride), as in the MobileNetV2 paper.
    SETTINGS = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )

    def __init__(
        self, width: float = 1.0, last_channels: int = 1280, output_stride: int = 32, blocks: tuple[int, ...] = ()
    ):
        """``width`` scales every layer's channels; ``last_channels`` is the final 1x1 convolution's
        (0: none, the last stage's channels go to the heads); ``output_stride`` 16 keeps the 160-channel
        stage at stride 16, for a finer grid on a small input; ``blocks`` gives each of the seven
        stages' block count (fewer blocks: fewer operator calls, which a small network's speed on a
        CPU depends on more than on its multiply-adds). The defaults are torchvision's network."""
        super().__init__()
        if output_stride not in (16, 32):
            raise PipnetError(f"MobileNetV2 output stride {output_stride}: use 16 or 32")
        blocks = tuple(blocks) or tuple(repeats for _, _, repeats, _ in self.SETTINGS)
        if len(blocks) != len(self.SETTINGS) or min(blocks) < 1:
            raise PipnetError(f"MobileNetV2 blocks {list(blocks)}: give 7 stage block counts of at least 1")
        cin = divisible_by_8(32 * width)
        layers: list[nn.Module] = [ConvBNReLU6(3, cin, stride=2)]
        for stage, ((expand, channels, _, stride), repeats) in enumerate(zip(self.SETTINGS, blocks)):
            first_stride = 1 if (stage == 5 and output_stride == 16) else stride
            cout = divisible_by_8(channels * width)
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, first_stride if i == 0 else 1, expand))
                cin = cout
        if last_channels:
            layers.append(ConvBNReLU6(cin, last_channels, kernel=1))
        self.width, self.last_channels, self.blocks = width, last_channels, blocks
        self.out_channels = last_channels or cin
        self.features = nn.Sequential(*layers)

    def forward(self, x):
        return self.features(x)


# -- ResNet-18 (torchvision layout) -------------------------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + shortcut)


class ResNet18(nn.Module):
    out_channels = 512

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = (64, 128, 256, 512)
        cin = 64
        for i, width in enumerate(widths, start=1):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(cin, width, stride), BasicBlock(width, width, 1)))
            cin = width

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


BACKBONES = {"mobilenet_v2": MobileNetV2, "resnet18": ResNet18}
# Keys of torchvision's ImageNet checkpoints that belong to the classifier we replace.
_CLASSIFIER_PREFIXES = ("classifier.", "fc.")


def find_pretrained(backbone: str, spec: str) -> Path | str | None:
    """Where ImageNet weights come from. ``spec`` is a file path, ``"imagenet"`` (the torch hub
    cache, else torchvision's download address, for users online) or empty (random init)."""
    if not spec:
        return None
    if spec != "imagenet":
        if not Path(spec).is_file():
            raise PipnetError(f"{spec}: pretrained weights not found")
        return Path(spec)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / PRETRAINED_FILES[backbone]
    return cached if cached.is_file() else _DOWNLOAD_ROOT + PRETRAINED_FILES[backbone]


def load_imagenet_weights(module: nn.Module, source: Path | str) -> None:
    """Load a torchvision ImageNet state dict into a backbone; every backbone key must match."""
    if isinstance(source, Path):
        state = torch.load(source, map_location="cpu", weights_only=True)
    else:
        state = torch.hub.load_state_dict_from_url(source, map_location="cpu", progress=True, weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith(_CLASSIFIER_PREFIXES)}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
        raise PipnetError(f"{source}: not {type(module).__name__} ImageNet weights ({first})") from None


class PIPNet(nn.Module):
    """Backbone plus five 1x1 heads; outputs are the codec's GridOutputs, in order:
    score (N), offset x (N), offset y (N), neighbour x (N*C), neighbour y (N*C).
    ``width``, ``last_channels``, ``blocks`` and stride 16 shape a lighter MobileNetV2 (a student,
    issue 34)."""

    OUTPUT_NAMES = ("score", "offset_x", "offset_y", "neighbour_x", "neighbour_y")

    def __init__(
        self,
        backbone: str = "mobilenet_v2",
        num_points: int = 68,
        num_neighbours: int = 10,
        stride: int = 32,
        width: float = 1.0,
        last_channels: int = 1280,
        blocks: tuple[int, ...] = (),
    ):
        super().__init__()
        if backbone not in BACKBONES:
            raise PipnetError(f"unknown backbone {backbone!r}; choose from {', '.join(BACKBONES)}")
        slim = (width, last_channels, tuple(blocks)) != (1.0, 1280, ())
        if backbone != "mobilenet_v2" and (slim or stride == 16):
            raise PipnetError(f"width, last channels, blocks and stride 16 shape mobilenet_v2, not {backbone}")
        if stride != 16 and (stride < 32 or stride % 32):
            raise PipnetError(f"stride {stride}: the backbone works at stride 32 (or 16); use a multiple of 32")
        self.normalise = Normalise()
        if backbone == "mobilenet_v2":
            self.backbone = MobileNetV2(width, last_channels, min(stride, 32), blocks)
        else:
            self.backbone = BACKBONES[backbone]()
        # Larger strides (coarser grids) pool the stride-32 map.
        self.pool = nn.AvgPool2d(stride // 32) if stride > 32 else nn.Identity()
        channels = self.backbone.out_channels
        sizes = (num_points, num_points, num_points, num_points * num_neighbours, num_points * num_neighbours)
        self.heads = nn.ModuleList(nn.Conv2d(channels, size, 1) for size in sizes)
        for head in self.heads:
            nn.init.normal_(head.weight, std=0.001)
            nn.init.zeros_(head.bias)

    def features(self, bgr: torch.Tensor) -> torch.Tensor:
        """Backbone features at the backbone's stride (32, or 16 for a stride-16 student)."""
        return self.backbone(self.normalise(bgr))

    def forward(self, bgr: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.pool(self.features(bgr))
        return tuple(head(features) for head in self.heads)

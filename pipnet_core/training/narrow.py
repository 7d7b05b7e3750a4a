"""A slim MobileNetV2 started from the full ImageNet one (issue 34's student): every layer keeps the
channels whose weights have the largest L1 norm, as in filter pruning (Li et al., ICLR 2017).

Channels summed by a residual connection must stay aligned, so each residual stage keeps one index
set, chosen by the L1 norms of all its blocks' output projections together; each block's expanded
channels are chosen by its own expansion convolution. The kept batch norms' statistics belong to the
full network's activations; ``recompute_batchnorm`` measures them again on face crops.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from pipnet_core.base.errors import PipnetError
from pipnet_core.training.network import InvertedResidual, MobileNetV2, load_imagenet_weights


def _l1(weight: torch.Tensor) -> torch.Tensor:
    """Each output channel's L1 norm."""
    return weight.abs().flatten(1).sum(1)


def _strongest(norms: torch.Tensor, count: int) -> torch.Tensor:
    """Indices (sorted) of the ``count`` channels with the largest ``norms``."""
    return norms.topk(count).indices.sort().values


def _copy_conv_bn(conv: nn.Conv2d, norm: nn.BatchNorm2d, full_conv, full_norm, out_idx, in_idx) -> None:
    weight = full_conv.weight[out_idx]
    conv.weight.copy_(weight if conv.groups > 1 else weight[:, in_idx])
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(norm, name).copy_(getattr(full_norm, name)[out_idx])


def _stages(counts: tuple[int, ...]) -> list[list[int]]:
    """Block positions grouped into the seven stages of ``counts`` blocks each."""
    ends = [sum(counts[: k + 1]) for k in range(len(counts))]
    return [list(range(end - count, end)) for count, end in zip(counts, ends)]


def _narrow_blocks(slim: MobileNetV2, full: MobileNetV2, in_idx: torch.Tensor) -> torch.Tensor:
    """Copy every block's kept channels; returns the last stage's index set. A stage with fewer
    blocks than the full network's keeps the full stage's first ones (a residual block dropped
    from the end of a stage leaves the sum the others make)."""
    blocks = [m for m in slim.features if isinstance(m, InvertedResidual)]
    full_blocks = [m for m in full.features if isinstance(m, InvertedResidual)]
    for stage, full_stage in zip(_stages(slim.blocks), _stages(full.blocks)):
        kept = full_stage[: len(stage)]
        stage_norms = sum(_l1(full_blocks[i].conv[-2].weight) for i in kept)
        stage_idx = _strongest(stage_norms, blocks[stage[0]].conv[-2].out_channels)
        for i, j in zip(stage, kept):
            layers, full_layers = blocks[i].conv, full_blocks[j].conv
            hidden_idx = in_idx
            if len(full_layers) == 4:  # expansion, depthwise, projection, its batch norm
                expand, full_expand = layers[0], full_layers[0]
                hidden_idx = _strongest(_l1(full_expand[0].weight[:, in_idx]), expand[0].out_channels)
                _copy_conv_bn(expand[0], expand[1], full_expand[0], full_expand[1], hidden_idx, in_idx)
            depthwise, full_depthwise = layers[-3], full_layers[-3]
            _copy_conv_bn(depthwise[0], depthwise[1], full_depthwise[0], full_depthwise[1], hidden_idx, hidden_idx)
            _copy_conv_bn(layers[-2], layers[-1], full_layers[-2], full_layers[-1], stage_idx, hidden_idx)
            in_idx = stage_idx
    return in_idx


@torch.no_grad()
def narrow_imagenet_weights(backbone: MobileNetV2, source: Path | str) -> None:
    """Load ImageNet MobileNetV2 weights into a slimmer ``backbone`` (any width, last convolution
    and block counts), each layer keeping its strongest channels."""
    full = MobileNetV2()
    too_big = [
        what
        for what, mine, theirs in (
            ("width", backbone.width, 1.0),
            ("last channels", backbone.last_channels, full.last_channels),
            *((f"stage {k + 1}'s blocks", b, f) for k, (b, f) in enumerate(zip(backbone.blocks, full.blocks))),
        )
        if mine > theirs
    ]
    if too_big:
        raise PipnetError(f"{source}: ImageNet MobileNetV2 narrows to smaller networks only: {too_big[0]} is larger")
    load_imagenet_weights(full, source)
    layers, full_layers = list(backbone.features), list(full.features)
    stem, full_stem = layers[0], full_layers[0]
    stem_idx = _strongest(_l1(full_stem[0].weight), stem[0].out_channels)
    _copy_conv_bn(stem[0], stem[1], full_stem[0], full_stem[1], stem_idx, torch.arange(3))
    last_idx = _narrow_blocks(backbone, full, stem_idx)
    if not isinstance(layers[-1], InvertedResidual):  # a last 1x1 convolution, maybe thinned
        last, full_last = layers[-1], full_layers[-1]
        keep = _strongest(_l1(full_last[0].weight[:, last_idx]), last[0].out_channels)
        _copy_conv_bn(last[0], last[1], full_last[0], full_last[1], keep, last_idx)


@torch.no_grad()
def recompute_batchnorm(network: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Every batch norm's running statistics measured afresh as the plain average over ``batches``
    (inputs of ``network``); weights untouched, the network's modes restored. Returns the images seen."""
    norms = [m for m in network.modules() if isinstance(m, nn.BatchNorm2d)]
    modes = [(m, m.training) for m in network.modules()]
    saved = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the batches seen
    network.train()
    seen = 0
    try:
        for batch in batches:
            network(batch)
            seen += len(batch)
    finally:
        for norm, momentum in zip(norms, saved):
            norm.momentum = momentum
        for module, training in modes:
            module.train(training)
    return seen

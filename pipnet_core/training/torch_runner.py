"""PIPNet checkpoints in torch: build, save, load and predict (training, evaluation, export)."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipnet_core.base.errors import PipnetError
from pipnet_core.model.codec import GridOutputs
from pipnet_core.model.interface import METADATA_KEY, LandmarkModel, ModelInfo
from pipnet_core.training.config import Config
from pipnet_core.training.network import PIPNet


def build_network(cfg: Config) -> PIPNet:
    m = cfg.model
    return PIPNet(m.backbone, m.num_points, m.num_neighbours, m.stride, m.width, m.last_channels, tuple(m.blocks))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a run killed mid-save keeps its previous checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint of ``save_checkpoint``: tensors and plain values only. ``weights_only`` keeps
    torch's unpickler to those, so a downloaded or planted file cannot run code when loaded."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PipnetError(f"{path}: checkpoint not found") from None
    except pickle.UnpicklingError as exc:  # what weights_only refuses: anything but tensors and plain values
        said = [line for line in str(exc).splitlines() if "Unsupported global" in line] or str(exc).splitlines()[:1]
        reason = said[0].strip()[:160]
        raise PipnetError(
            f"{path}: refused: holds more than weights and plain values, which could run code ({reason})"
        ) from None
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise PipnetError(f"{path}: not a PIPNet checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or not {"model", "config", "info"} <= state.keys():
        raise PipnetError(f"{path}: not a PIPNet checkpoint (missing model, config or info)")
    return state


@contextmanager
def eval_mode(network: nn.Module) -> Iterator[nn.Module]:
    """Evaluation mode for the duration, then every module back to the mode it had (training, or
    batch norm frozen during training)."""
    modes = [(module, module.training) for module in network.modules()]
    network.eval()
    try:
        yield network
    finally:
        for module, training in modes:
            module.train(training)


def set_training_mode(network: nn.Module, freeze_batchnorm: bool) -> None:
    """Training mode; with ``freeze_batchnorm``, batch norm keeps its running statistics (it
    normalises with them and does not update them) while its scale and shift still learn."""
    network.train()
    if freeze_batchnorm:
        for module in network.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()


class TorchLandmarkModel(LandmarkModel):
    def __init__(self, network: PIPNet, info: ModelInfo):
        self.network = network  # its mode is the caller's: grid_outputs evaluates in eval mode and restores it
        self.info = info

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> TorchLandmarkModel:
        return cls.from_state(load_checkpoint(path), str(path))

    @classmethod
    def from_state(cls, state: dict[str, Any], origin: str) -> TorchLandmarkModel:
        """The model of a loaded checkpoint (``origin`` names it in error messages)."""
        network = build_network(Config.from_dict(state["config"], origin))
        network.load_state_dict(state["model"])
        return cls(network.eval(), ModelInfo.from_json(state["info"], origin))  # a finished model: eval

    @torch.inference_mode()
    def grid_outputs(self, batch: np.ndarray) -> GridOutputs:
        # The network may be mid-training (validation, pseudo-labels): batch norm must use its
        # running statistics and must not learn these images'.
        device = next(self.network.parameters()).device
        with eval_mode(self.network):
            outputs = self.network(torch.from_numpy(batch).to(device))
        return GridOutputs(*(o.cpu().numpy() for o in outputs))


def network_from_onnx(path: str | Path) -> tuple[PIPNet, ModelInfo]:
    """A trainable network rebuilt from an exported MobileNetV2 model, so a shipped model can be
    fine-tuned without its training checkpoint. Export folds every batch norm into the convolution
    before it; here each batch norm becomes that folded bias (scale 1, mean 0, variance 1 - eps),
    so the network computes exactly what the file does. Its statistics are gone: train it with
    ``[train] freeze_batchnorm = true``."""
    import onnx
    from onnx import numpy_helper

    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # onnx raises several types for a file that is not a model
        raise PipnetError(f"{path}: not an ONNX model ({type(exc).__name__})") from None
    metadata = {entry.key: entry.value for entry in proto.metadata_props}
    if METADATA_KEY not in metadata:
        raise PipnetError(f"{path}: not a PIPNet model (no '{METADATA_KEY}' metadata)")
    info = ModelInfo.from_json(metadata[METADATA_KEY], str(path))
    if info.backbone != "mobilenet_v2":
        raise PipnetError(f"{path}: fine-tuning from ONNX supports mobilenet_v2, not {info.backbone}")
    codec = info.codec
    network = PIPNet(
        info.backbone, codec.num_points, codec.num_neighbours, codec.stride, info.width, info.last_channels, info.blocks
    )
    arrays = {init.name: numpy_helper.to_array(init) for init in proto.graph.initializer}
    folded = [[arrays[name] for name in node.input[1:]] for node in proto.graph.node if node.op_type == "Conv"]
    modules = list(network.modules()) + [None]
    convs = [
        (m, after if isinstance(after, nn.BatchNorm2d) else None)
        for m, after in zip(modules, modules[1:])
        if isinstance(m, nn.Conv2d)
    ]
    if len(convs) != len(folded):
        raise PipnetError(f"{path}: {len(folded)} convolutions, expected {len(convs)} for {info.backbone}")
    with torch.no_grad():
        for (conv, norm), (weight, bias) in zip(convs, folded):
            if tuple(conv.weight.shape) != weight.shape:
                raise PipnetError(f"{path}: convolution of shape {weight.shape}, expected {tuple(conv.weight.shape)}")
            conv.weight.copy_(torch.tensor(weight))
            target = norm.bias if norm is not None else conv.bias
            target.copy_(torch.tensor(bias))
            if norm is not None:
                norm.weight.fill_(1.0)
                norm.running_mean.zero_()
                norm.running_var.fill_(1.0 - norm.eps)
    return network.eval(), info

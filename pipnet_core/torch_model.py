"""PIPNet checkpoints in torch: build, save, load and predict (training, evaluation, export)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .codec import GridOutputs
from .config import Config
from .errors import PipnetError
from .landmark_model import LandmarkModel, ModelInfo
from .model import PIPNet


def build_network(cfg: Config) -> PIPNet:
    m = cfg.model
    return PIPNet(m.backbone, m.num_points, m.num_neighbours, m.stride)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a run killed mid-save keeps its previous checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise PipnetError(f"{path}: checkpoint not found") from None
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise PipnetError(f"{path}: not a PIPNet checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or not {"model", "config", "info"} <= state.keys():
        raise PipnetError(f"{path}: not a PIPNet checkpoint (missing model, config or info)")
    return state


class TorchLandmarkModel(LandmarkModel):
    def __init__(self, network: PIPNet, info: ModelInfo):
        self.network = network.eval()
        self.info = info

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> "TorchLandmarkModel":
        state = load_checkpoint(path)
        network = build_network(Config.from_dict(state["config"], str(path)))
        network.load_state_dict(state["model"])
        return cls(network, ModelInfo.from_json(state["info"], str(path)))

    @torch.inference_mode()
    def grid_outputs(self, batch: np.ndarray) -> GridOutputs:
        outputs = self.network(torch.from_numpy(batch))
        return GridOutputs(*(o.numpy() for o in outputs))

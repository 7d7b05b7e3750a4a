"""Self-training with curriculum (STC, PIPNet paper section 3.3) for a new, unlabeled domain.

After a supervised warm-up, every round (1) pseudo-labels the unlabeled images with the current
model (faces found by the detector, points from the model's own decode, low-confidence faces
dropped) and (2) trains with one labeled and one pseudo-labeled batch per step. The labeled batch
always trains the full stride-32 task; the pseudo-labeled batch trains the round's curriculum task:
coarse grids first (a larger stride: fewer cells, so fewer negatives and a forgiving target), the
full-resolution task last. Coarse tasks use extra heads on pooled features; they are not exported.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..codec import PIPCodec
from ..data import Sample, list_images, load_image
from ..model_interface import LandmarkModel, ModelInfo
from .batches import LandmarkDataset, preload, to_batch
from .config import Config
from .loss import pip_loss


class CoarseHeads(nn.Module):
    """PIP heads for the coarse curriculum strides, on average-pooled stride-32 features."""

    def __init__(self, width: int, strides: list[int], num_points: int, num_neighbours: int):
        super().__init__()
        sizes = (num_points, num_points, num_points, num_points * num_neighbours, num_points * num_neighbours)
        self.pools = {s: nn.AvgPool2d(s // 32) for s in strides if s != 32}
        self.heads = nn.ModuleDict({str(s): nn.ModuleList(nn.Conv2d(width, n, 1) for n in sizes) for s in self.pools})

    @torch.no_grad()
    def start_from(self, full_heads: nn.ModuleList, stride: int) -> None:
        """Begin a stride's heads as copies of the trained full-resolution heads. Scores and offsets
        are in cell units at every stride, so the copies start close to right; randomly initialised
        heads instead send large, meaningless gradients into the backbone when a round begins."""
        for coarse, full in zip(self.heads[str(stride)], full_heads):
            coarse.load_state_dict(full.state_dict())

    def forward(self, features: torch.Tensor, stride: int) -> tuple[torch.Tensor, ...]:
        pooled = self.pools[stride](features)
        return tuple(head(pooled) for head in self.heads[str(stride)])


def codec_for_stride(codec: PIPCodec, stride: int) -> PIPCodec:
    """The same mean face and neighbours on another grid."""
    return PIPCodec(codec.mean_face, codec.neighbours, codec.input_size, stride)


def pseudo_label(model: LandmarkModel, images: list[Path], detector, min_confidence: float) -> tuple[list[Sample], int]:
    """Pseudo-labels: the model's own decoded points for the most confident face in each image.
    Returns the kept samples and how many images had a face at all."""
    from ..landmarker import Landmarker

    landmarker = Landmarker(model, detector=detector, still_detector=detector, smoothing=False, pose=False,
                            min_confidence=0.0)
    kept, found = [], 0
    for path in images:
        faces = landmarker.process_image(load_image(path))
        if not faces:
            continue
        found += 1
        best = max(faces, key=lambda f: f.mean_confidence)
        if best.mean_confidence >= min_confidence:
            kept.append(Sample(path, best.points.astype(np.float32)))
    return kept, found


class SelfTrainer:
    """The pseudo-labeled half of each STC training step, for the train loop."""

    def __init__(self, cfg: Config, network, info: ModelInfo, data_root: Path, out_dir: Path, log):
        self.cfg, self.network, self.info, self.out_dir, self.log = cfg, network, info, out_dir, log
        self.images = list_images(data_root / cfg.stc.unlabeled)
        m = cfg.model
        self.coarse = CoarseHeads(network.backbone.out_channels, cfg.stc.strides, m.num_points, m.num_neighbours)
        self.coarse.to(memory_format=torch.channels_last)
        self.optimiser = torch.optim.Adam(self.coarse.parameters(), lr=cfg.train.lr)
        self._round: int | None = None
        self._batches = None

    def state_dict(self) -> dict:
        return {"coarse": self.coarse.state_dict(), "optimiser": self.optimiser.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.coarse.load_state_dict(state["coarse"])
        self.optimiser.load_state_dict(state["optimiser"])

    def _pseudo_labels(self, round_index: int, model: LandmarkModel) -> list[Sample]:
        """This round's pseudo-labels, kept in the run folder so a resumed round reuses them."""
        path = self.out_dir / f"pseudo_round{round_index}.json"
        if path.exists():
            saved = json.loads(path.read_text())
            return [Sample(Path(name), np.array(points, np.float32)) for name, points in saved["samples"]]
        kept, found = pseudo_label(model, self.images, "mediapipe", self.cfg.stc.min_confidence)
        self.log(f"round {round_index + 1}: pseudo-labeled {len(kept)} of {len(self.images)} unlabeled images "
                 f"({found} with a face; confidence >= {self.cfg.stc.min_confidence})")
        path.write_text(json.dumps({"samples": [[str(s.image_path), np.round(s.points, 2).tolist()] for s in kept]}))
        return kept

    def begin_epoch(self, epoch: int, model: LandmarkModel, lr: float) -> int | None:
        """Prepare the epoch's pseudo-labeled batches; returns the curriculum stride (None: supervised epoch)."""
        round_index = self.cfg.stc.round_of(epoch)
        if round_index is None:
            self._batches = None
            return None
        for group in self.optimiser.param_groups:
            group["lr"] = lr
        stride = self.cfg.stc.strides[round_index]
        if round_index != self._round:
            self._round = round_index
            starts_round = self.cfg.stc.round_of(epoch - 1) != round_index
            if starts_round and stride != self.cfg.model.stride:  # (a resumed round keeps its trained heads)
                self.coarse.start_from(self.network.heads, stride)
            samples = self._pseudo_labels(round_index, model)  # model.grid_outputs runs in eval mode
            self._dataset = LandmarkDataset(samples, preload(samples), codec_for_stride(self.info.codec, stride),
                                            self.cfg, augment=True)
        self._dataset.epoch = epoch
        self._stride = stride
        self._batches = self._cycle()
        return stride

    def _cycle(self):
        from torch.utils.data import DataLoader

        while True:
            loader = DataLoader(self._dataset, batch_size=self.cfg.train.batch_size, shuffle=True, drop_last=True,
                                num_workers=self.cfg.train.workers)
            yield from loader

    @property
    def active(self) -> bool:
        return self._batches is not None

    def loss(self) -> torch.Tensor:
        crops, _, *targets = next(self._batches)
        x = to_batch(crops)
        outputs = self.network(x) if self._stride == self.cfg.model.stride else self.coarse(self.network.features(x), self._stride)
        loss, _ = pip_loss(outputs, targets, self.cfg)
        return self.cfg.stc.weight * loss

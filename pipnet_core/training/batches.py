"""Training batches: crops with their PIPNet targets, drawn reproducibly, as channels-last tensors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from pipnet_core.base.crop import landmark_crop, landmark_crop_matrix, transform_points
from pipnet_core.io.images import load_image
from pipnet_core.io.labels import Sample
from pipnet_core.model.codec import PIPCodec
from pipnet_core.training.augment import negative_crop, training_crop
from pipnet_core.training.config import Config
from pipnet_core.training.sources import Source, is_negative


def preload(samples: list[Sample], decoded: dict[Path, np.ndarray] | None = None) -> dict[Path, np.ndarray]:
    """Decode every image once (the data sets here are small enough to keep in memory); those in
    ``decoded`` (a crop archive's) are taken as they are."""
    decoded = decoded or {}
    return {path: decoded[path] if path in decoded else load_image(path) for path in {s.image_path for s in samples}}


@dataclass
class Distillation:
    """A teacher's points by sample (a crop archive's), and for each training sample the share of its
    draws whose targets are those points rather than its labels."""

    points: dict[Path, np.ndarray]
    shares: list[float]


class LandmarkDataset(Dataset):
    """Crops and PIPNet targets; augmented samples draw from a generator keyed by (seed, epoch,
    index), so a run is reproducible whatever the number of loader workers."""

    def __init__(
        self,
        samples: list[Sample],
        images: dict[Path, np.ndarray],
        codec: PIPCodec,
        cfg: Config,
        augment: bool,
        distillation: Distillation | None = None,
    ):
        self.samples, self.images, self.codec, self.cfg, self.augment = samples, images, codec, cfg, augment
        self.distillation = distillation
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        sample = self.samples[index]
        image = self.images[sample.image_path]
        size, scale = self.cfg.model.input_size, self.cfg.model.crop_scale
        rng = np.random.default_rng((self.cfg.train.seed, self.epoch, index))
        if is_negative(sample):
            crop = negative_crop(image, size, self.cfg.augment, rng)
            points = np.zeros((self.codec.num_points, 2), np.float32)  # unused: validation holds faces only
            return (torch.from_numpy(crop), torch.from_numpy(points), *self._empty_maps())
        if self.augment:
            targets = None
            if self.distillation is not None and rng.random() < self.distillation.shares[index]:
                targets = self.distillation.points[sample.image_path]
            crop, points = training_crop(image, sample.points, scale, size, self.cfg.augment, rng, targets)
        else:
            crop, matrix = landmark_crop(image, sample.points, scale, size)
            points = transform_points(sample.points, matrix).astype(np.float32)
        targets = self.codec.encode(points)
        maps = (targets.score, targets.offset_x, targets.offset_y, targets.neighbour_x, targets.neighbour_y)
        return (torch.from_numpy(crop), torch.from_numpy(points), *(torch.from_numpy(m) for m in maps))

    def _empty_maps(self) -> tuple[torch.Tensor, ...]:
        """A negative's targets: empty score maps, and with them every offset's weight in the loss zero."""
        g, n, c = self.codec.grid, self.codec.num_points, self.codec.num_neighbours
        return tuple(torch.zeros(k, g, g) for k in (n, n, n, n * c, n * c))


def epoch_indices(sources: list[Source], epoch: int, seed: int) -> np.ndarray:
    """Indices into the concatenated training samples for one epoch, each source drawn `repeat` times."""
    rng = np.random.default_rng((seed, epoch, 1))
    picks, offset = [], 0
    for src in sources:
        n = len(src.train)
        whole, part = divmod(src.repeat, 1.0)
        picks += [np.arange(n) + offset] * int(whole)
        picks.append(rng.choice(n, int(round(part * n)), replace=False) + offset)
        offset += n
    indices = np.concatenate(picks)
    rng.shuffle(indices)
    return indices


def to_batch(crops: torch.Tensor) -> torch.Tensor:
    """uint8 (B, S, S, 3) -> float32 (B, 3, S, S), channels-last in memory (faster convolutions on CPU)."""
    return crops.permute(0, 3, 1, 2).float().contiguous(memory_format=torch.channels_last)


def fit_codec(samples: list[Sample], cfg: Config) -> PIPCodec:
    """Mean face and neighbours from the training labels, in the model's crop frame."""
    m = cfg.model
    crop_points = np.stack(
        [
            transform_points(s.points, landmark_crop_matrix(s.points, m.crop_scale, m.input_size))
            for s in samples
            if not is_negative(s)
        ]
    )
    return PIPCodec.fit(crop_points, m.num_neighbours, m.input_size, m.stride)

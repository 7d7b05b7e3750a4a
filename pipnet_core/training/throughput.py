"""`pipnet bench-train`: training images per second, for the network alone and with the data pipeline."""

from __future__ import annotations

from time import perf_counter

import torch
from torch.utils.data import DataLoader

from pipnet_core.training.batches import LandmarkDataset, fit_codec, preload, to_batch
from pipnet_core.training.loss import pip_loss
from pipnet_core.training.sources import load_sources
from pipnet_core.training.torch_runner import build_network


def bench_training(cfg, steps: int = 12, data_root: str | None = None, warmup: int = 3) -> tuple[float, float]:
    """Training images/s for a config: (network alone on one fixed batch, with the data pipeline)."""
    torch.set_num_threads(cfg.train.threads or torch.get_num_threads())
    samples = load_sources(cfg.data, cfg.train.seed, data_root)[0].train[: cfg.train.batch_size * (steps + warmup)]
    dataset = LandmarkDataset(samples, preload(samples), fit_codec(samples, cfg), cfg, augment=True)
    network = build_network(cfg).to(memory_format=torch.channels_last)
    optimiser = torch.optim.Adam(network.parameters(), lr=cfg.train.lr)

    def step(crops, targets) -> None:
        loss, _ = pip_loss(network(to_batch(crops)), targets, cfg)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    loader = DataLoader(
        dataset, batch_size=cfg.train.batch_size, shuffle=True, drop_last=True, num_workers=cfg.train.workers
    )
    crops, _, *targets = next(iter(loader))
    for _ in range(warmup):
        step(crops, targets)
    start = perf_counter()
    for _ in range(steps):
        step(crops, targets)
    alone = steps * cfg.train.batch_size / (perf_counter() - start)
    batches = iter(loader)
    start = None
    for i in range(warmup + steps):
        if i == warmup:
            start = perf_counter()
        crops, _, *targets = next(batches)
        step(crops, targets)
    with_pipeline = steps * cfg.train.batch_size / (perf_counter() - start)
    return alone, with_pipeline

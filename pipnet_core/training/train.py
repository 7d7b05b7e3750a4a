"""`pipnet train`: supervised PIPNet training on CPU, resumable, one checkpoint per epoch."""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from pipnet_core.base.errors import PipnetError
from pipnet_core.evaluation.metrics import nme
from pipnet_core.model.codec import PIPCodec
from pipnet_core.model.interface import ModelInfo
from pipnet_core.training import distributed
from pipnet_core.training.archive import distillation, read_archive
from pipnet_core.training.batches import Distillation, LandmarkDataset, epoch_indices, fit_codec, preload, to_batch
from pipnet_core.training.config import Config
from pipnet_core.training.distributed import Workers
from pipnet_core.training.loss import pip_loss
from pipnet_core.training.narrow import narrow_imagenet_weights, recompute_batchnorm
from pipnet_core.training.network import find_pretrained, load_imagenet_weights
from pipnet_core.training.sources import Source, is_negative, load_sources
from pipnet_core.training.stc import SelfTrainer
from pipnet_core.training.torch_runner import (
    TorchLandmarkModel,
    build_network,
    load_checkpoint,
    network_from_onnx,
    save_checkpoint,
    set_training_mode,
)

# Training crops whose activations give a narrowed network's batch-norm statistics: enough for a
# steady mean and variance per channel, a few seconds on a CPU.
BATCHNORM_CROPS = 512


def validate(model: TorchLandmarkModel, loader: DataLoader) -> float:
    """Mean NME (outer eye corners) of the held-out slice; crops are similarity transforms of the
    frame, so NME in crop pixels equals NME in frame pixels."""
    errors = []
    for crops, points, *_ in loader:
        predicted, _ = model.predict(crops.numpy())
        errors.append(nme(predicted, points.numpy()))
    return float(np.concatenate(errors).mean())


class RunLog:
    """CSV of per-epoch metrics, one row appended each epoch, plus a PNG of the curves, redrawn at most
    every ``REDRAW_SECONDS`` and once more at the end: drawing takes about half a second, as long as
    a whole epoch of a small fine-tuning run. The rows an interrupted run did not draw are drawn
    when it resumes."""

    FIELDS = ("epoch", "lr", "loss", "score", "offset", "neighbour", "val_nme", "seconds", "images_per_s")
    REDRAW_SECONDS = 30.0

    def __init__(self, out_dir: Path):
        self.csv_path, self.png_path = out_dir / "log.csv", out_dir / "curves.png"
        self._drawn_at = -math.inf

    def rows(self) -> list[dict]:
        if not self.csv_path.exists():
            return []
        with self.csv_path.open() as handle:
            return list(csv.DictReader(handle))

    def append(self, row: dict) -> None:
        new = not self.csv_path.exists()
        with self.csv_path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, self.FIELDS)
            if new:
                writer.writeheader()
            writer.writerow(row)
        if time.monotonic() - self._drawn_at >= self.REDRAW_SECONDS:
            self.plot()

    def finish(self) -> None:
        """Draw the rows no drawing shows yet, this run's or an interrupted one's."""
        if self.csv_path.exists() and (
            not self.png_path.exists() or self.png_path.stat().st_mtime_ns < self.csv_path.stat().st_mtime_ns
        ):
            self.plot()

    def plot(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.rows()
        epochs = [int(r["epoch"]) for r in rows]
        fig, (ax_loss, ax_nme) = plt.subplots(1, 2, figsize=(10, 4))
        ax_loss.plot(epochs, [float(r["loss"]) for r in rows], marker="o")
        ax_loss.set(title="training loss", xlabel="epoch", yscale="log")
        ax_nme.plot(epochs, [100 * float(r["val_nme"]) for r in rows], marker="o", color="tab:orange")
        ax_nme.set(title="validation NME (%)", xlabel="epoch")
        for ax in (ax_loss, ax_nme):
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(self.png_path, dpi=90)
        plt.close(fig)
        self._drawn_at = time.monotonic()


@dataclass
class StartingPoint:
    """Where a run begins: its model description, first epoch, best validation NME so far, and the
    checkpoint state it continues (empty for a fresh start)."""

    info: ModelInfo
    epoch: int = 0
    best_nme: float = math.inf
    state: dict = field(default_factory=dict)
    resumed: bool = False  # continues this run's own last checkpoint
    narrowed: bool = False  # ImageNet weights narrowed to a slim network: batch norm to measure afresh


@dataclass
class TrainingData:
    sources: list[Source]
    train: list
    val: list
    decoded: dict  # images already decoded: a crop archive's
    distillation: Distillation | None = None


def _load_data(cfg: Config, data_root: str | None, archive: str | None, log) -> TrainingData:
    """The sources from their folders, or from a crop archive (with its crops and teacher's points)."""
    if not 0 <= cfg.distil.teacher_share <= 1:
        raise PipnetError(f"config: [distil] teacher_share = {cfg.distil.teacher_share}: it lies within 0-1")
    if archive is not None:
        if cfg.stc.unlabeled:
            raise PipnetError("--archive holds labelled crops only: self-training reads its unlabeled folder")
        began = time.time()
        packed = read_archive(archive, cfg)
        data = TrainingData(packed.sources, [], [], packed.images, distillation(packed, cfg))
        taught = ", with the teacher's points" if data.distillation else ""
        log(
            f"data from the crop archive {archive}{taught}: {len(packed.images)} crops decoded in {time.time() - began:.0f}s"
        )
    else:
        if cfg.distil.active:
            raise PipnetError("config: [distil] reads the teacher's points from a crop archive: give --archive")
        data = TrainingData(load_sources(cfg.data, cfg.train.seed, data_root), [], [], {})
    data.train = [s for src in data.sources for s in src.train]
    data.val = [s for src in data.sources for s in src.val]
    negatives = sum(is_negative(s) for s in data.train)
    log(
        f"data: {len(data.train) - negatives} training faces and {negatives} crops with no face, "
        f"{len(data.val)} faces held out for validation "
        f"({', '.join(f'{s.name}: {len(s.train)}+{len(s.val)} x{s.repeat:g}' for s in data.sources)})"
    )
    for source in data.sources:
        if source.dropped:
            log(f"{source.name}: left out {source.dropped} rows that label one face of an image differently")
    return data


def _start_from_onnx(cfg: Config, network, source: Path, out: Path) -> ModelInfo:
    t, m = cfg.train, cfg.model
    if t.init_state != "weights":
        raise PipnetError(
            f"config: [train] init = {t.init!r}: an ONNX model carries weights only; set init_state = 'weights'"
        )
    if not t.freeze_batchnorm:
        raise PipnetError(
            f"config: [train] init = {t.init!r}: an ONNX model has no batch-norm statistics; "
            "set freeze_batchnorm = true"
        )
    imported, info = network_from_onnx(source)
    codec = info.codec
    theirs = (info.backbone, codec.stride, codec.num_points, codec.num_neighbours, info.crop_scale)
    theirs += (info.width, info.last_channels, list(info.blocks))
    ours = (m.backbone, m.stride, m.num_points, m.num_neighbours, m.crop_scale, m.width, m.last_channels, m.blocks)
    if theirs != ours:
        raise PipnetError(
            f"{source}: model (backbone, stride, points, neighbours, crop scale, width, last channels, blocks) = "
            f"{theirs}, but the config asks for {ours}"
        )
    network.load_state_dict(imported.state_dict())
    # The heads are 1x1 convolutions, so the weights serve any grid: a model can be fine-tuned
    # at another input size with the same mean face and neighbour table.
    codec = PIPCodec(codec.mean_face, codec.neighbours, m.input_size, m.stride)
    return replace(info, codec=codec, name=out.name)


def _starting_point(
    cfg: Config, network, optimiser, scheduler, out: Path, resume: bool, train_samples, log
) -> StartingPoint:
    """This run's last checkpoint (``resume``), another run's model (``[train] init``), or ImageNet weights."""
    t = cfg.train
    last_path = out / "last.pt"
    source = last_path if resume and last_path.exists() else Path(t.init).expanduser() if t.init else None
    if t.init_state not in ("full", "weights"):
        raise PipnetError(f"config: [train] init_state = {t.init_state!r}: choose 'full' or 'weights'")
    if source is not None and source.suffix == ".onnx":
        info = _start_from_onnx(cfg, network, source, out)
        log(f"starting from the weights of {source}")
        return StartingPoint(info)
    if source is not None:
        state = load_checkpoint(source)
        network.load_state_dict(state["model"])
        info = ModelInfo.from_json(state["info"], str(source))
        start = StartingPoint(info, resumed=source == last_path)
        if start.resumed or t.init_state == "full":
            optimiser.load_state_dict(state["optimiser"])
            scheduler.load_state_dict(state["scheduler"])
            start.epoch = state["epoch"] + 1
        if start.resumed:
            start.best_nme, start.state = state["best_nme"], state
        else:  # another run's model becomes this run's
            start.info = replace(info, name=out.name)
        log(f"continuing from {source} at epoch {start.epoch + 1}")
        return start
    if resume:
        log(f"no checkpoint in {out}; starting fresh")
    weights = find_pretrained(cfg.model.backbone, cfg.model.pretrained)
    slim = cfg.model.slim
    if weights and slim:
        narrow_imagenet_weights(network.backbone, weights)
    elif weights:
        load_imagenet_weights(network.backbone, weights)
    return StartingPoint(
        ModelInfo(
            fit_codec(train_samples, cfg),
            cfg.model.crop_scale,
            cfg.model.backbone,
            name=out.name,
            width=cfg.model.width,
            last_channels=cfg.model.last_channels,
            blocks=tuple(cfg.model.blocks),
        ),
        narrowed=bool(weights and slim),
    )


def _train_epoch(
    network,
    loader: DataLoader,
    optimiser,
    cfg: Config,
    self_trainer: SelfTrainer | None,
    stride: int | None,
    label: str,
    workers: Workers,
) -> np.ndarray:
    """One pass over the loader; returns mean (loss, score, offset, neighbour) losses."""
    from tqdm import tqdm

    totals = np.zeros(4)
    bar = tqdm(loader, desc=label, unit="batch", dynamic_ncols=True, mininterval=2, disable=not workers.main)
    for step, (crops, _, *targets) in enumerate(bar, start=1):
        targets = [t.to(workers.device) for t in targets]
        loss, parts = pip_loss(network(to_batch(crops).to(workers.device)), targets, cfg)
        if stride:
            loss = loss + self_trainer.loss()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        totals += (loss.item(), parts["score"], parts["offset"], parts["neighbour"])
        bar.set_postfix(loss=f"{totals[0] / step:.4f}", refresh=False)
    bar.close()
    return distributed.mean_over_workers(totals / max(len(loader), 1), workers)


def train(
    cfg: Config,
    resume: bool = False,
    data_root: str | None = None,
    out_dir: str | None = None,
    log=print,
    archive: str | None = None,
) -> Path:
    """Train to the configured epoch count; returns the best checkpoint's path. Under torchrun,
    every process runs this; see distributed.py."""
    t = cfg.train
    workers = distributed.start()
    log = log if workers.main else (lambda *_: None)
    out = Path(out_dir or t.out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(t.seed)
    torch.set_num_threads(t.threads or torch.get_num_threads())
    data = _load_data(cfg, data_root, archive, log)
    sources, train_samples, val_samples = data.sources, data.train, data.val
    network = build_network(cfg).to(workers.device, memory_format=torch.channels_last)
    optimiser = torch.optim.Adam(network.parameters(), lr=t.lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimiser, t.lr_milestones, t.lr_gamma)
    start = _starting_point(cfg, network, optimiser, scheduler, out, resume, train_samples, log)
    run = RunLog(out)
    if not start.resumed and workers.main:
        run.csv_path.unlink(missing_ok=True)
    self_trainer = _self_trainer(cfg, network, start, data_root, out, log, workers)
    if start.epoch >= t.epochs:
        if workers.main:
            run.finish()
        log(f"already trained for {t.epochs} epochs")
        return out / "best.pt"
    began = time.time()
    images = preload(train_samples + val_samples, data.decoded)
    if not data.decoded:
        log(f"decoded {len(images)} images in {time.time() - began:.0f}s")
    train_set = LandmarkDataset(train_samples, images, start.info.codec, cfg, True, data.distillation)
    if start.narrowed:  # the first crops of the first epoch's order: every source in its share
        first = epoch_indices(sources, 0, t.seed)[:BATCHNORM_CROPS].tolist()
        crops = DataLoader(train_set, batch_size=32, sampler=first)
        batches = (to_batch(c).to(workers.device, memory_format=torch.channels_last) for c, *_ in crops)
        seen = recompute_batchnorm(network, batches)
        log(f"ImageNet weights narrowed to the slim network; batch norm measured afresh on {seen} training crops")
    val_loader = DataLoader(
        LandmarkDataset(val_samples, images, start.info.codec, cfg, augment=False), batch_size=64, num_workers=0
    )
    model, trained = TorchLandmarkModel(network, start.info), distributed.wrap(network, workers)
    best_nme = start.best_nme
    for epoch in range(start.epoch, t.epochs):
        set_training_mode(network, t.freeze_batchnorm)
        train_set.epoch = epoch
        lr = optimiser.param_groups[0]["lr"]
        stride = self_trainer.begin_epoch(epoch, model, lr) if self_trainer is not None else None
        order = distributed.shard(epoch_indices(sources, epoch, t.seed), t.batch_size, workers)
        loader = DataLoader(
            train_set,
            batch_size=t.batch_size // workers.world,
            sampler=order.tolist(),
            drop_last=True,
            num_workers=t.workers,
            persistent_workers=False,
        )
        label = f"epoch {epoch + 1}/{t.epochs}" + (f" (STC stride {stride})" if stride else "")
        began = time.time()
        means = _train_epoch(trained, loader, optimiser, cfg, self_trainer, stride, label, workers)
        scheduler.step()
        if workers.main:
            state = {
                "model": network.state_dict(),
                "optimiser": optimiser.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "config": cfg.to_dict(),
                "info": start.info.to_json(),
            }
            best_nme = _end_epoch(
                model,
                val_loader,
                run,
                out,
                state,
                means,
                lr,
                time.time() - began,
                len(loader) * t.batch_size,
                best_nme,
                epoch + 1 in t.save_epochs,
                log,
            )
        distributed.barrier(workers)
    if workers.main:
        run.finish()
    log(f"best validation NME {100 * best_nme:.2f}%; checkpoint {out / 'best.pt'}")
    distributed.finish(workers)
    return out / "best.pt"


def _self_trainer(cfg: Config, network, start: StartingPoint, data_root, out: Path, log, workers) -> SelfTrainer | None:
    if not cfg.stc.unlabeled:
        return None
    if workers.distributed:
        raise PipnetError("self-training (STC) runs in one process: start it without torchrun")
    return SelfTrainer(cfg, network, start.info, Path(data_root or cfg.data.root), out, log)


def _end_epoch(
    model: TorchLandmarkModel,
    val_loader: DataLoader,
    run: RunLog,
    out: Path,
    state: dict,
    means: np.ndarray,
    lr: float,
    seconds: float,
    images: int,
    best_nme: float,
    keep: bool,
    log,
) -> float:
    """Validate, log, and checkpoint one finished epoch (``keep``: also as epoch_NNN.pt); returns
    the best validation NME so far."""
    val_nme = validate(model, val_loader)
    epoch = state["epoch"] + 1
    run.append(
        {
            "epoch": epoch,
            "lr": lr,
            "loss": means[0],
            "score": means[1],
            "offset": means[2],
            "neighbour": means[3],
            "val_nme": val_nme,
            "seconds": round(seconds, 1),
            "images_per_s": round(images / seconds, 1),
        }
    )
    improved = val_nme < best_nme
    state["best_nme"] = best_nme = min(best_nme, val_nme)
    save_checkpoint(out / "last.pt", state)  # what --resume continues
    if improved:
        save_checkpoint(out / "best.pt", state)
    if keep:
        save_checkpoint(out / f"epoch_{epoch:03d}.pt", state)
    log(
        f"epoch {epoch}: loss {means[0]:.4f}, validation NME {100 * val_nme:.2f}%"
        f"{' (best)' if improved else ''}, {seconds:.0f}s"
    )
    return best_nme

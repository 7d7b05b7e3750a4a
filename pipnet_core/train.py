"""`pipnet train`: supervised PIPNet training on CPU, resumable, one checkpoint per epoch."""
from __future__ import annotations

import csv
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from .augment import training_crop
from .codec import PIPCodec
from .config import Config
from .crop import landmark_crop, landmark_crop_matrix, transform_points
from .data import Sample, Source, load_image, load_sources
from .errors import PipnetError
from .landmark_model import ModelInfo
from .metrics import nme
from .model import find_pretrained, load_imagenet_weights
from .torch_model import (TorchLandmarkModel, build_network, load_checkpoint, network_from_onnx, save_checkpoint,
                          set_training_mode)


def preload(samples: list[Sample]) -> dict[Path, np.ndarray]:
    """Decode every image once; the data sets here are small enough to keep in memory."""
    return {path: load_image(path) for path in {s.image_path for s in samples}}


class LandmarkDataset(Dataset):
    """Crops and PIPNet targets; augmented samples draw from a generator keyed by (seed, epoch,
    index), so a run is reproducible whatever the number of loader workers."""

    def __init__(self, samples: list[Sample], images: dict[Path, np.ndarray], codec: PIPCodec,
                 cfg: Config, augment: bool):
        self.samples, self.images, self.codec, self.cfg, self.augment = samples, images, codec, cfg, augment
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        sample = self.samples[index]
        image = self.images[sample.image_path]
        size, scale = self.cfg.model.input_size, self.cfg.model.crop_scale
        if self.augment:
            rng = np.random.default_rng((self.cfg.train.seed, self.epoch, index))
            crop, points = training_crop(image, sample.points, scale, size, self.cfg.augment, rng)
        else:
            crop, matrix = landmark_crop(image, sample.points, scale, size)
            points = transform_points(sample.points, matrix).astype(np.float32)
        targets = self.codec.encode(points)
        return (torch.from_numpy(crop), torch.from_numpy(points), *(torch.from_numpy(t) for t in
                (targets.score, targets.offset_x, targets.offset_y, targets.neighbour_x, targets.neighbour_y)))


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


def pip_loss(outputs, targets, cfg: Config) -> tuple[torch.Tensor, dict[str, float]]:
    """Score MSE on every cell; offset and neighbour L1 only in each landmark's own cell."""
    score, off_x, off_y, nb_x, nb_y = outputs
    t_score, t_off_x, t_off_y, t_nb_x, t_nb_y = targets
    c = cfg.model.num_neighbours
    mask = t_score
    nb_mask = mask.repeat_interleave(c, dim=1)
    score_loss = F.mse_loss(score, t_score)
    offset_loss = ((off_x - t_off_x).abs() * mask).sum() / mask.sum() + ((off_y - t_off_y).abs() * mask).sum() / mask.sum()
    nb_loss = ((nb_x - t_nb_x).abs() * nb_mask).sum() / nb_mask.sum() + ((nb_y - t_nb_y).abs() * nb_mask).sum() / nb_mask.sum()
    t = cfg.train
    total = t.score_weight * score_loss + t.offset_weight * offset_loss + t.neighbour_weight * nb_loss
    return total, {"score": score_loss.item(), "offset": offset_loss.item(), "neighbour": nb_loss.item()}


def validate(model: TorchLandmarkModel, loader: DataLoader) -> float:
    """Mean NME (outer eye corners) of the held-out slice; crops are similarity transforms of the
    frame, so NME in crop pixels equals NME in frame pixels."""
    errors = []
    for crops, points, *_ in loader:
        predicted, _ = model.predict(crops.numpy())
        errors.append(nme(predicted, points.numpy()))
    return float(np.concatenate(errors).mean())


def fit_codec(samples: list[Sample], cfg: Config) -> PIPCodec:
    """Mean face and neighbours from the training labels, in the model's crop frame."""
    m = cfg.model
    crop_points = np.stack([
        transform_points(s.points, landmark_crop_matrix(s.points, m.crop_scale, m.input_size)) for s in samples])
    return PIPCodec.fit(crop_points, m.num_neighbours, m.input_size, m.stride)


class RunLog:
    """CSV of per-epoch metrics plus a PNG of the curves, rewritten each epoch."""

    FIELDS = ("epoch", "lr", "loss", "score", "offset", "neighbour", "val_nme", "seconds", "images_per_s")

    def __init__(self, out_dir: Path):
        self.csv_path, self.png_path = out_dir / "log.csv", out_dir / "curves.png"

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


def train(cfg: Config, resume: bool = False, data_root: str | None = None, out_dir: str | None = None,
          log=print) -> Path:
    """Train to the configured epoch count; returns the best checkpoint's path."""
    from tqdm import tqdm

    t = cfg.train
    out = Path(out_dir or t.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    last_path, best_path = out / "last.pt", out / "best.pt"
    torch.manual_seed(t.seed)
    torch.set_num_threads(t.threads or torch.get_num_threads())

    sources = load_sources(cfg.data, t.seed, data_root)
    train_samples = [s for src in sources for s in src.train]
    val_samples = [s for src in sources for s in src.val]
    log(f"data: {len(train_samples)} training faces, {len(val_samples)} held out for validation "
        f"({', '.join(f'{s.name}: {len(s.train)}+{len(s.val)} x{s.repeat:g}' for s in sources)})")
    for source in sources:
        if source.dropped:
            log(f"{source.name}: left out {source.dropped} rows that label one face of an image differently")

    network = build_network(cfg).to(memory_format=torch.channels_last)
    optimiser = torch.optim.Adam(network.parameters(), lr=t.lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimiser, t.lr_milestones, t.lr_gamma)
    start_epoch, best_nme, state = 0, math.inf, {}
    # Where training continues from: this run's last checkpoint, or another run's (train.init).
    source = last_path if resume and last_path.exists() else Path(t.init) if t.init else None
    if t.init_state not in ("full", "weights"):
        raise PipnetError(f"config: [train] init_state = {t.init_state!r}: choose 'full' or 'weights'")
    if source is not None and source.suffix == ".onnx":
        if t.init_state != "weights":
            raise PipnetError(f"config: [train] init = {t.init!r}: an ONNX model carries weights only; set init_state = 'weights'")
        if not t.freeze_batchnorm:
            raise PipnetError(f"config: [train] init = {t.init!r}: an ONNX model has no batch-norm statistics; "
                              "set freeze_batchnorm = true")
        imported, info = network_from_onnx(source)
        m, codec = cfg.model, info.codec
        theirs = (info.backbone, codec.input_size, codec.stride, codec.num_points, codec.num_neighbours, info.crop_scale)
        ours = (m.backbone, m.input_size, m.stride, m.num_points, m.num_neighbours, m.crop_scale)
        if theirs != ours:
            raise PipnetError(f"{source}: model (backbone, input, stride, points, neighbours, crop scale) = "
                              f"{theirs}, but the config asks for {ours}")
        network.load_state_dict(imported.state_dict())
        info = replace(info, name=out.name)
        log(f"starting from the weights of {source}")
    elif source is not None:
        state = load_checkpoint(source)
        network.load_state_dict(state["model"])
        info = ModelInfo.from_json(state["info"], str(source))
        if source == last_path or t.init_state == "full":
            optimiser.load_state_dict(state["optimiser"])
            scheduler.load_state_dict(state["scheduler"])
            start_epoch = state["epoch"] + 1
        if source == last_path:
            best_nme = state["best_nme"]
        else:  # another run's model becomes this run's
            info = replace(info, name=out.name)
            state = {}
        log(f"continuing from {source} at epoch {start_epoch + 1}")
    else:
        if resume:
            log(f"no checkpoint in {out}; starting fresh")
        weights = find_pretrained(cfg.model.backbone, cfg.model.pretrained)
        if weights:
            load_imagenet_weights(network.backbone, weights)
        info = ModelInfo(fit_codec(train_samples, cfg), cfg.model.crop_scale, cfg.model.backbone, name=Path(out).name)
    if source != last_path:
        RunLog(out).csv_path.unlink(missing_ok=True)
    self_trainer = None
    if cfg.stc.unlabeled:
        from .stc import SelfTrainer

        self_trainer = SelfTrainer(cfg, network, info, Path(data_root or cfg.data.root), out, log)
        if "self_training" in state:
            self_trainer.load_state_dict(state["self_training"])
    if start_epoch >= t.epochs:
        log(f"already trained for {t.epochs} epochs")
        return best_path

    started = time.time()
    images = preload(train_samples + val_samples)
    log(f"decoded {len(images)} images in {time.time() - started:.0f}s")
    train_set = LandmarkDataset(train_samples, images, info.codec, cfg, augment=True)
    val_loader = DataLoader(LandmarkDataset(val_samples, images, info.codec, cfg, augment=False),
                            batch_size=64, num_workers=0)
    model = TorchLandmarkModel(network, info)
    run_log = RunLog(out)

    for epoch in range(start_epoch, t.epochs):
        set_training_mode(network, t.freeze_batchnorm)
        train_set.epoch = epoch
        lr = optimiser.param_groups[0]["lr"]
        stride = self_trainer.begin_epoch(epoch, model, lr) if self_trainer is not None else None
        indices = epoch_indices(sources, epoch, t.seed)
        loader = DataLoader(train_set, batch_size=t.batch_size, sampler=indices.tolist(), drop_last=True,
                            num_workers=t.workers, persistent_workers=False)
        totals = np.zeros(4)
        began = time.time()
        label = f"epoch {epoch + 1}/{t.epochs}" + (f" (STC stride {stride})" if stride else "")
        bar = tqdm(loader, desc=label, unit="batch", dynamic_ncols=True, mininterval=2)
        for step, (crops, _, *targets) in enumerate(bar, start=1):
            loss, parts = pip_loss(network(to_batch(crops)), targets, cfg)
            if stride:
                loss = loss + self_trainer.loss()
                self_trainer.optimiser.zero_grad(set_to_none=True)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            if stride:
                self_trainer.optimiser.step()
            totals += (loss.item(), parts["score"], parts["offset"], parts["neighbour"])
            bar.set_postfix(loss=f"{totals[0] / step:.4f}", refresh=False)
        bar.close()
        seconds = time.time() - began
        scheduler.step()
        val_nme = validate(model, val_loader)
        means = totals / max(len(loader), 1)
        run_log.append({"epoch": epoch + 1, "lr": lr, "loss": means[0], "score": means[1], "offset": means[2],
                        "neighbour": means[3], "val_nme": val_nme, "seconds": round(seconds, 1),
                        "images_per_s": round(len(loader) * t.batch_size / seconds, 1)})
        improved = val_nme < best_nme
        best_nme = min(best_nme, val_nme)
        state = {"model": network.state_dict(), "optimiser": optimiser.state_dict(),
                 "scheduler": scheduler.state_dict(), "epoch": epoch, "best_nme": best_nme,
                 "config": cfg.to_dict(), "info": info.to_json()}
        if self_trainer is not None:
            state["self_training"] = self_trainer.state_dict()
        save_checkpoint(last_path, state)
        if improved:
            save_checkpoint(best_path, state)
        if epoch + 1 in t.save_epochs:
            save_checkpoint(out / f"epoch_{epoch + 1:03d}.pt", state)
        log(f"epoch {epoch + 1}: loss {means[0]:.4f}, validation NME {100 * val_nme:.2f}%"
            f"{' (best)' if improved else ''}, {seconds:.0f}s")
    log(f"best validation NME {100 * best_nme:.2f}%; checkpoint {best_path}")
    return best_path

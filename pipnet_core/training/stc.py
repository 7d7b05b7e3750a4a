"""Self-training with curriculum (STC, PIPNet paper section 3.3) for a new, unlabeled domain.

After a supervised warm-up, every round (1) pseudo-labels the unlabeled images with the current
model (in eval mode: faces found by the detector, points from the model's own decode) and (2)
trains with one labeled and one pseudo-labeled batch per step. The labeled batch always trains the
full task. The pseudo-labeled batch trains the round's curriculum task, as the authors' code does
it: a coarse task is the score map alone on a coarser grid, computed by the same network and the
same score layer from max-pooled stride-32 features (stride 96 at a 192 input: a 2x2 grid, few
negatives, a forgiving target), so everything it learns lands in the exported model; the last
rounds train the full task (score, offsets, neighbours) on the pseudo-labels. Differences from the
paper (compute, data) are listed in experiments/stc/write-up.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipnet_core.base.errors import PipnetError
from pipnet_core.evaluation.metrics import nme
from pipnet_core.io.images import load_image
from pipnet_core.io.labels import Sample, list_images, read_labeled
from pipnet_core.model.codec import PIPCodec
from pipnet_core.model.interface import LandmarkModel, ModelInfo
from pipnet_core.training.batches import LandmarkDataset, preload, to_batch
from pipnet_core.training.config import Config
from pipnet_core.training.loss import pip_loss


def codec_for_stride(codec: PIPCodec, stride: int) -> PIPCodec:
    """The same mean face and neighbours on another grid."""
    return PIPCodec(codec.mean_face, codec.neighbours, codec.input_size, stride)


def coarse_scores(network, crops: torch.Tensor, stride: int) -> torch.Tensor:
    """The score maps of the coarse task at ``stride``: the network's own score layer on its
    stride-32 features max-pooled to that grid."""
    features = network.features(crops)
    pooled = F.max_pool2d(features, kernel_size=stride // 32)  # the backbone works at stride 32
    return network.heads[0](pooled)


def pseudo_label(model: LandmarkModel, images: list[Path], detector, min_confidence: float) -> tuple[list[Sample], int]:
    """Pseudo-labels: the model's own decoded points for the most confident face in each image.
    Returns the kept samples and how many images had a face at all."""
    kept, found = [], 0
    for path, face in _best_faces(model, images, detector):
        if face is None:
            continue
        found += 1
        if face.mean_confidence >= min_confidence:
            kept.append(Sample(path, face.points.astype(np.float32)))
    return kept, found


def _best_faces(model: LandmarkModel, images: list[Path], detector):
    from pipnet_core.pipeline.landmarker import Landmarker
    from pipnet_core.pipeline.tracking import TrackerConfig

    landmarker = Landmarker(
        model,
        detector=detector,
        still_detector=detector,
        smoothing=False,
        pose=True,
        tracking=TrackerConfig(min_confidence=0.0),
    )
    for path in images:
        faces = landmarker.process_image(load_image(path))
        yield path, max(faces, key=lambda f: f.mean_confidence) if faces else None


def pseudo_label_errors(model: LandmarkModel, probe: list[Sample], detector) -> dict:
    """Pseudo-labelling labeled images as if they were not: how wrong the pseudo-labels are this
    round (NME against the labels), overall and by confidence quartile."""
    errors, confidence = [], []
    truth = {s.image_path: s.points for s in probe}
    for path, face in _best_faces(model, list(truth), detector):
        if face is not None:
            errors.append(float(nme(face.points[None], truth[path][None])[0]))
            confidence.append(face.mean_confidence)
    if not errors:
        return {"faces": 0, "of": len(probe)}
    errors, confidence = np.array(errors), np.array(confidence)
    edges = np.quantile(confidence, [0, 0.25, 0.5, 0.75, 1.0])
    quartiles = [float(errors[(confidence >= lo) & (confidence <= hi)].mean()) for lo, hi in zip(edges, edges[1:])]
    return {
        "faces": len(errors),
        "of": len(probe),
        "nme": float(errors.mean()),
        "median": float(np.median(errors)),
        "failures": float((errors > 0.1).mean()),
        "nme_by_confidence_quartile": quartiles,
        "quartile_edges": edges.round(3).tolist(),
    }


class SelfTrainer:
    """The pseudo-labeled half of each STC training step, for the train loop."""

    def __init__(self, cfg: Config, network, info: ModelInfo, data_root: Path, out_dir: Path, log):
        bad = [s for s in cfg.stc.strides if s % cfg.model.stride or s < cfg.model.stride or s > cfg.model.input_size]
        if bad:
            raise PipnetError(
                f"config: [stc] strides {bad}: each must be a multiple of the model's stride "
                f"({cfg.model.stride}) and at most the input size ({cfg.model.input_size})"
            )
        self.cfg, self.network, self.info, self.out_dir, self.log = cfg, network, info, out_dir, log
        self.images = list_images(data_root / cfg.stc.unlabeled)
        probe = read_labeled(data_root / cfg.stc.error_probe) if cfg.stc.error_probe else []
        self.probe = probe[:: max(len(probe) // cfg.stc.probe_faces, 1)][: cfg.stc.probe_faces]
        self._round: int | None = None
        self._batches = None

    def _pseudo_labels(self, round_index: int, model: LandmarkModel) -> list[Sample]:
        """This round's pseudo-labels, kept in the run folder so a resumed round reuses them."""
        path = self.out_dir / f"pseudo_round{round_index}.json"
        if path.exists():
            saved = json.loads(path.read_text())
            return [Sample(Path(name), np.array(points, np.float32)) for name, points in saved["samples"]]
        kept, found = pseudo_label(model, self.images, "blazeface", self.cfg.stc.min_confidence)
        self.log(
            f"round {round_index + 1}: pseudo-labeled {len(kept)} of {len(self.images)} unlabeled images "
            f"({found} with a face; confidence >= {self.cfg.stc.min_confidence})"
        )
        record = {"samples": [[str(s.image_path), np.round(s.points, 2).tolist()] for s in kept]}
        if self.probe:
            record["probe"] = pseudo_label_errors(model, self.probe, "blazeface")
        if record.get("probe", {}).get("faces"):
            self.log(
                f"round {round_index + 1}: pseudo-label NME on {record['probe']['faces']} labeled probe faces "
                f"{100 * record['probe']['nme']:.2f}% (by confidence quartile, low to high: "
                + ", ".join(f"{100 * q:.2f}" for q in record["probe"]["nme_by_confidence_quartile"])
                + ")"
            )
        path.write_text(json.dumps(record))
        return kept

    def begin_epoch(self, epoch: int, model: LandmarkModel, lr: float) -> int | None:
        """Prepare the epoch's pseudo-labeled batches; returns the curriculum stride (None: supervised epoch)."""
        round_index = self.cfg.stc.round_of(epoch)
        if round_index is None:
            self._batches = None
            return None
        stride = self.cfg.stc.strides[round_index]
        if round_index != self._round:
            self._round = round_index
            samples = self._pseudo_labels(round_index, model)  # model.grid_outputs runs in eval mode
            self._dataset = LandmarkDataset(
                samples, preload(samples), codec_for_stride(self.info.codec, stride), self.cfg, augment=True
            )
        self._dataset.epoch = epoch
        self._stride = stride
        self._batches = self._cycle()
        return stride

    def _cycle(self):
        from torch.utils.data import DataLoader

        while True:
            loader = DataLoader(
                self._dataset,
                batch_size=self.cfg.train.batch_size,
                shuffle=True,
                drop_last=True,
                num_workers=self.cfg.train.workers,
            )
            yield from loader

    def loss(self) -> torch.Tensor:
        """The pseudo-labeled batch's loss: the full task at the model's stride, else the coarse
        score maps alone (score MSE with the configured weight)."""
        crops, _, *targets = next(self._batches)
        device = next(self.network.parameters()).device
        x, targets = to_batch(crops).to(device), [t.to(device) for t in targets]
        if self._stride == self.cfg.model.stride:
            loss, _ = pip_loss(self.network(x), targets, self.cfg)
        else:
            loss = self.cfg.train.score_weight * F.mse_loss(coarse_scores(self.network, x, self._stride), targets[0])
        return self.cfg.stc.weight * loss

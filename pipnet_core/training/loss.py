"""PIPNet's training loss (paper section 3.1): score maps by MSE, offsets and neighbour offsets by L1."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipnet_core.training.config import Config


def pip_loss(outputs, targets, cfg: Config) -> tuple[torch.Tensor, dict[str, float]]:
    """Score MSE on every cell; offset and neighbour L1 only in each landmark's own cell."""
    score, off_x, off_y, nb_x, nb_y = outputs
    t_score, t_off_x, t_off_y, t_nb_x, t_nb_y = targets
    c = cfg.model.num_neighbours
    # A negative crop's score maps are empty, so its offsets are not trained; clamped for a batch of negatives only.
    mask = t_score
    nb_mask = mask.repeat_interleave(c, dim=1)
    score_loss = F.mse_loss(score, t_score)
    cells, nb_cells = mask.sum().clamp(min=1), nb_mask.sum().clamp(min=1)
    offset_loss = (((off_x - t_off_x).abs() + (off_y - t_off_y).abs()) * mask).sum() / cells
    nb_loss = (((nb_x - t_nb_x).abs() + (nb_y - t_nb_y).abs()) * nb_mask).sum() / nb_cells
    t = cfg.train
    total = t.score_weight * score_loss + t.offset_weight * offset_loss + t.neighbour_weight * nb_loss
    return total, {"score": score_loss.item(), "offset": offset_loss.item(), "neighbour": nb_loss.item()}

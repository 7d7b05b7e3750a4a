"""Training sources from a config's ``[data] train`` list, each split into training and validation faces."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipnet_core.base.errors import PipnetError
from pipnet_core.io.labels import TURNS_FILE, Sample, conflicting_labels, read_labeled, read_turns
from pipnet_core.training.config import DataConfig


@dataclass
class Source:
    name: str
    train: list[Sample]
    val: list[Sample]
    repeat: float
    dropped: int = 0  # rows left out for conflicting labels


def load_sources(data: DataConfig, seed: int, root: str | Path | None = None) -> list[Source]:
    """Every configured source, split into train and a held-out validation slice."""
    if not data.train:
        raise PipnetError("config: [data] train lists no sources")
    base = Path(root or data.root)
    sources = []
    for entry in data.train:
        unknown = set(entry) - {"path", "repeat"}
        if unknown or "path" not in entry:
            problem = f"unknown key {sorted(unknown)[0]!r} (known: path, repeat)" if unknown else "has no path"
            raise PipnetError(f"config: [data] train entry {entry}: {problem}")
        repeat = entry.get("repeat", 1.0)
        if isinstance(repeat, bool) or not isinstance(repeat, (int, float)) or repeat <= 0:
            raise PipnetError(f"config: [data] train entry {entry}: repeat must be a positive number")
        folder = base / entry["path"]
        if (folder / TURNS_FILE).is_file() and any(t.purpose != "training" for t in read_turns(folder).values()):
            raise PipnetError(f"{folder}: turned faces made for evaluation (--for-evaluation): never trained on")
        samples = read_labeled(folder)
        order = np.random.default_rng(seed).permutation(len(samples))
        n_val = int(round(len(samples) * data.val_fraction))
        # Split before leaving rows out, so a run with and one without them hold out the same faces.
        conflicting = conflicting_labels(samples) if data.drop_conflicting else set()
        train = [samples[i] for i in order[n_val:] if samples[i].image_path not in conflicting]
        val = [samples[i] for i in order[:n_val] if samples[i].image_path not in conflicting]
        sources.append(Source(entry["path"], train, val, float(repeat), len(samples) - len(train) - len(val)))
    return sources

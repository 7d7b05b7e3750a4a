"""Training sources from a config's ``[data] train`` list, each split into training and validation faces."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipnet_core.base.errors import PipnetError
from pipnet_core.io.labels import (
    NEGATIVES_FILE,
    TURNS_FILE,
    Sample,
    conflicting_labels,
    read_labeled,
    read_negatives,
    read_turns,
)
from pipnet_core.training.config import DataConfig

NO_FACE = np.zeros((0, 2), np.float32)  # the points of a negative sample: a crop trained to empty score maps


@dataclass
class Source:
    name: str
    train: list[Sample]
    val: list[Sample]
    repeat: float
    dropped: int = 0  # rows left out for conflicting labels
    turned: bool = False  # copies made by `pipnet prepare-data` (turns.csv)


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
        folder = base / Path(entry["path"]).expanduser()
        if (folder / NEGATIVES_FILE).is_file():
            sources.append(_negative_source(folder, entry["path"], float(repeat)))
            continue
        turns = read_turns(folder) if (folder / TURNS_FILE).is_file() else {}
        if any(t.purpose != "training" for t in turns.values()):
            raise PipnetError(f"{folder}: turned faces made for evaluation (--for-evaluation): never trained on")
        samples = read_labeled(folder)
        # Rows are held out one by one; turned copies by the face they were made from, all or none.
        groups = [turns[s.image_path.name].source for s in samples] if turns else list(range(len(samples)))
        names = sorted(set(groups))
        order = np.random.default_rng(seed).permutation(len(names))
        n_val = int(round(len(names) * data.val_fraction))
        held = {names[i] for i in order[:n_val]}
        members: dict = {}
        for i, group in enumerate(groups):
            members.setdefault(group, []).append(i)
        rows = [i for g in order for i in members[names[g]]]  # plain sources: one row per group, as before
        # Split before leaving rows out, so a run with and one without them hold out the same faces.
        conflicting = conflicting_labels(samples) if data.drop_conflicting else set()
        kept = [i for i in rows if samples[i].image_path not in conflicting]
        train = [samples[i] for i in kept if groups[i] not in held]
        val = [samples[i] for i in kept if groups[i] in held]
        dropped = len(samples) - len(train) - len(val)
        sources.append(Source(entry["path"], train, val, float(repeat), dropped, turned=bool(turns)))
    return _without_held_out_faces(sources, base)


def _negative_source(folder: Path, name: str, repeat: float) -> Source:
    """A folder of patches with no face, every one trained on (validation measures faces)."""
    patches = read_negatives(folder)
    if any(p.purpose != "training" for p in patches):
        raise PipnetError(
            f"{folder}: patches of test pictures, made for evaluation (--for-evaluation): never trained on"
        )
    return Source(name, [Sample(p.image_path, NO_FACE) for p in patches], [], repeat)


def is_negative(sample: Sample) -> bool:
    return len(sample.points) == 0


def _without_held_out_faces(sources: list[Source], base: Path) -> list[Source]:
    """No turned copy of a face that another source holds out for validation is trained on."""
    held_out = {s.image_path.resolve() for source in sources for s in source.val}
    turns_of = {}
    for source in sources:
        folder = base / Path(source.name).expanduser()
        if (folder / TURNS_FILE).is_file():
            turns_of[source.name] = read_turns(folder)
            # A face held out in one folder of copies is held out of the others too.
            held_out |= {Path(turns_of[source.name][s.image_path.name].source).resolve() for s in source.val}
    for source in sources:
        if source.name in turns_of:
            turns = turns_of[source.name]
            keep = [s for s in source.train if Path(turns[s.image_path.name].source).resolve() not in held_out]
            source.dropped += len(source.train) - len(keep)
            source.train = keep
    return sources

"""Training configuration: TOML files under configs/, checked key by key.

A misspelt key is the most common way to waste a training run, so unknown keys and wrong types
are errors that name the file and the key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import tomllib

from pipnet_core.base.errors import PipnetError


@dataclass
class ModelConfig:
    backbone: str = "mobilenet_v2"
    input_size: int = 256
    stride: int = 32
    num_points: int = 68
    num_neighbours: int = 10
    # MobileNetV2 only: channel width multiplier, the last 1x1 convolution's channels (0: none) and
    # each of the seven stages' block count (empty: the paper's 1, 2, 3, 4, 3, 3, 1).
    width: float = 1.0
    last_channels: int = 1280
    blocks: list[int] = field(default_factory=list)

    @property
    def slim(self) -> bool:
        """A MobileNetV2 other than the full one: ImageNet weights are narrowed to it."""
        return (self.width, self.last_channels, tuple(self.blocks)) != (1.0, 1280, ())

    crop_scale: float = 1.2  # crop side / longer edge of the landmark box
    # ImageNet weights: a file path; "imagenet" for the torch hub cache, then download; "" for none.
    pretrained: str = "imagenet"


@dataclass
class DataConfig:
    root: str = "../shared/data"
    # Each source: {path = "...", repeat = 1.0}; repeat scales how often it is drawn per epoch.
    train: list[dict] = field(default_factory=list)
    val_fraction: float = 0.05  # held out of every source, never trained on
    # Leave out images labeled twice for one face with different points (see data.conflicting_labels).
    drop_conflicting: bool = True


@dataclass
class AugmentConfig:
    rotation_deg: float = 30.0
    rotation_prob: float = 0.5
    scale_min: float = 0.9
    scale_max: float = 1.1
    translate: float = 0.05  # fraction of the crop side
    flip_prob: float = 0.5
    occlusion_prob: float = 0.4
    blur_prob: float = 0.2
    grey_prob: float = 0.2
    colour_prob: float = 0.5
    # Low resolution: the crop shrunk to a random side of lowres_min..lowres_max of its size and
    # enlarged back, as a small or far face looks once cropped and scaled up to the input size.
    lowres_prob: float = 0.0
    lowres_min: float = 0.2
    lowres_max: float = 0.6


@dataclass
class TrainConfig:
    epochs: int = 60
    batch_size: int = 16
    lr: float = 1e-4
    lr_milestones: list[int] = field(default_factory=lambda: [30, 50])
    lr_gamma: float = 0.1
    score_weight: float = 10.0
    offset_weight: float = 1.0
    neighbour_weight: float = 1.0
    workers: int = 1
    threads: int = 0  # torch threads; 0: one per core
    seed: int = 0
    out_dir: str = "runs/default"
    save_epochs: list[int] = field(default_factory=list)  # also keep epoch_NNN.pt after these epochs
    # Start from another run's checkpoint: "full" continues its training state (weights, optimiser,
    # schedule, epoch count; e.g. an STC run branching off its baseline), "weights" only its weights
    # and codec, with this config's fresh optimiser and schedule (fine-tuning).
    # An exported .onnx model also works as init, with init_state = "weights" (see
    # torch_runner.network_from_onnx; it has no batch-norm statistics, so freeze batch norm).
    init: str = ""
    init_state: str = "full"
    freeze_batchnorm: bool = False  # normalise with the running statistics and do not update them


@dataclass
class STCConfig:
    """Self-training with curriculum (see stc.py); off while ``unlabeled`` is empty."""

    unlabeled: str = ""  # folder of unlabeled images, relative to [data] root
    start_epoch: int = 10  # supervised epochs before the first round
    epochs_per_round: int = 5
    strides: list[int] = field(default_factory=lambda: [96, 64, 32])  # one per round, coarse to fine
    min_confidence: float = 0.5  # pseudo-labels with a lower reported confidence are dropped (paper: 0, keep all)
    weight: float = 1.0  # weight of the pseudo-labeled loss
    error_probe: str = ""  # labeled folder pseudo-labeled each round as if unlabeled: pseudo-label error per round
    probe_faces: int = 300

    def round_of(self, epoch: int) -> int | None:
        """The round a (0-based) epoch belongs to; None before self-training starts."""
        if not self.unlabeled or epoch < self.start_epoch:
            return None
        return min((epoch - self.start_epoch) // self.epochs_per_round, len(self.strides) - 1)


@dataclass
class DistilConfig:
    """Targets from a teacher model's points (issue 34's student), which `pipnet pack --teacher`
    stores in a crop archive: `pipnet train --archive` reads them. Off while both are empty."""

    teacher_share: float = 0.0  # of a labelled face's draws, the share whose targets are the teacher's
    teacher_only: list[str] = field(default_factory=list)  # sources trained on the teacher's points alone

    @property
    def active(self) -> bool:
        return self.teacher_share > 0 or bool(self.teacher_only)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    stc: STCConfig = field(default_factory=STCConfig)
    distil: DistilConfig = field(default_factory=DistilConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], origin: str = "config") -> Config:
        sections = {}
        hints = get_type_hints(cls)
        for name, value in raw.items():
            if name not in hints:
                raise PipnetError(f"{origin}: unknown section [{name}] (known: {', '.join(hints)})")
            if not isinstance(value, dict):
                raise PipnetError(f"{origin}: [{name}] must be a table")
            sections[name] = _build_section(hints[name], value, f"{origin}: [{name}]")
        return cls(**sections)

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
        """The file's config, each ``section.key=value`` of overrides then set over it and checked
        like the file's own keys (the value in TOML syntax; a text key takes the text as typed)."""
        try:
            raw = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise PipnetError(f"{path}: cannot read config ({exc.strerror})") from None
        except tomllib.TOMLDecodeError as exc:
            raise PipnetError(f"{path}: invalid TOML ({exc})") from None
        cfg = cls.from_dict(raw, str(path))
        for override in overrides:
            cfg = cfg._overridden(override)
        return cfg

    def _overridden(self, override: str) -> Config:
        where = f"--set {override}:"
        name, equals, text = override.partition("=")
        section, dot, key = (part.strip() for part in name.partition("."))
        if not (equals and dot and section and key):
            raise PipnetError(f"{where} give SECTION.KEY=VALUE, e.g. train.lr=1e-3")
        if section == "data" or (section, key) == ("train", "seed"):
            # `eval --validation-of`, `quantize` and `pack` rebuild the held-out faces from the file.
            raise PipnetError(f"{where} the held-out split comes from the config file: change it there")
        hints = get_type_hints(type(self))
        if section not in hints:
            raise PipnetError(f"{where} unknown section [{section}] (known: {', '.join(hints)})")
        section_type = hints[section]
        values = dataclasses.asdict(getattr(self, section))
        if key not in values:
            raise PipnetError(f"{where} unknown key {key!r} in [{section}] (known: {', '.join(values)})")
        values[key] = _override_value(text.strip(), get_type_hints(section_type)[key], where)
        return dataclasses.replace(self, **{section: _build_section(section_type, values, f"{where} [{section}]")})


def _override_value(text: str, hint: Any, where: str) -> Any:
    if hint is str and not text.startswith(('"', "'")):
        return text  # a path or a name, as typed
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        raise PipnetError(f"{where} {text!r} is not a TOML value (e.g. 0.5, 40, true, [30, 50])") from None


def _build_section(section_type: type, values: dict[str, Any], where: str):
    hints = get_type_hints(section_type)
    for key, value in values.items():
        if key not in hints:
            raise PipnetError(f"{where} unknown key {key!r} (known: {', '.join(hints)})")
        expected = getattr(hints[key], "__origin__", hints[key])
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            values[key] = float(value)
        elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise PipnetError(f"{where} {key} = {value!r}: expected {expected.__name__}")
    return section_type(**values)

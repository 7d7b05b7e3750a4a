"""The interface every landmark network offers, whatever runs it (ONNX Runtime or torch).

A model takes BGR crops made by ``crop.warp`` and returns points in crop pixels; the crop recipe
and codec tables travel with the model as ``ModelInfo``, so a model file is self-describing.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from time import perf_counter

import numpy as np

from pipnet_core.base.crop import invert, to_network_input, transform_points, warp
from pipnet_core.base.errors import PipnetError
from pipnet_core.model.codec import GridOutputs, PIPCodec

METADATA_KEY = "pipnet"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelInfo:
    codec: PIPCodec
    crop_scale: float
    backbone: str
    name: str = "pipnet"
    version: str = "0.0.0"  # semantic version of the weights
    scheme: str = "300-W 68-point (iBUG)"
    licence: str = ""
    training_data: str = ""
    created: str = ""  # ISO date of export
    precision: str = "float32"  # "int8" for a quantized twin (pipnet quantize)
    # The MobileNetV2's shape (training/network.py), for fine-tuning from the file; files exported
    # before 2026-12-04 have none and are the full network.
    width: float = 1.0
    last_channels: int = 1280
    blocks: tuple[int, ...] = ()  # each stage's block count; empty: MobileNetV2's own

    @property
    def input_size(self) -> int:
        return self.codec.input_size

    @property
    def num_points(self) -> int:
        return self.codec.num_points

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT_VERSION,
                "name": self.name,
                "version": self.version,
                "scheme": self.scheme,
                "licence": self.licence,
                "training_data": self.training_data,
                "created": self.created,
                "precision": self.precision,
                "backbone": self.backbone,
                "width": self.width,
                "last_channels": self.last_channels,
                "blocks": list(self.blocks),
                "crop_scale": self.crop_scale,
                "input": "BGR uint8 crop as float32 NCHW 0..255; ImageNet normalisation is inside the graph",
                "codec": self.codec.to_dict(),
            }
        )

    @classmethod
    def from_json(cls, text: str, origin: str) -> ModelInfo:
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT_VERSION:
                raise ValueError(f"format {data.get('format')!r}, expected {FORMAT_VERSION}")
            described = {
                key: str(data[key])
                for key in ("name", "version", "scheme", "licence", "training_data", "created", "precision")
                if key in data
            }
            shape = {
                "width": float(data.get("width", 1.0)),
                "last_channels": int(data.get("last_channels", 1280)),
                "blocks": tuple(int(b) for b in data.get("blocks", ())),
            }
            codec, crop_scale = PIPCodec.from_dict(data["codec"]), float(data["crop_scale"])
            return cls(codec, crop_scale, data["backbone"], **described, **shape)
        except (ValueError, KeyError, TypeError) as exc:
            raise PipnetError(f"{origin}: PIPNet metadata is invalid ({exc})") from None


class LandmarkModel(ABC):
    info: ModelInfo

    @abstractmethod
    def grid_outputs(self, batch: np.ndarray) -> GridOutputs:
        """Raw network outputs for a float32 (B, 3, S, S) batch."""

    def network_outputs(self, batch: np.ndarray) -> GridOutputs | tuple[np.ndarray, np.ndarray]:
        """What the runtime asks the network for: its maps, or, from a model whose graph decodes
        them (training/graph_decode.py), points (B, N, 2) in crop pixels and confidence (B, N)."""
        return self.grid_outputs(batch)

    def _decoded(self, outputs: GridOutputs | tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return self.info.codec.decode(outputs) if isinstance(outputs, GridOutputs) else outputs

    def close(self) -> None:  # noqa: B027 (a hook a backend may fill, not one it must)
        """Release what the model holds (an inference session); nothing by default."""

    def predict(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """BGR uint8 crops (B, S, S, 3) -> points (B, N, 2) in crop pixels, confidence (B, N)."""
        if len(crops) == 0:
            n = self.info.num_points
            return np.zeros((0, n, 2), np.float32), np.zeros((0, n), np.float32)
        return self._decoded(self.network_outputs(to_network_input(crops)))

    def predict_in_frames(
        self, frames: Sequence[np.ndarray], matrices: Sequence[np.ndarray], timings: dict[str, float] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One crop per (frame, frame->crop matrix) pair, run as one batch; points come back in
        frame pixels. ``timings`` (if given) has this call's milliseconds added to crop, infer (the
        network, with its decode when the graph has it) and decode (numpy's decode when it has
        not, and the way back to frame pixels)."""
        size = self.info.input_size
        t0 = perf_counter()
        crops = np.stack([warp(frame, matrix, size) for frame, matrix in zip(frames, matrices)])
        t1 = perf_counter()
        outputs = self.network_outputs(to_network_input(crops))
        t2 = perf_counter()
        points, confidence = self._decoded(outputs)
        points = np.stack([transform_points(p, invert(m)) for p, m in zip(points, matrices)])
        if timings is not None:
            for stage, seconds in (("crop", t1 - t0), ("infer", t2 - t1), ("decode", perf_counter() - t2)):
                timings[stage] = timings.get(stage, 0.0) + 1000 * seconds
        return points.astype(np.float32), confidence


def describe_model(model: LandmarkModel) -> dict[str, str]:
    """What a user should know about a model: for `pipnet --version`, the About box, export headers."""
    info = model.info
    return {
        "model": info.name,
        "model_version": info.version,
        "model_precision": info.precision,
        "model_sha256": getattr(model, "sha256", ""),
        "model_file": str(getattr(model, "path", "")),
        "backbone": info.backbone,
        "input_size": str(info.input_size),
        "landmarks": info.scheme,
        "licence": info.licence,
        "training_data": info.training_data,
        "created": info.created,
    }

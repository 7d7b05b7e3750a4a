"""`pipnet export`: checkpoint -> self-describing ONNX model, verified against torch."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import numpy as np
import torch

from pipnet_core.base.errors import PipnetError
from pipnet_core.model.interface import METADATA_KEY
from pipnet_core.model.onnx import OnnxLandmarkModel
from pipnet_core.training.graph_decode import append_decoder
from pipnet_core.training.network import PIPNet
from pipnet_core.training.torch_runner import TorchLandmarkModel, load_checkpoint

# Parity threshold: largest landmark difference between torch and ONNX Runtime, as a fraction of
# the crop side.
PARITY_TOLERANCE = 1e-4


@dataclass
class ExportReport:
    path: Path
    size_mb: float
    max_point_difference: float  # fraction of the crop side

    @property
    def verified(self) -> bool:
        return self.max_point_difference < PARITY_TOLERANCE


def verification_crops(size: int, count: int = 8, seed: int = 0) -> np.ndarray:
    """Smooth random images: structured enough that score maps have clear maxima."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, size=(count, size // 8, size // 8, 3), dtype=np.uint8)
    return np.stack([cv2.resize(n, (size, size), interpolation=cv2.INTER_CUBIC) for n in noise])


def training_data_of(checkpoint: dict) -> str:
    """The labeled sets a checkpoint's run trained on, from the config it carries."""
    entries = checkpoint.get("config", {}).get("data", {}).get("train", [])
    return ", ".join(str(entry.get("path", "?")) for entry in entries)


def export_onnx(
    checkpoint: str | Path,
    out: str | Path,
    opset: int = 17,
    name: str | None = None,
    version: str | None = None,
    licence: str = "",
) -> ExportReport:
    """Export; ``name``, ``version`` (semantic, e.g. "1.1.0") and ``licence`` describe the model in
    its metadata, with the training data (from the checkpoint's config) and today's date."""
    import onnx

    if version is not None and not re.fullmatch(r"\d+\.\d+\.\d+", version):
        raise PipnetError(f"model version {version!r}: use a semantic version, e.g. 1.2.0")
    state = load_checkpoint(checkpoint)
    torch_model = TorchLandmarkModel.from_state(state, str(checkpoint))
    info = torch_model.info
    torch_model.info = replace(
        info,
        name=name or info.name,
        version=version or info.version,
        licence=licence or info.licence,
        created=date.today().isoformat(),
        training_data=training_data_of(state) or info.training_data,
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    size = torch_model.info.input_size
    network = torch_model.network.to(memory_format=torch.contiguous_format)
    batch_axis = {0: "batch"}
    with torch.inference_mode():
        torch.onnx.export(
            network,
            torch.zeros(1, 3, size, size),
            str(out),
            input_names=["crops"],
            output_names=list(PIPNet.OUTPUT_NAMES),
            opset_version=opset,
            dynamo=False,
            dynamic_axes={name: batch_axis for name in ("crops", *PIPNet.OUTPUT_NAMES)},
        )
    proto = onnx.load(str(out))
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, torch_model.info.to_json()
    proto.producer_name = "pipnet-live"
    proto.doc_string = (
        "PIPNet 68-point facial landmarks; input: BGR crops, float32 NCHW, 0..255; outputs: "
        "the five maps, and the decoded points (crop pixels) and confidence"
    )
    append_decoder(proto, torch_model.info.codec)
    onnx.save(proto, str(out))

    try:
        runtime = OnnxLandmarkModel(out)
    except PipnetError:
        out.unlink(missing_ok=True)
        raise
    crops = verification_crops(size)
    expected, _ = torch_model.predict(crops)
    got, _ = runtime.predict(crops)  # through the graph's own decode
    difference = float(np.abs(expected - got).max()) / size
    return ExportReport(out, out.stat().st_size / 2**20, difference)

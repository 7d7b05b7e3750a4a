"""Any landmark model file by its suffix, for the commands that take either: an ONNX model (the
runtime's) or a training checkpoint, which alone needs torch."""

from __future__ import annotations

from pathlib import Path

from pipnet_core.model.interface import LandmarkModel


def load_landmark_model(path: str | Path, threads: int = 2) -> LandmarkModel:
    """An ONNX model (runtime) or a training checkpoint (needs torch), by file suffix."""
    path = Path(path)
    if path.suffix == ".onnx":
        from pipnet_core.model.onnx import OnnxLandmarkModel

        return OnnxLandmarkModel(path, threads)
    from pipnet_core.training.torch_runner import TorchLandmarkModel  # torch only for checkpoints

    return TorchLandmarkModel.from_checkpoint(path)

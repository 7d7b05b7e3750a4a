"""PIPNet through ONNX Runtime: the runtime path, with no torch import.

The model file carries its ModelInfo (codec tables, crop recipe) as ONNX metadata under the key
``pipnet``; a ``.json`` sidecar with the same text is accepted for models exported elsewhere.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from pipnet_core.base.errors import PipnetError
from pipnet_core.io.resources import shipped_model
from pipnet_core.model.codec import GridOutputs
from pipnet_core.model.interface import METADATA_KEY, LandmarkModel, ModelInfo


def default_model_path() -> Path:
    """The shipped model, unless PIPNET_MODEL names another."""
    return Path(os.environ["PIPNET_MODEL"]) if os.environ.get("PIPNET_MODEL") else shipped_model()


class OnnxLandmarkModel(LandmarkModel):
    def __init__(self, path: str | Path | None = None, threads: int = 2):
        import onnxruntime as ort

        self.path = Path(path) if path else default_model_path()
        if not self.path.is_file():
            raise PipnetError(f"{self.path}: model file not found")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime reports a bad file through several exception types
            raise PipnetError(f"{self.path}: not a loadable ONNX model ({str(exc).splitlines()[0][:120]})") from None
        self.info = ModelInfo.from_json(self._metadata_text(), str(self.path))
        self.sha256 = hashlib.sha256(self.path.read_bytes()).hexdigest()
        self.input_name = self.session.get_inputs()[0].name
        outputs = [o.name for o in self.session.get_outputs()]
        maps = len(GridOutputs.__dataclass_fields__)
        # The five maps first; a model exported since the decode moved into the graph also has the
        # decoded points and confidence, which the runtime asks for alone. Older models decode here.
        self.output_names = outputs[:maps]
        self.decodes_in_graph = outputs[maps:] == ["points", "confidence"]
        if len(self.output_names) != maps or not (self.decodes_in_graph or len(outputs) == maps):
            raise PipnetError(
                f"{self.path}: expected the 5 PIPNet maps (and points, confidence), found outputs {outputs}"
            )
        self.network_outputs(np.zeros((1, 3, self.info.input_size, self.info.input_size), np.float32))  # warm-up

    def _metadata_text(self) -> str:
        custom = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY in custom:
            return custom[METADATA_KEY]
        sidecar = self.path.with_suffix(".json")
        if sidecar.is_file():
            return sidecar.read_text()
        raise PipnetError(f"{self.path}: not a PIPNet model (no '{METADATA_KEY}' metadata and no {sidecar.name})")

    def grid_outputs(self, batch: np.ndarray) -> GridOutputs:
        return GridOutputs(*self.session.run(self.output_names, {self.input_name: batch}))

    def network_outputs(self, batch: np.ndarray) -> GridOutputs | tuple[np.ndarray, np.ndarray]:
        if not self.decodes_in_graph:
            return self.grid_outputs(batch)
        return tuple(self.session.run(["points", "confidence"], {self.input_name: batch}))

    def close(self) -> None:
        self.session = None  # ONNX Runtime frees the session, its memory and threads, with the last reference

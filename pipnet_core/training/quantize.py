"""`pipnet quantize`: a float ONNX model -> a statically quantized INT8 twin, checked before it is kept.

Static quantization (ONNX Runtime, QDQ format, per-channel weights) calibrates activation ranges on
crops of training faces made by our own crop code, exactly as the runtime will crop. The INT8 model
is then scored against its float twin on faces held out from training; if it loses more than the
tolerance, it is not written. Needs the ``onnx`` package (the ``[train]`` extra), not torch.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipnet_core.base.crop import landmark_crop, to_network_input
from pipnet_core.evaluation.evaluate import evaluate
from pipnet_core.io.images import load_image
from pipnet_core.io.labels import Sample
from pipnet_core.model.interface import METADATA_KEY
from pipnet_core.model.onnx import OnnxLandmarkModel
from pipnet_core.training.graph_decode import append_decoder, without_decoder


@dataclass
class QuantizeReport:
    path: Path | None  # None: refused
    float_nme: float
    int8_nme: float
    float_ms: float  # per face, batch of one
    int8_ms: float
    size_mb: float
    faces_checked: int

    @property
    def nme_change(self) -> float:
        return self.int8_nme - self.float_nme


def int8_path(model: Path) -> Path:
    """Where a model's INT8 twin lives: NAME.onnx -> NAME_int8.onnx."""
    return model.with_name(f"{model.stem}_int8{model.suffix}")


def evenly(samples: list[Sample], count: int) -> list[Sample]:
    return samples[:: max(len(samples) // count, 1)][:count]


def calibration_crops(samples: list[Sample], crop_scale: float, size: int) -> np.ndarray:
    """Each sample's face cropped from its ground-truth landmark box: uint8 (B, S, S, 3)."""
    return np.stack([landmark_crop(load_image(s.image_path), s.points, crop_scale, size)[0] for s in samples])


class CropReader:
    """ONNX Runtime's calibration interface: one crop at a time."""

    def __init__(self, crops: np.ndarray, input_name: str):
        self._batches = iter([{input_name: to_network_input(crop[None])} for crop in crops])

    def get_next(self):
        return next(self._batches, None)


def milliseconds_per_face(model: OnnxLandmarkModel, repeats: int = 200) -> float:
    batch = np.zeros((1, 3, model.info.input_size, model.info.input_size), np.float32)
    for _ in range(20):
        model.network_outputs(batch)
    started = time.perf_counter()
    for _ in range(repeats):
        model.network_outputs(batch)
    return 1000 * (time.perf_counter() - started) / repeats


# The shipped recipe: QDQ with per-channel weights; reduce_range keeps 7-bit weights, which avoids
# the u8s8 overflow of AVX2 CPUs without VNNI; activation ranges calibrated to their 99.999th
# percentile (see write_int8). tools/int8_options.py compares others.
SHIPPED_OPTIONS = {"per_channel": True, "reduce_range": True}


def write_int8(model: OnnxLandmarkModel, out: Path, calibration: np.ndarray, **options) -> None:
    """Quantize ``model``'s file statically into ``out`` (ONNX Runtime, calibrated on the uint8
    crops ``calibration``), with its metadata marked as INT8. The network alone is quantized; the
    decode is appended afterwards, in float (graph_decode.py)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    options = {
        "quant_format": QuantFormat.QDQ,
        "activation_type": QuantType.QUInt8,
        "weight_type": QuantType.QInt8,
        # Percentiles, not min-max: on model 1.2.1 a few outlying activations stretched min-max ranges
        # and cost 0.14 NME points on the upright validation faces (percentile: 0.09).
        "calibrate_method": CalibrationMethod.Percentile,
        **SHIPPED_OPTIONS,
        **options,
    }
    with tempfile.TemporaryDirectory() as work:
        network, prepared = Path(work) / "network.onnx", Path(work) / "prepared.onnx"
        proto = onnx.load(str(model.path))
        without_decoder(proto)
        onnx.save(proto, str(network))
        quant_pre_process(str(network), str(prepared), skip_symbolic_shape=True)
        reader = CropReader(calibration, model.input_name)
        with contextlib.redirect_stdout(io.StringIO()):  # percentile calibration prints its progress
            quantize_static(str(prepared), str(out), reader, **options)
    proto = onnx.load(str(out))
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, replace(model.info, precision="int8").to_json()
    append_decoder(proto, model.info.codec)
    onnx.save(proto, str(out))


def quantize(
    model_path: Path,
    out: Path,
    calibration: list[Sample],
    check: list[Sample],
    tolerance: float = 0.001,
    threads: int = 2,
) -> QuantizeReport:
    """Write ``out`` if its NME on ``check`` is within ``tolerance`` (absolute NME, 0.001 = 0.1
    points) of the float model's; the report says either way."""
    float_model = OnnxLandmarkModel(model_path, threads)
    with tempfile.TemporaryDirectory() as work:
        quantized = Path(work) / "int8.onnx"
        info = float_model.info
        write_int8(float_model, quantized, calibration_crops(calibration, info.crop_scale, info.input_size))
        int8_model = OnnxLandmarkModel(quantized, threads)
        report = QuantizeReport(
            None,
            evaluate(float_model, check).summary()["nme"],
            evaluate(int8_model, check).summary()["nme"],
            milliseconds_per_face(float_model),
            milliseconds_per_face(int8_model),
            quantized.stat().st_size / 2**20,
            len(check),
        )
        if report.nme_change <= tolerance:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(quantized.read_bytes())
            report.path = out
    return report

"""Which ONNX Runtime quantization options matter on this CPU: accuracy on the validation faces of
the shipped model's config and milliseconds per face (batch 1, 2 threads) for each variant.

    .venv/bin/python tools/int8_options.py   # run with nothing else on the CPU: it times models
"""
import tempfile
from pathlib import Path

from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from pipnet_core.evaluate import evaluate
from pipnet_core.onnx_runner import OnnxLandmarkModel
from pipnet_core.resources import shipped_model
from pipnet_core.training.config import Config
from pipnet_core.training.quantize import CropReader, evenly, milliseconds_per_face
from pipnet_core.training.sources import load_sources

VARIANTS = {
    "QDQ, per-channel, reduce_range (shipped)": dict(quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True),
    "QDQ, per-channel, full range": dict(quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=False),
    "QDQ, per-tensor, reduce_range": dict(quant_format=QuantFormat.QDQ, per_channel=False, reduce_range=True),
    "QOperator, per-channel, reduce_range": dict(quant_format=QuantFormat.QOperator, per_channel=True, reduce_range=True),
}


def main() -> None:
    cfg = Config.load("configs/pipnet_mbv2_68_roll_lowres.toml")
    sources = load_sources(cfg.data, cfg.train.seed)
    calibration = evenly([s for src in sources for s in src.train], 120)
    check = [s for src in sources for s in src.val]
    source = shipped_model(prefer_int8=False)
    model = OnnxLandmarkModel(source)
    print(f"float: NME {100 * evaluate(model, check).summary()['nme']:.2f}%, {milliseconds_per_face(model):.2f} ms")
    with tempfile.TemporaryDirectory() as work:
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        for name, options in VARIANTS.items():
            out = Path(work) / "q.onnx"
            reader = CropReader(calibration, model.input_name, model.info.crop_scale, model.info.input_size)
            quantize_static(str(prepared), str(out), reader, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax, **options)
            import onnx

            proto = onnx.load(str(out))  # the metadata the runtime needs, from the float model
            proto.metadata_props.extend(onnx.load(str(source)).metadata_props)
            onnx.save(proto, str(out))
            quantized = OnnxLandmarkModel(out)
            print(f"{name}: NME {100 * evaluate(quantized, check).summary()['nme']:.2f}%, "
                  f"{milliseconds_per_face(quantized):.2f} ms, {out.stat().st_size / 2**20:.1f} MB")


if __name__ == "__main__":
    main()

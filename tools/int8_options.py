"""Which ONNX Runtime quantization options matter on this CPU: accuracy on the validation faces of
the shipped model's config and milliseconds per face (batch 1, 2 threads) for each variant.

    .venv/bin/python tools/int8_options.py   # run with nothing else on the CPU: it times models
"""

import tempfile
from pathlib import Path

from onnxruntime.quantization import CalibrationMethod, QuantFormat

from pipnet_core.evaluation.evaluate import evaluate
from pipnet_core.io.resources import shipped_model
from pipnet_core.model.onnx import OnnxLandmarkModel
from pipnet_core.training.config import Config
from pipnet_core.training.quantize import calibration_crops, evenly, milliseconds_per_face, write_int8
from pipnet_core.training.sources import is_negative, load_sources

VARIANTS = {
    "QDQ, per-channel, reduce_range, percentile (shipped)": {},
    "QDQ, per-channel, reduce_range, min-max (before 1.2.1)": dict(calibrate_method=CalibrationMethod.MinMax),
    "QDQ, per-channel, full range": dict(reduce_range=False),
    "QDQ, per-tensor, reduce_range": dict(per_channel=False),
    "QOperator, per-channel, reduce_range": dict(quant_format=QuantFormat.QOperator),
}


def main() -> None:
    # The shipped model's config; faces as `pipnet quantize` takes them (calibration: training faces;
    # check: upright validation faces).
    cfg = Config.load("experiments/turned-heads/pipnet_mbv2_68_upright.toml")
    sources = load_sources(cfg.data, cfg.train.seed)
    calibration_faces = evenly([s for src in sources for s in src.train if not is_negative(s)], 120)
    check = [s for src in sources if not src.turned for s in src.val]
    model = OnnxLandmarkModel(shipped_model(prefer_int8=False))
    calibration = calibration_crops(calibration_faces, model.info.crop_scale, model.info.input_size)
    print(f"float: NME {100 * evaluate(model, check).summary()['nme']:.2f}%, {milliseconds_per_face(model):.2f} ms")
    with tempfile.TemporaryDirectory() as work:
        for name, options in VARIANTS.items():
            out = Path(work) / "q.onnx"
            write_int8(model, out, calibration, **options)
            quantized = OnnxLandmarkModel(out)
            print(
                f"{name}: NME {100 * evaluate(quantized, check).summary()['nme']:.2f}%, "
                f"{milliseconds_per_face(quantized):.2f} ms, {out.stat().st_size / 2**20:.1f} MB"
            )


if __name__ == "__main__":
    main()

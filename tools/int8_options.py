"""Which ONNX Runtime quantization options matter on this CPU: accuracy on the upright validation
faces of the shipped model's config (and on a test folder, with --data) and milliseconds per face
(batch 1, 2 threads) for each variant.

    .venv/bin/python tools/int8_options.py [--data ../shared/data/ytf68/test]   # nothing else on the CPU: it times models
"""

import argparse
import tempfile
from contextlib import closing
from pathlib import Path

from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

from pipnet_core.evaluation.evaluate import evaluate
from pipnet_core.io.labels import read_labeled
from pipnet_core.io.resources import shipped_model
from pipnet_core.model.onnx import OnnxLandmarkModel
from pipnet_core.training.config import Config
from pipnet_core.training.quantize import calibration_crops, evenly, milliseconds_per_face, write_int8
from pipnet_core.training.sources import is_negative, load_sources

VARIANTS = {
    "QDQ, per-channel, reduce_range, percentile (shipped)": {},
    "QDQ, per-channel, reduce_range, min-max (before 1.2.1)": dict(calibrate_method=CalibrationMethod.MinMax),
    "QDQ, per-channel, reduce_range, entropy": dict(calibrate_method=CalibrationMethod.Entropy),
    "QDQ, per-channel, full 8-bit range, min-max": dict(reduce_range=False, calibrate_method=CalibrationMethod.MinMax),
    "QDQ, per-channel, reduce_range, the five heads in float": dict(
        nodes_to_exclude=[f"/heads.{i}/Conv" for i in range(5)]
    ),
    "QDQ, per-channel, uint8 weights": dict(weight_type=QuantType.QUInt8),
    "QDQ, per-channel, full range": dict(reduce_range=False),
    "QDQ, per-tensor, reduce_range": dict(per_channel=False),
    "QOperator, per-channel, reduce_range": dict(quant_format=QuantFormat.QOperator),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="a labelled test folder scored too, e.g. ../shared/data/ytf68/test")
    args = parser.parse_args()
    # The shipped model's config; faces as `pipnet quantize` takes them (calibration: training faces;
    # check: upright validation faces).
    cfg = Config.load("experiments/turned-heads/pipnet_mbv2_68_upright.toml")
    sources = load_sources(cfg.data, cfg.train.seed)
    calibration_faces = evenly([s for src in sources for s in src.train if not is_negative(s)], 120)
    sets = {"validation": [s for src in sources if not src.turned for s in src.val]}
    if args.data:
        sets[Path(args.data).name] = read_labeled(args.data)

    def scores(model) -> str:
        return ", ".join(
            f"{name} NME {100 * evaluate(model, faces).summary()['nme']:.2f}%" for name, faces in sets.items()
        )

    with closing(OnnxLandmarkModel(shipped_model(prefer_int8=False))) as model:
        calibration = calibration_crops(calibration_faces, model.info.crop_scale, model.info.input_size)
        print(f"float: {scores(model)}, {milliseconds_per_face(model):.2f} ms")
        with tempfile.TemporaryDirectory() as work:
            for name, options in VARIANTS.items():
                out = Path(work) / "q.onnx"
                write_int8(model, out, calibration, **options)
                with closing(OnnxLandmarkModel(out)) as quantized:
                    print(
                        f"{name}: {scores(quantized)}, {milliseconds_per_face(quantized):.2f} ms, "
                        f"{out.stat().st_size / 2**20:.1f} MiB"
                    )


if __name__ == "__main__":
    main()

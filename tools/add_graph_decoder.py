"""Give model files exported before the decode moved into the graph their in-graph decode
(training/graph_decode.py), in place, then check parity with codec.decode and time both paths.

    .venv/bin/python tools/add_graph_decoder.py models/pipnet_mbv2_68.onnx models/pipnet_mbv2_68_int8.onnx

Such files keep working without it (the runtime decodes their maps with numpy); this only makes
them faster. Run the timing with nothing else on the CPU.
"""
import sys
import time
from pathlib import Path

import numpy as np
import onnx

from pipnet_core.crop import to_network_input
from pipnet_core.onnx_runner import OnnxLandmarkModel
from pipnet_core.training.export import PARITY_TOLERANCE, verification_crops
from pipnet_core.training.graph_decode import append_decoder


def main(paths: list[str]) -> None:
    for path in map(Path, paths):
        proto = onnx.load(str(path))
        append_decoder(proto, OnnxLandmarkModel(path).info.codec)
        onnx.save(proto, str(path))
        model = OnnxLandmarkModel(path)
        batch = to_network_input(verification_crops(model.info.input_size))
        points, confidence = model.network_outputs(batch)
        reference, reference_confidence = model.info.codec.decode(model.grid_outputs(batch))
        difference = float(np.abs(points - reference).max()) / model.info.input_size
        print(f"{path}: decoded in the graph; parity with codec.decode {difference:.1e} of the crop side "
              f"(tolerance {PARITY_TOLERANCE:.0e}), confidence {np.abs(confidence - reference_confidence).max():.1e}")
        for size in (1, 3):
            x = batch[:size]
            ways = {"maps + numpy decode": lambda: model.info.codec.decode(model.grid_outputs(x)),
                    "decoded in the graph": lambda: model.network_outputs(x)}
            spent = dict.fromkeys(ways, 0.0)
            for _ in range(5):  # alternating rounds: this machine's speed drifts
                for label, run in ways.items():
                    run()
                    started = time.perf_counter()
                    for _ in range(40):
                        run()
                    spent[label] += (time.perf_counter() - started) / 200
            print(f"  batch {size}: " + ", ".join(f"{label} {1000 * ms:.3f} ms" for label, ms in spent.items()))


if __name__ == "__main__":
    main(sys.argv[1:])

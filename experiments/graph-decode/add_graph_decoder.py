"""Give model files exported before the decode moved into the graph their in-graph decode
(training/graph_decode.py), and time the network call with and without it.

    .venv/bin/python experiments/graph-decode/add_graph_decoder.py models/pipnet_mbv2_68.onnx models/pipnet_mbv2_68_int8.onnx

Each file is replaced only once its decode agrees with codec.decode within the export's parity
tolerance. Such files keep working without it (the runtime decodes their maps with numpy). The
timing sets a copy holding the maps alone (numpy decodes) against the file with the decode (ONNX
Runtime runs every node of a graph, asked-for outputs or not, so the same file cannot serve for
both). End to end, tools/compare_models.py. Run the timing with nothing else on the CPU.
"""

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from pipnet_core.base.crop import to_network_input
from pipnet_core.model.onnx import OnnxLandmarkModel
from pipnet_core.training.export import PARITY_TOLERANCE, verification_crops
from pipnet_core.training.graph_decode import append_decoder, without_decoder


def with_decoder(path: Path, work: Path) -> tuple[Path, Path]:
    """The file with the decode and a copy with the maps alone, both in ``work``."""
    proto = onnx.load(str(path))
    without_decoder(proto)
    maps_only = work / f"maps_{path.name}"
    onnx.save(proto, str(maps_only))
    append_decoder(proto, OnnxLandmarkModel(maps_only).info.codec)
    decoded = work / path.name
    onnx.save(proto, str(decoded))
    return decoded, maps_only


def milliseconds(ways: dict, rounds: int = 5, runs: int = 40) -> dict[str, float]:
    """Each way's milliseconds per call, in alternating rounds: this machine's speed drifts."""
    spent = dict.fromkeys(ways, 0.0)
    for _ in range(rounds):
        for label, run in ways.items():
            run()
            started = time.perf_counter()
            for _ in range(runs):
                run()
            spent[label] += 1000 * (time.perf_counter() - started) / (rounds * runs)
    return spent


def main(paths: list[str]) -> None:
    for path in map(Path, paths):
        with tempfile.TemporaryDirectory(dir=path.parent) as work:  # beside it: os.replace stays on one filesystem
            decoded, maps_only = with_decoder(path, Path(work))
            model, older = OnnxLandmarkModel(decoded), OnnxLandmarkModel(maps_only)
            batch = to_network_input(verification_crops(model.info.input_size))
            points, confidence = model.network_outputs(batch)
            reference, reference_confidence = older.info.codec.decode(older.network_outputs(batch))
            difference = float(np.abs(points - reference).max()) / model.info.input_size
            print(
                f"{path}: parity with codec.decode {difference:.1e} of the crop side (tolerance {PARITY_TOLERANCE:.0e}), "
                f"confidence {np.abs(confidence - reference_confidence).max():.1e}"
            )
            if difference >= PARITY_TOLERANCE:
                raise SystemExit(f"{path}: the graph's decode disagrees with codec.decode; the file is left as it was")
            for size in (1, 3):
                x = batch[:size]
                spent = milliseconds(
                    {
                        "maps + numpy decode": lambda older=older, x=x: older.info.codec.decode(
                            older.network_outputs(x)
                        ),
                        "decoded in the graph": lambda model=model, x=x: model.network_outputs(x),
                    }
                )
                print(f"  batch {size}: " + ", ".join(f"{label} {ms:.3f} ms" for label, ms in spent.items()))
            model.close()
            os.replace(decoded, path)


if __name__ == "__main__":
    main(sys.argv[1:])

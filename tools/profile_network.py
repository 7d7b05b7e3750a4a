"""Where a landmark model's time goes inside ONNX Runtime: the share of each operator type and the
slowest nodes, from ONNX Runtime's own profiler, on one real face crop (batch 1, as the runtime
calls it for a tracked face); and the convolutions' multiply-adds, backbone against heads, which is
what a lighter network would have to cut.

    .venv/bin/python tools/profile_network.py [MODEL.onnx ...]   # default: the shipped INT8 and float

Run it with nothing else on the CPU. The split between operators is steadier than the total on a
shared machine, so it is what this prints first.
"""
import argparse
import collections
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from pipnet_core import Landmarker
from pipnet_core.crop import CropBox, crop_matrix, to_network_input, warp
from pipnet_core.data import load_image
from pipnet_core.resources import asset, shipped_model


def face_crop(path: Path) -> np.ndarray:
    """The sample photo's face as the model's input, cropped as the runtime crops a tracked face."""
    image = load_image(asset("face_photo.png"))
    with Landmarker(str(path)) as landmarker:
        points = landmarker.process_image(image)[0].points
        info = landmarker.model.info
    box = CropBox.around_points(points, info.crop_scale)
    return to_network_input(warp(image, crop_matrix(box, info.input_size), info.input_size)[None])


def multiply_adds(path: Path) -> collections.Counter:
    """Millions of multiply-adds per face in the convolutions, by part of the network (float or INT8 file)."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    shapes = {value.name: [dim.dim_value for dim in value.type.tensor_type.shape.dim]
              for value in [*model.graph.value_info, *model.graph.output]}
    weights = {tensor.name: tuple(tensor.dims) for tensor in model.graph.initializer}
    for node in model.graph.node:  # the INT8 file holds its weights quantized, each behind a DequantizeLinear
        if node.op_type == "DequantizeLinear" and node.input[0] in weights:
            weights[node.output[0]] = weights[node.input[0]]
    parts = collections.Counter()
    for node in model.graph.node:
        if node.op_type == "Conv":
            kernel = weights[node.input[1]]
            part = "heads" if node.name.startswith("/heads") else "backbone"
            parts[part] += np.prod(shapes[node.output[0]][1:]) * np.prod(kernel[1:]) / 1e6
    return parts


def profile(path: Path, runs: int, threads: int) -> None:
    crops = face_crop(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as work:
        options.profile_file_prefix = os.path.join(work, "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: crops}
        for _ in range(runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    by_node, by_operator = collections.Counter(), collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_node[event["name"].removesuffix("_kernel_time")] += event["dur"]
            by_operator[event["args"]["op_name"]] += event["dur"]
    total = sum(by_node.values())
    print(f"{path.name}: {total / runs / 1000:.2f} ms per call in kernels ({runs} calls, {threads} threads)")
    macs = multiply_adds(path)
    print(f"  {sum(macs.values()):.0f} M multiply-adds per face: "
          + ", ".join(f"{part} {value:.0f} M" for part, value in macs.most_common()))
    for name, microseconds in by_operator.most_common(8):
        print(f"  {name:24s} {100 * microseconds / total:5.1f}%")
    print("  slowest nodes:")
    for name, microseconds in by_node.most_common(6):
        print(f"  {100 * microseconds / total:5.1f}%  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    for path in args.models or [shipped_model(prefer_int8=True), shipped_model(prefer_int8=False)]:
        profile(path, args.runs, args.threads)


if __name__ == "__main__":
    main()

"""Where a landmark model's time goes inside ONNX Runtime: the convolutions' share, the share of
each operator type and the slowest nodes, from ONNX Runtime's own profiler, on the sample photo's
face cropped from its landmarks (batch 1, as the runtime calls it for a tracked face, the first,
cold call left out); and the convolutions' multiply-adds by part of the network, which is what a
lighter network would have to cut.

    .venv/bin/python tools/profile_network.py [MODEL.onnx ...]   # default: the shipped INT8 and float

Run it with nothing else on the CPU. On a shared machine the shares are steadier than the total.
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
from pipnet_core.base.crop import landmark_crop, to_network_input
from pipnet_core.io.images import load_image
from pipnet_core.io.resources import asset, shipped_model


def face_crop(path: Path) -> np.ndarray:
    """The sample photo's face as the model's input, cropped around the landmarks the model finds."""
    image = load_image(asset("face_photo.png"))
    with Landmarker(str(path)) as landmarker:
        points = landmarker.process_image(image)[0].points
        info = landmarker.model.info
    return to_network_input(landmark_crop(image, points, info.crop_scale, info.input_size)[0][None])


def multiply_adds(path: Path) -> collections.Counter:
    """Millions of multiply-adds per face in the convolutions, by part of the network (float or INT8
    file): the backbone and each head (heads.0 scores, .1-.2 offsets, .3-.4 neighbour offsets)."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    shapes = {
        value.name: [dim.dim_value for dim in value.type.tensor_type.shape.dim]
        for value in [*model.graph.value_info, *model.graph.output]
    }
    weights = {tensor.name: tuple(tensor.dims) for tensor in model.graph.initializer}
    for node in model.graph.node:  # the INT8 file holds its weights quantized, each behind a DequantizeLinear
        if node.op_type == "DequantizeLinear" and node.input[0] in weights:
            weights[node.output[0]] = weights[node.input[0]]
    parts = collections.Counter()
    for node in model.graph.node:
        if node.op_type == "Conv":
            kernel = weights[node.input[1]]
            part = node.name.split("/")[1] if node.name.startswith("/heads") else "backbone"
            parts[part] += np.prod(shapes[node.output[0]][1:]) * np.prod(kernel[1:]) / 1e6
    if len(parts) < 2:
        raise SystemExit(f"{path}: no /heads.N convolutions: not laid out as pipnet_core's PIPNet export")
    return parts


def profile(path: Path, runs: int, threads: int) -> None:
    crops = face_crop(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1  # as the runtime's session
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as work:
        options.profile_file_prefix = os.path.join(work, "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: crops}
        for _ in range(runs + 1):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    first_run = min((event for event in events if event["name"] == "model_run"), key=lambda event: event["ts"])
    warm = first_run["ts"] + first_run["dur"]
    by_node, by_operator = collections.Counter(), collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] >= warm:
            by_node[event["name"].removesuffix("_kernel_time")] += event["dur"]
            by_operator[event["args"]["op_name"]] += event["dur"]
    total = sum(by_node.values())
    convolutions = sum(time for name, time in by_operator.items() if name.endswith("Conv"))
    print(
        f"{path.name}: {total / runs / 1000:.2f} ms per call in kernels ({runs} calls, {threads} threads), "
        f"convolutions {100 * convolutions / total:.1f}%"
    )
    macs = multiply_adds(path)
    print(
        f"  {sum(macs.values()):.0f} M multiply-adds per face: "
        + ", ".join(f"{part} {value:.1f} M" for part, value in macs.most_common())
    )
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
    for path in args.models or dict.fromkeys([shipped_model(prefer_int8=True), shipped_model(prefer_int8=False)]):
        profile(path, args.runs, args.threads)


if __name__ == "__main__":
    main()

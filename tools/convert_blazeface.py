"""Convert MediaPipe's BlazeFace face detectors (TFLite, Apache-2.0) to ONNX for ONNX Runtime.

    python -m venv /tmp/convert && /tmp/convert/bin/pip install mediapipe==0.10.21 ai-edge-litert tflite onnx onnxruntime
    /tmp/convert/bin/python tools/convert_blazeface.py            # writes models/blazeface_*.onnx

The source is the .tflite file inside the mediapipe 0.10.21 wheel (the last release that ships
them beside ``mp.solutions``); another copy can be named with --short / --full. The graph is
rebuilt op by op in NCHW (the TFLite graph is NHWC): convolutions, depthwise convolutions, adds,
pads (spatial and channel), max pools, bilinear resizes, depth-to-space, reshapes and
concatenations. Weights stored as float16 (DEQUANTIZE) or sparse (DENSIFY) are read back dense
from LiteRT's own interpreter. The ONNX model keeps the TFLite interface: one NHWC float input in
[-1, 1], outputs ``regressors`` (1, anchors, 16) and ``classificators`` (1, anchors, 1). Each
converted model is checked against LiteRT on random and real inputs before it is written, and
its provenance (package, version, file, sha256 of source and output) goes into the ONNX metadata
and models/blazeface_provenance.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from importlib import metadata
from pathlib import Path

import numpy as np
import onnx
import tflite
from onnx import TensorProto, helper, numpy_helper

MODELS = {
    "short": ("face_detection_short_range.tflite", "blazeface_short_range.onnx"),
    "full": ("face_detection_full_range_sparse.tflite", "blazeface_full_range.onnx"),
}
CONSTANT_PRODUCERS = {"DEQUANTIZE", "DENSIFY"}
OPSET = 17


def op_name(model, op) -> str:
    code = model.OperatorCodes(op.OpcodeIndex())
    return tflite.opcode2name(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))


def options(op, kind):
    table = op.BuiltinOptions()
    parsed = kind()
    parsed.Init(table.Bytes, table.Pos)
    return parsed


class Converter:
    """Walks the TFLite graph in order and emits ONNX nodes; 4-D activations are kept NCHW."""

    def __init__(self, model_path: Path):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.model = tflite.Model.GetRootAsModel(model_path.read_bytes(), 0)
        self.graph = self.model.Subgraphs(0)
        # Without delegates and with every tensor kept, LiteRT hands back the dense float32
        # weights that DEQUANTIZE and DENSIFY produce.
        self.interpreter = Interpreter(
            model_path=str(model_path),
            experimental_preserve_all_tensors=True,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        self.interpreter.allocate_tensors()
        detail = self.interpreter.get_input_details()[0]
        self.interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], np.float32))
        self.interpreter.invoke()
        self.nodes, self.initializers, self.names = [], [], {}

    def tensor(self, index: int):
        return self.graph.Tensors(index)

    def value(self, index: int) -> np.ndarray:
        return self.interpreter.get_tensor(index)

    def name(self, index: int) -> str:
        return self.names.setdefault(index, f"t{index}")

    def constant(self, array: np.ndarray, label: str) -> str:
        name = f"c{len(self.initializers)}_{label}"
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, kind: str, inputs: list[str], output: str, **attrs) -> str:
        self.nodes.append(helper.make_node(kind, inputs, [output], name=f"n{len(self.nodes)}_{kind}", **attrs))
        return output

    def activation(self, value: str, fused: int, output: str) -> str:
        if fused == tflite.ActivationFunctionType.NONE:
            return self.node("Identity", [value], output)
        if fused == tflite.ActivationFunctionType.RELU:
            return self.node("Relu", [value], output)
        if fused == tflite.ActivationFunctionType.RELU6:
            return self.node(
                "Clip", [value, self.constant(np.float32(0), "lo"), self.constant(np.float32(6), "hi")], output
            )
        raise NotImplementedError(f"fused activation {fused}")

    def same_pads(self, size: int, kernel: int, stride: int) -> tuple[int, int]:
        total = max((int(np.ceil(size / stride)) - 1) * stride + kernel - size, 0)
        return total // 2, total - total // 2  # TensorFlow's SAME: the odd pixel at the end

    def pads(self, op, kernel_hw, stride_hw, padding) -> list[int]:
        if padding == tflite.Padding.VALID:
            return [0, 0, 0, 0]
        _, height, width, _ = self.tensor(op.Inputs(0)).ShapeAsNumpy()
        top, bottom = self.same_pads(height, kernel_hw[0], stride_hw[0])
        left, right = self.same_pads(width, kernel_hw[1], stride_hw[1])
        return [top, left, bottom, right]

    def convert_op(self, op) -> None:
        kind = op_name(self.model, op)
        inputs = [op.Inputs(i) for i in range(op.InputsLength())]
        output = op.Outputs(0)
        out = self.name(output)
        if kind in CONSTANT_PRODUCERS:
            return  # their outputs are read back dense from LiteRT where an op uses them
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            self.convolution(op, kind, inputs, out)
        elif kind == "ADD":
            o = options(op, tflite.AddOptions)
            added = self.node("Add", [self.name(i) for i in inputs], out + "_add")
            self.activation(added, o.FusedActivationFunction(), out)
        elif kind == "RELU":
            self.node("Relu", [self.name(inputs[0])], out)
        elif kind == "PAD":
            (n0, n1), (h0, h1), (w0, w1), (c0, c1) = self.value(inputs[1]).tolist()
            pads = np.array([n0, c0, h0, w0, n1, c1, h1, w1], np.int64)
            self.node("Pad", [self.name(inputs[0]), self.constant(pads, "pads")], out, mode="constant")
        elif kind == "MAX_POOL_2D":
            o = options(op, tflite.Pool2DOptions)
            kernel, stride = (o.FilterHeight(), o.FilterWidth()), (o.StrideH(), o.StrideW())
            pooled = self.node(
                "MaxPool",
                [self.name(inputs[0])],
                out + "_pool",
                kernel_shape=list(kernel),
                strides=list(stride),
                pads=self.pads(op, kernel, stride, o.Padding()),
            )
            self.activation(pooled, o.FusedActivationFunction(), out)
        elif kind == "RESIZE_BILINEAR":
            o = options(op, tflite.ResizeBilinearOptions)
            height, width = self.value(inputs[1]).tolist()
            channels = int(self.tensor(inputs[0]).ShapeAsNumpy()[3])
            mode = "align_corners" if o.AlignCorners() else "half_pixel" if o.HalfPixelCenters() else "asymmetric"
            sizes = self.constant(np.array([1, channels, height, width], np.int64), "sizes")
            self.node(
                "Resize", [self.name(inputs[0]), "", "", sizes], out, mode="linear", coordinate_transformation_mode=mode
            )
        elif kind == "DEPTH_TO_SPACE":
            o = options(op, tflite.DepthToSpaceOptions)
            self.node("DepthToSpace", [self.name(inputs[0])], out, blocksize=o.BlockSize(), mode="DCR")
        elif kind == "RESHAPE":
            # The reshape reads NHWC order: transpose back from this graph's NCHW first.
            nhwc = self.node("Transpose", [self.name(inputs[0])], out + "_nhwc", perm=[0, 2, 3, 1])
            shape = self.constant(np.array(self.tensor(output).ShapeAsNumpy(), np.int64), "shape")
            self.node("Reshape", [nhwc, shape], out)
        elif kind == "CONCATENATION":
            o = options(op, tflite.ConcatenationOptions)
            if len(self.tensor(output).ShapeAsNumpy()) == 4:
                raise NotImplementedError("4-D concatenation")
            self.node("Concat", [self.name(i) for i in inputs], out, axis=o.Axis())
        else:
            raise NotImplementedError(f"TFLite op {kind}")

    def convolution(self, op, kind: str, inputs: list, out: str) -> None:
        """CONV_2D (OHWI weights) and DEPTHWISE_CONV_2D (1HWO) as an ONNX Conv, then its fused activation."""
        depthwise = kind == "DEPTHWISE_CONV_2D"
        o = options(op, tflite.DepthwiseConv2DOptions if depthwise else tflite.Conv2DOptions)
        # OHWI -> OIHW; 1HWO -> O1HW
        weights = self.value(inputs[1]).transpose((3, 0, 1, 2) if depthwise else (0, 3, 1, 2))
        args = [self.name(inputs[0]), self.constant(weights, "w"), self.constant(self.value(inputs[2]), "b")]
        conv = self.node(
            "Conv",
            args,
            out + "_conv",
            **({"group": weights.shape[0]} if depthwise else {}),
            strides=[o.StrideH(), o.StrideW()],
            dilations=[o.DilationHFactor(), o.DilationWFactor()],
            pads=self.pads(op, weights.shape[2:], (o.StrideH(), o.StrideW()), o.Padding()),
        )
        self.activation(conv, o.FusedActivationFunction(), out)

    def convert(self, output_names: tuple[str, str]) -> onnx.ModelProto:
        graph_input = self.graph.Inputs(0)
        shape = [int(v) for v in self.tensor(graph_input).ShapeAsNumpy()]
        self.node("Transpose", ["input"], self.name(graph_input), perm=[0, 3, 1, 2])
        for i in range(self.graph.OperatorsLength()):
            self.convert_op(self.graph.Operators(i))
        outputs = []
        for name, index in zip(output_names, (self.graph.Outputs(i) for i in range(2))):
            self.node("Identity", [self.name(index)], name)
            outputs.append(
                helper.make_tensor_value_info(
                    name, TensorProto.FLOAT, [int(v) for v in self.tensor(index).ShapeAsNumpy()]
                )
            )
        graph = helper.make_graph(
            self.nodes,
            "blazeface",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
            outputs,
            self.initializers,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pipnet-live")
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model

    def reference(self, batch: np.ndarray) -> list[np.ndarray]:
        detail = self.interpreter.get_input_details()[0]
        self.interpreter.set_tensor(detail["index"], batch)
        self.interpreter.invoke()
        order = [self.graph.Outputs(i) for i in range(2)]
        return [self.interpreter.get_tensor(index) for index in order]


def check(model: onnx.ModelProto, converter: Converter, size: int) -> float:
    """Largest difference from LiteRT over random inputs and the astronaut photo."""
    import cv2
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    photo = cv2.imread(str(Path(__file__).resolve().parent.parent / "assets" / "face_photo.png"))
    photo = cv2.resize(cv2.cvtColor(photo, cv2.COLOR_BGR2RGB), (size, size)).astype(np.float32) / 127.5 - 1
    batches = [rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32) for _ in range(3)] + [photo[None]]
    worst = 0.0
    for batch in batches:
        ours = session.run(["regressors", "classificators"], {"input": batch})
        theirs = converter.reference(batch)
        worst = max(worst, *(float(np.abs(a - b).max()) for a, b in zip(ours, theirs)))
    return worst


def sha256(path_or_bytes) -> str:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    return hashlib.sha256(data).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=Path, help="face_detection_short_range.tflite (default: from mediapipe)")
    parser.add_argument("--full", type=Path, help="face_detection_full_range_sparse.tflite (default: from mediapipe)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "models")
    args = parser.parse_args()
    provenance = {}
    for key, (source_name, out_name) in MODELS.items():
        source = getattr(args, key)
        package = f"file {source}"
        if source is None:
            import mediapipe

            source = Path(mediapipe.__file__).parent / "modules" / "face_detection" / source_name
            package = f"mediapipe {metadata.version('mediapipe')}"
        converter = Converter(source)
        model = converter.convert(("regressors", "classificators"))
        size = model.graph.input[0].type.tensor_type.shape.dim[1].dim_value
        difference = check(model, converter, size)
        if difference > 1e-3:  # of raw box offsets in input pixels (up to ~100): rounding, not a wrong op
            raise SystemExit(f"{source}: ONNX Runtime differs from LiteRT by {difference:.2e}")
        record = {
            "source_package": package,
            "source_file": Path(source).name,
            "source_sha256": sha256(source),
            "licence": "Apache-2.0 (MediaPipe)",
            "largest_difference_from_litert": float(f"{difference:.3g}"),
        }
        for field, value in record.items():
            model.metadata_props.append(onnx.StringStringEntryProto(key=field, value=str(value)))
        data = model.SerializeToString()
        (args.out / out_name).write_bytes(data)
        provenance[out_name] = {**record, "sha256": sha256(data)}
        print(
            f"{out_name}: {len(data) / 1e6:.2f} MB from {package} {source_name}; largest difference from LiteRT "
            f"{difference:.2e}"
        )
    (args.out / "blazeface_provenance.json").write_text(json.dumps(provenance, indent=1) + "\n")


if __name__ == "__main__":
    main()

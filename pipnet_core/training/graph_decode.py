"""PIPNet's decode as ONNX graph ops, appended to an exported model (`pipnet export`, `pipnet
quantize`, experiments/graph-decode/add_graph_decoder.py for older files).

The graph then also outputs ``points`` (B, N, 2, crop pixels) and ``confidence`` (B, N), the same
as ``codec.PIPCodec.decode`` of its five maps: argmax cell, the offsets gathered there, and the
neighbour vote as one MatMul with a 0/1 table. ``codec.py`` stays the reference (and the training
path); the five maps stay outputs too, so parity can always be checked. The runtime asks for the
two decoded outputs alone, which saves copying the maps out and some fifteen numpy calls per
batch (experiments/graph-decode/add_graph_decoder.py measures it). The input stays float32 NCHW: a uint8 NHWC input
with the cast and transpose inside the graph measured slower through ONNX Runtime here.
"""

from __future__ import annotations

import numpy as np

from pipnet_core.base.errors import PipnetError
from pipnet_core.model.codec import PIPCodec

PREFIX = "decode/"  # every node and initializer this module adds
OUTPUTS = ("points", "confidence")


def append_decoder(proto, codec: PIPCodec) -> None:
    """Add the decode to ``proto`` (an onnx.ModelProto whose first five outputs are the maps in
    ``GridOutputs`` order), in place; a model that already has it is left as it is."""
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    if any(output.name in OUTPUTS for output in graph.output):
        return
    opset = max((entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")), default=0)
    if opset < 13:  # Squeeze and Unsqueeze take their axes as an input from opset 13 on
        raise PipnetError(f"the decode needs ONNX opset 13 or later; this model has {opset}")
    n, c, g = codec.num_points, codec.num_neighbours, codec.grid
    maps = [output.name for output in graph.output[:5]]  # score, offset_x, offset_y, neighbour_x, neighbour_y
    vote = np.zeros((n * c, n), np.float32)  # row i*c+k: landmark i's vote for its k-th neighbour
    vote[np.arange(n * c), codec.neighbours.reshape(-1)] = 1.0
    constants = {
        "flat": np.array([0, n, g * g], np.int64),
        "neighbour_flat": np.array([0, n, c, g * g], np.int64),
        "grid": np.array(g, np.int64),
        "zero": np.array(0.0, np.float32),
        "one": np.array(1.0, np.float32),
        "axis2": np.array([2], np.int64),
        "axis3": np.array([3], np.int64),
        "per_neighbour": np.array([1, 1, c, 1], np.int64),
        "votes_shape": np.array([0, n * c], np.int64),
        "vote": vote,
        "inverse_votes": (1.0 / codec.votes_per_point).astype(np.float32),
        "stride": np.array(codec.stride, np.float32),
        "half": np.array(0.5, np.float32),
    }
    graph.initializer.extend(numpy_helper.from_array(value, PREFIX + key) for key, value in constants.items())

    def node(op: str, inputs: list[str], output: str, **attributes):
        # The maps by their own names; everything else is this module's, under PREFIX.
        names = [name if name in maps else PREFIX + name for name in inputs]
        out = output if output in OUTPUTS else PREFIX + output
        return helper.make_node(op, names, [out], name=PREFIX + output, **attributes)

    nodes = [
        node("Reshape", [maps[0], "flat"], "score_flat"),
        node("ArgMax", ["score_flat"], "best", axis=2, keepdims=1),
        node("GatherElements", ["score_flat", "best"], "peak", axis=2),
        node("Clip", ["peak", "zero", "one"], "peak01"),
        node("Squeeze", ["peak01", "axis2"], "confidence"),
        node("Mod", ["best", "grid"], "cell_x_int"),
        node("Div", ["best", "grid"], "cell_y_int"),
        node("Cast", ["cell_x_int"], "cell_x", to=TensorProto.FLOAT),
        node("Cast", ["cell_y_int"], "cell_y", to=TensorProto.FLOAT),
        node("Unsqueeze", ["best", "axis3"], "best4"),
        node("Expand", ["best4", "per_neighbour"], "best_neighbours"),
    ]
    for axis, own, neighbour in (("x", maps[1], maps[3]), ("y", maps[2], maps[4])):
        cell = f"cell_{axis}"
        nodes += [
            node("Reshape", [own, "flat"], f"{axis}/own_flat"),
            node("GatherElements", [f"{axis}/own_flat", "best"], f"{axis}/own_offset", axis=2),
            node("Add", [cell, f"{axis}/own_offset"], f"{axis}/own"),  # (B, N, 1)
            node("Reshape", [neighbour, "neighbour_flat"], f"{axis}/neighbour_flat"),
            node("GatherElements", [f"{axis}/neighbour_flat", "best_neighbours"], f"{axis}/neighbour_offset4", axis=3),
            node("Squeeze", [f"{axis}/neighbour_offset4", "axis3"], f"{axis}/neighbour_offset"),  # (B, N, C)
            node("Add", [f"{axis}/neighbour_offset", cell], f"{axis}/neighbour_cells"),
            node("Reshape", [f"{axis}/neighbour_cells", "votes_shape"], f"{axis}/votes"),
            node("MatMul", [f"{axis}/votes", "vote"], f"{axis}/vote_sums"),  # (B, N)
            node("Squeeze", [f"{axis}/own", "axis2"], f"{axis}/own_cells"),
            node("Add", [f"{axis}/own_cells", f"{axis}/vote_sums"], f"{axis}/total"),
            node("Mul", [f"{axis}/total", "inverse_votes"], f"{axis}/mean"),
            node("Unsqueeze", [f"{axis}/mean", "axis2"], f"{axis}/column"),
        ]
    nodes += [
        node("Concat", ["x/column", "y/column"], "cells", axis=2),
        node("Mul", ["cells", "stride"], "pixels"),
        node("Sub", ["pixels", "half"], "points"),
    ]
    graph.node.extend(nodes)
    graph.output.extend(
        [
            helper.make_tensor_value_info("points", TensorProto.FLOAT, ["batch", n, 2]),
            helper.make_tensor_value_info("confidence", TensorProto.FLOAT, ["batch", n]),
        ]
    )


def without_decoder(proto) -> None:
    """Remove what ``append_decoder`` added, in place (quantization calibrates the maps alone)."""
    graph = proto.graph
    kept_nodes = [n for n in graph.node if not n.name.startswith(PREFIX)]
    kept_inits = [i for i in graph.initializer if not i.name.startswith(PREFIX)]
    kept_outputs = [o for o in graph.output if o.name not in OUTPUTS]
    for field, kept in ((graph.node, kept_nodes), (graph.initializer, kept_inits), (graph.output, kept_outputs)):
        del field[:]
        field.extend(kept)

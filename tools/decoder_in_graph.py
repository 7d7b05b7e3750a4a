"""A probe for issue 23, part 1 (decoding inside the ONNX graph), not used by the runtime: appends
PIPNet's decode (argmax cell, gathered offsets, the neighbour vote as a MatMul) and a uint8 NHWC
input to the shipped float and INT8 models, writes them to /tmp/c22/, and measures their parity
with codec.decode and their speed against the numpy decode path.

    .venv/bin/python tools/decoder_in_graph.py
"""
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from pipnet_core.crop import to_network_input
from pipnet_core.onnx_runner import OnnxLandmarkModel
from pipnet_core.sample_clip import face_photo

MODELS = Path(__file__).resolve().parents[1] / "models"
OUT = Path("/tmp/c22")

def add_decoder(path, out):
    model = onnx.load(path)
    m = OnnxLandmarkModel(path)
    codec = m.info.codec
    n, c, g, s = codec.num_points, codec.num_neighbours, codec.grid, codec.stride
    graph = model.graph
    old_input = graph.input[0].name
    size = codec.input_size
    # uint8 NHWC input -> float NCHW, named as the old input
    new_in = helper.make_tensor_value_info("crops_uint8", TensorProto.UINT8, ["batch", size, size, 3])
    pre = [helper.make_node("Cast", ["crops_uint8"], ["decode/cast_in"], to=TensorProto.FLOAT, name="decode/cast_in"),
           helper.make_node("Transpose", ["decode/cast_in"], [old_input], perm=[0, 3, 1, 2], name="decode/transpose_in")]
    del graph.input[0]
    graph.input.insert(0, new_in)
    for node in reversed(pre):
        graph.node.insert(0, node)
    names = [o.name for o in graph.output]  # score, offset_x, offset_y, neighbour_x, neighbour_y
    consts = {
        "decode/flat": np.array([0, n, g * g], np.int64),
        "decode/nflat": np.array([0, n, c, g * g], np.int64),
        "decode/g": np.array(g, np.int64),
        "decode/zero": np.array(0.0, np.float32), "decode/one": np.array(1.0, np.float32),
        "decode/axes2": np.array([2], np.int64), "decode/axes3": np.array([3], np.int64),
        "decode/expand": np.array([1, 1, c, 1], np.int64),
        "decode/votes_shape": np.array([0, n * c], np.int64),
    }
    vote = np.zeros((n * c, n), np.float32)
    for i in range(n):
        for k in range(c):
            vote[i * c + k, codec.neighbours[i, k]] = 1.0
    consts["decode/vote"] = vote
    consts["decode/inv_votes"] = (1.0 / codec._votes_per_point).astype(np.float32)
    consts["decode/stride"] = np.array(s, np.float32)
    consts["decode/half"] = np.array(0.5, np.float32)
    for k, v in consts.items():
        graph.initializer.append(numpy_helper.from_array(v, k))
    N = lambda op, i, o, **kw: helper.make_node(op, i, o, name=o[0], **kw)
    nodes = [
        N("Reshape", [names[0], "decode/flat"], ["decode/score"]),
        N("ArgMax", ["decode/score"], ["decode/best"], axis=2, keepdims=1),
        N("GatherElements", ["decode/score", "decode/best"], ["decode/peak"], axis=2),
        N("Clip", ["decode/peak", "decode/zero", "decode/one"], ["decode/peak01"]),
        N("Squeeze", ["decode/peak01", "decode/axes2"], ["confidence"]),
        N("Mod", ["decode/best", "decode/g"], ["decode/cx_i"]),
        N("Div", ["decode/best", "decode/g"], ["decode/cy_i"]),
        N("Cast", ["decode/cx_i"], ["decode/cx"], to=TensorProto.FLOAT),
        N("Cast", ["decode/cy_i"], ["decode/cy"], to=TensorProto.FLOAT),
        N("Unsqueeze", ["decode/best", "decode/axes3"], ["decode/best4"]),
        N("Expand", ["decode/best4", "decode/expand"], ["decode/bestn"]),
    ]
    for axis, own, nb, cell in (("x", names[1], names[3], "decode/cx"), ("y", names[2], names[4], "decode/cy")):
        p = f"decode/{axis}"
        nodes += [
            N("Reshape", [own, "decode/flat"], [f"{p}/own_flat"]),
            N("GatherElements", [f"{p}/own_flat", "decode/best"], [f"{p}/own_off"], axis=2),
            N("Add", [cell, f"{p}/own_off"], [f"{p}/own"]),  # (B,N,1)
            N("Reshape", [nb, "decode/nflat"], [f"{p}/nb_flat"]),
            N("GatherElements", [f"{p}/nb_flat", "decode/bestn"], [f"{p}/nb_off4"], axis=3),
            N("Squeeze", [f"{p}/nb_off4", "decode/axes3"], [f"{p}/nb_off"]),  # (B,N,C)
            N("Add", [f"{p}/nb_off", cell], [f"{p}/nb_votes"]),
            N("Reshape", [f"{p}/nb_votes", "decode/votes_shape"], [f"{p}/votes"]),
            N("MatMul", [f"{p}/votes", "decode/vote"], [f"{p}/sums"]),  # (B,N)
            N("Squeeze", [f"{p}/own", "decode/axes2"], [f"{p}/own2"]),
            N("Add", [f"{p}/own2", f"{p}/sums"], [f"{p}/total"]),
            N("Mul", [f"{p}/total", "decode/inv_votes"], [f"{p}/mean"]),
            N("Unsqueeze", [f"{p}/mean", "decode/axes2"], [f"{p}/col"]),
        ]
    nodes += [N("Concat", ["decode/x/col", "decode/y/col"], ["decode/cells"], axis=2),
              N("Mul", ["decode/cells", "decode/stride"], ["decode/pixels"]),
              N("Sub", ["decode/pixels", "decode/half"], ["points"])]
    graph.node.extend(nodes)
    del graph.output[:]
    graph.output.extend([helper.make_tensor_value_info("points", TensorProto.FLOAT, ["batch", n, 2]),
                         helper.make_tensor_value_info("confidence", TensorProto.FLOAT, ["batch", n])])
    onnx.checker.check_model(model)
    onnx.save(model, out)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name in ("pipnet_mbv2_68.onnx", "pipnet_mbv2_68_int8.onnx"):
        src, dst = str(MODELS / name), str(OUT / f"decoded_{name}")
        add_decoder(src, dst)
        ref = OnnxLandmarkModel(src)
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(dst, so, providers=["CPUExecutionProvider"])
        photo = face_photo()
        crops = np.stack([cv2.resize(photo[60 + 5 * k:260 + 5 * k, 120:320], (192, 192)) for k in range(3)])
        p_ref, c_ref = ref.info.codec.decode(ref.grid_outputs(to_network_input(crops)))
        p_new, c_new = sess.run(["points", "confidence"], {"crops_uint8": crops})
        print(f"{name}: parity with codec.decode: points {np.abs(p_ref - p_new).max():.2e} px of a "
              f"{ref.info.input_size} px crop, confidence {np.abs(c_ref - c_new).max():.2e}")
        for batch in (1, 3):
            x = crops[:batch]
            paths = {"numpy decode": lambda: ref.info.codec.decode(ref.grid_outputs(to_network_input(x))),
                     "in the graph": lambda: sess.run(["points", "confidence"], {"crops_uint8": x})}
            spent = dict.fromkeys(paths, 0.0)
            for _ in range(5):  # alternating rounds: this machine's speed drifts
                for label, run in paths.items():
                    run()
                    started = time.perf_counter()
                    for _ in range(40):
                        run()
                    spent[label] += (time.perf_counter() - started) / 200
            print(f"  batch {batch}: " + ", ".join(f"{label} {1000 * ms:.3f} ms" for label, ms in spent.items()))

if __name__ == "__main__":
    main()

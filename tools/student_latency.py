"""Candidate student networks' speed before any training (issue 34): each candidate is built with
random weights (latency does not depend on them), exported and quantized to INT8 by the shipped
recipe, then timed in ONNX Runtime at batch 1 and 3 with 2 threads, in alternating rounds with a
network of today's shape, so that the machine's drift falls on all of them alike.

    .venv/bin/python tools/student_latency.py [--rounds 15] [--only NAME ...]

Run it with nothing else on the CPU. Prints a Markdown table: multiply-adds per face, grid,
milliseconds per call (median over rounds) and the speed-up over today's network in the same rounds.
"""

import argparse
import statistics
import tempfile
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter

import numpy as np
import torch
from profile_network import multiply_adds

from pipnet_core.io.resources import shipped_model
from pipnet_core.model.codec import PIPCodec
from pipnet_core.model.interface import ModelInfo
from pipnet_core.model.onnx import OnnxLandmarkModel
from pipnet_core.training.config import Config
from pipnet_core.training.export import export_onnx, verification_crops
from pipnet_core.training.quantize import write_int8
from pipnet_core.training.torch_runner import build_network, save_checkpoint


@dataclass(frozen=True)
class Candidate:
    name: str
    input_size: int
    width: float
    last_channels: int
    stride: int
    neighbours: int
    blocks: tuple[int, ...] = ()  # per stage; empty: MobileNetV2's 1, 2, 3, 4, 3, 3, 1


SHALLOW = (1, 1, 2, 2, 2, 2, 1)
SHALLOWEST = (1, 1, 1, 2, 1, 2, 1)
CANDIDATES = (
    Candidate("today", 192, 1.0, 1280, 32, 10),
    Candidate("w1.0-192-nolast", 192, 1.0, 0, 32, 10),
    Candidate("w0.75-192-nolast", 192, 0.75, 0, 32, 10),
    Candidate("w0.5-192-nolast", 192, 0.5, 0, 32, 10),
    Candidate("w1.0-160-nolast", 160, 1.0, 0, 32, 10),
    Candidate("w0.75-160-nolast", 160, 0.75, 0, 32, 10),
    Candidate("w0.75-160-last320", 160, 0.75, 320, 32, 10),
    Candidate("w0.75-160-nolast-n5", 160, 0.75, 0, 32, 5),
    Candidate("w0.5-160-nolast", 160, 0.5, 0, 32, 10),
    Candidate("w0.75-128-s16-nolast", 128, 0.75, 0, 16, 10),
    Candidate("w0.5-128-s16-nolast", 128, 0.5, 0, 16, 10),
    Candidate("w0.75-160-nolast-shallow", 160, 0.75, 0, 32, 10, SHALLOW),
    Candidate("w0.5-160-nolast-shallow", 160, 0.5, 0, 32, 10, SHALLOW),
    Candidate("w0.75-128-s16-nolast-shallow", 128, 0.75, 0, 16, 10, SHALLOW),
    Candidate("w0.5-128-s16-nolast-shallow", 128, 0.5, 0, 16, 10, SHALLOW),
    Candidate("w0.5-128-s16-nolast-shallowest", 128, 0.5, 0, 16, 10, SHALLOWEST),
    Candidate("w0.5-128-s16-nolast-shallowest-n5", 128, 0.5, 0, 16, 5, SHALLOWEST),
    Candidate("w0.5-128-s16-nolast-shallow-n5", 128, 0.5, 0, 16, 5, SHALLOW),
    Candidate("w0.75-128-s16-nolast-shallowest-n5", 128, 0.75, 0, 16, 5, SHALLOWEST),
    Candidate("w0.75-160-nolast-shallowest-n5", 160, 0.75, 0, 32, 5, SHALLOWEST),
)


def build_int8(candidate: Candidate, work: Path, mean_face: np.ndarray) -> Path:
    """Random weights -> checkpoint -> verified float ONNX -> INT8 twin; the INT8 file's path."""
    cfg = Config()
    m = cfg.model
    m.input_size, m.width, m.last_channels = candidate.input_size, candidate.width, candidate.last_channels
    m.stride, m.num_neighbours, m.pretrained = candidate.stride, candidate.neighbours, ""
    m.blocks = list(candidate.blocks)
    torch.manual_seed(0)
    network = build_network(cfg).eval()
    scaled = mean_face * candidate.input_size / 192
    codec = PIPCodec.fit(scaled[None], candidate.neighbours, candidate.input_size, candidate.stride)
    shape = {"width": m.width, "last_channels": m.last_channels, "blocks": candidate.blocks}
    info = ModelInfo(codec, m.crop_scale, m.backbone, name=candidate.name, **shape)
    checkpoint = work / f"{candidate.name}.pt"
    save_checkpoint(checkpoint, {"model": network.state_dict(), "config": cfg.to_dict(), "info": info.to_json()})
    float_path = export_onnx(checkpoint, work / f"{candidate.name}.onnx").path
    int8 = work / f"{candidate.name}_int8.onnx"
    with closing(OnnxLandmarkModel(float_path)) as float_model:
        write_int8(float_model, int8, verification_crops(candidate.input_size, count=16))
    return int8


def time_calls(model: OnnxLandmarkModel, batch: np.ndarray, calls: int) -> float:
    """Milliseconds per call over ``calls`` calls (points and confidence decoded in the graph)."""
    start = perf_counter()
    for _ in range(calls):
        model.network_outputs(batch)
    return 1000 * (perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=40, help="calls per candidate per round")
    parser.add_argument("--only", nargs="+", help="candidate names (today's network is always timed)")
    args = parser.parse_args()
    chosen = [c for c in CANDIDATES if c.name == "today" or not args.only or c.name in args.only]
    with closing(OnnxLandmarkModel(shipped_model(prefer_int8=False))) as shipped:
        mean_face = shipped.info.codec.mean_face
    with tempfile.TemporaryDirectory() as work, ExitStack() as opened:
        paths = {c.name: build_int8(c, Path(work), mean_face) for c in chosen}
        models = {c.name: opened.enter_context(closing(OnnxLandmarkModel(paths[c.name], threads=2))) for c in chosen}
        print("| candidate | input | grid | M multiply-adds | batch 1 ms | speed-up | batch 3 ms | speed-up |")
        print("|---|---|---|---|---|---|---|---|")
        rows = {c.name: {} for c in chosen}
        for faces in (1, 3):
            times = {c.name: [] for c in chosen}
            batches = {c.name: np.zeros((faces, 3, c.input_size, c.input_size), np.float32) for c in chosen}
            for name, model in models.items():
                time_calls(model, batches[name], 10)  # warm-up: first calls allocate
            for round_index in range(args.rounds):
                order = chosen if round_index % 2 == 0 else chosen[::-1]
                for c in order:
                    times[c.name].append(time_calls(models[c.name], batches[c.name], args.calls))
            for c in chosen:
                ratios = [t0 / t for t0, t in zip(times["today"], times[c.name])]
                rows[c.name][faces] = (statistics.median(times[c.name]), statistics.median(ratios))
        for c in chosen:
            macs = sum(multiply_adds(paths[c.name]).values())
            (ms1, x1), (ms3, x3) = rows[c.name][1], rows[c.name][3]
            grid = c.input_size // c.stride
            print(
                f"| {c.name} | {c.input_size} | {grid}x{grid} | {macs:.0f} | {ms1:.2f} | {x1:.2f}x | {ms3:.2f} | {x3:.2f}x |"
            )


if __name__ == "__main__":
    main()

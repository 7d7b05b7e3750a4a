"""Two landmark model files end to end, in turns on the same frames (ABBA chunks, as `pipnet
bench` runs Face Mesh): the speed of a model change, free of this machine's drift.

    git show 82debfa:models/pipnet_mbv2_68_int8.onnx > /tmp/before.onnx   # the INT8 file before its graph decoded
    .venv/bin/python tools/compare_models.py /tmp/before.onnx models/pipnet_mbv2_68_int8.onnx --faces 1 3

Run with nothing else on the CPU.
"""

import argparse
from time import perf_counter

from pipnet_core import Landmarker
from pipnet_core.base.lifetime import Closing
from pipnet_core.evaluation.bench import bench_pipeline, load_frames


class PipelineRival(Closing):
    """The other model's pipeline, run by ``bench_pipeline`` in turns with the first."""

    def __init__(self, model: str, frames, faces: int, fps: float = 30.0):
        self.landmarker = Landmarker(model, max_faces=faces)
        self.frames, self.fps_of_clip = frames, fps
        for i in range(10):  # the same warm-up bench_pipeline gives the first
            self.landmarker.process(frames[i % len(frames)], i / fps)
        self.landmarker.reset()
        self.count, self.seconds = 0, 0.0

    def run(self, span: range) -> None:
        start = perf_counter()
        for i in span:
            self.landmarker.process(self.frames[i % len(self.frames)], i / self.fps_of_clip)
        self.seconds += perf_counter() - start
        self.count += len(span)

    def close(self) -> None:
        self.landmarker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--faces", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--frames", type=int, default=2000)
    args = parser.parse_args()
    for faces in args.faces:
        frames = load_frames(None, faces, args.frames)
        with PipelineRival(args.before, frames, faces) as before, Landmarker(args.after, max_faces=faces) as landmarker:
            after = bench_pipeline(landmarker, frames, args.frames, f"{faces} face(s)", rival=before)
        before_fps = before.count / before.seconds
        print(
            f"{faces} face(s): before {before_fps:.1f} FPS, after {after.fps:.1f} FPS: {after.fps / before_fps:.3f}x; "
            "after's ms per frame: " + "  ".join(f"{k} {v:.2f}" for k, v in after.stage_ms.items())
        )


if __name__ == "__main__":
    main()

"""`pipnet bench`: per-stage milliseconds and end-to-end FPS of the real-time pipeline.

Frames are decoded up front, so the numbers are the pipeline's own, not the video decoder's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from time import perf_counter

import numpy as np

from pipnet_core.base.lifetime import Closing
from pipnet_core.pipeline.landmarker import STAGES, Landmarker


def resident_mb() -> float:
    """This process's resident memory, from /proc (Linux); 0 where unavailable."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


@dataclass
class BenchResult:
    label: str
    frames: int
    seconds: float
    stage_ms: dict[str, float]
    faces_per_frame: float
    memory_mb: list[tuple[int, float]] = field(default_factory=list)  # (frame, resident MB)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds

    def line(self) -> str:
        stages = "  ".join(f"{k} {v:.2f}" for k, v in self.stage_ms.items())
        return f"{self.label}: {self.fps:.1f} FPS end to end ({self.faces_per_frame:.2f} faces/frame); ms per frame: {stages}"


def load_frames(video: str | None, faces: int, count: int) -> list[np.ndarray]:
    if video:
        from pipnet_core.io.frames import iterate, open_source

        source = open_source(video)
        frames = [f.image for _, f in zip(range(count), iterate(source))]
        source.close()
        return frames
    from pipnet_core.io.sample_clip import ClipSpec, generate

    return [frame for frame, _, _ in generate(ClipSpec(frames=min(count, 300), faces=faces))]


def bench_pipeline(
    landmarker: Landmarker,
    frames: list[np.ndarray],
    total: int,
    label: str,
    fps: float = 30.0,
    warmup: int = 10,
    rival: FaceMeshRival | None = None,
    chunk: int = 100,
) -> BenchResult:
    """Run ``total`` frames (cycling through ``frames``), timing each stage. With a ``rival``, the
    two take turns on the same frames in chunks, in ABBA order (ours, theirs, theirs, ours, ...):
    a shared machine's speed can drift by tens of percent within a minute, and on this one the
    order of the turns alone moved a ratio by 5%, so neither one run after the other nor a fixed
    order gives a ratio to trust."""
    for i in range(warmup):
        landmarker.process(frames[i % len(frames)], i / fps)
    landmarker.reset()
    sums = dict.fromkeys(STAGES, 0.0)
    faces = 0
    memory = []
    seconds = 0.0
    for turn, first in enumerate(range(0, total, chunk)):
        span = range(first, min(first + chunk, total))
        if rival is not None and turn % 2:
            rival.run(span)
        start = perf_counter()
        for i in span:
            faces += len(landmarker.process(frames[i % len(frames)], i / fps))
            for stage, ms in landmarker.timings.items():
                sums[stage] += ms
            if total >= 1000 and (i + 1) % (total // 10) == 0:
                memory.append((i + 1, resident_mb()))
        seconds += perf_counter() - start
        if rival is not None and not turn % 2:
            rival.run(span)
    return BenchResult(label, total, seconds, {k: v / total for k, v in sums.items()}, faces / total, memory)


def bench_new_face(landmarker: Landmarker, frame: np.ndarray, repeats: int = 15) -> tuple[float, float]:
    """Milliseconds (median) to process a frame whose face the landmarker sees for the first time
    (detection, refinement, and for a face upside down the turned-frame search), and that face's
    confidence: what a face entering the view costs."""
    times, faces = [], []
    for _ in range(repeats + 1):
        landmarker.reset(restart_ids=True)
        start = perf_counter()
        faces = landmarker.process(frame, 0.0)
        times.append(1000 * (perf_counter() - start))
    landmarker.reset(restart_ids=True)
    return float(np.median(times[1:])), max((f.mean_confidence for f in faces), default=0.0)


def bench_detectors(
    frame: np.ndarray, names=("blazeface", "blazeface-full", "blazeface-both"), repeats: int = 50
) -> dict[str, float]:
    """Milliseconds per frame of each face detector alone, and of the still-image search (the
    frame and its three quarter turns) with each."""
    from pipnet_core.detection.registry import create_detector
    from pipnet_core.detection.search import QuarterTurnDetector

    timings = {}
    for name in names:
        detector = create_detector(name)
        for label, search in ((name, detector), (f"{name} + quarter turns", QuarterTurnDetector(detector))):
            search.detect(frame)
            start = perf_counter()
            for _ in range(repeats):
                search.detect(frame)
            timings[label] = 1000 * (perf_counter() - start) / repeats
        detector.close()
    return timings


def bench_mediapipe_detectors(frame: np.ndarray, repeats: int = 50) -> dict[str, float]:
    """MediaPipe's own BlazeFace on the same frame (ms per frame): short, full and both, as
    ``bench_detectors`` times ours; a PipnetError saying why when MediaPipe is not there."""
    from pipnet_core.evaluation.face_mesh import MediaPipeFaceDetection

    detectors = {"short": MediaPipeFaceDetection("short"), "full": MediaPipeFaceDetection("full")}
    runs = {"short": ["short"], "full": ["full"], "both": ["short", "full"]}
    timings = {}
    try:
        for label, names in runs.items():
            for name in names:
                detectors[name].detect(frame)
            start = perf_counter()
            for _ in range(repeats):
                for name in names:
                    detectors[name].detect(frame)
            timings[label] = 1000 * (perf_counter() - start) / repeats
    finally:
        for detector in detectors.values():
            detector.close()
    return timings


def bench_model(landmarker: Landmarker, repeats: int = 200) -> float:
    """Milliseconds per face of the landmark network alone (batch of one, crop prepared; with the
    decode, when the model's graph has it)."""
    size = landmarker.model.info.input_size
    batch = np.random.default_rng(0).integers(0, 256, (1, 3, size, size)).astype(np.float32)
    for _ in range(10):
        landmarker.model.network_outputs(batch)
    start = perf_counter()
    for _ in range(repeats):
        landmarker.model.network_outputs(batch)
    return 1000 * (perf_counter() - start) / repeats


class FaceMeshRival(Closing):
    """MediaPipe Face Mesh (468 points) on the same frames, run in turns with ours by
    ``bench_pipeline``; raises PipnetError saying why when MediaPipe is not there to compare with."""

    def __init__(self, frames: list[np.ndarray], max_faces: int):
        import cv2

        from pipnet_core.evaluation.face_mesh import FaceMesh, quiet_native_stderr

        self.rgb = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames]  # its input; converted up front, like ours
        self.mesh = FaceMesh(max_faces)
        try:
            with quiet_native_stderr():  # warm-up on a real frame, as for our own models; its warnings hidden
                self.mesh.process_rgb(self.rgb[0])
        except BaseException:
            self.mesh.close()
            raise
        self.frames, self.seconds = 0, 0.0

    def run(self, span: range) -> None:
        start = perf_counter()
        for i in span:
            self.mesh.process_rgb(self.rgb[i % len(self.rgb)])
        self.seconds += perf_counter() - start
        self.frames += len(span)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def close(self) -> None:
        self.mesh.close()


def bench_dlib(frames: list[np.ndarray], total: int) -> float | None:
    """dlib's HOG detector + 68-point shape predictor, in FPS, when dlib and its model are present."""
    predictor_path = os.environ.get("DLIB_SHAPE_PREDICTOR", "shape_predictor_68_face_landmarks.dat")
    try:
        import dlib

        detector, predictor = dlib.get_frontal_face_detector(), dlib.shape_predictor(predictor_path)
    except Exception:  # dlib is optional and its model file is not shipped
        return None
    start = perf_counter()
    for i in range(total):
        frame = frames[i % len(frames)]
        for box in detector(frame, 0):
            predictor(frame, box)
    return total / (perf_counter() - start)

"""`pipnet annotate --scheduler`: the same export on a Dask cluster, long videos split in chunks.

The client plans and watches; the workers do the work; the output folder, a filesystem every
worker sees, is where they meet:

- a plan task per video reads its packets (no decoding), numbers its frames and splits it into
  chunks of ``chunk_seconds``, each starting ``overlap`` seconds early so that its tracker and
  smoother are warmed up on frames the chunk before owns;
- a chunk task runs its worker's landmarker (loaded once per worker by ``LandmarkerPlugin``) over
  the chunk's frames, decoded from the exact first frame (``frames.VideoRange``), and writes them
  to NAME.chunks/NNNNN.chunk in one piece, under a temporary name renamed when complete: a task
  lost with its worker leaves nothing half-written, and Dask runs it again on another worker;
- a merge task per video joins its chunks: frames numbered as in the video, each chunk's face ids
  matched to the ids the chunk before gave the same faces on the overlap frames, every format
  written by the writers a single-process run uses, under temporary names moved into place at
  the end, with the progress file saying the video is complete (as ``annotate`` writes it).

Images are one task each. ``--resume`` keeps finished files and finished chunks; a client
stopped with Ctrl-C leaves both.
"""

from __future__ import annotations

import queue
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipnet_core.base.errors import PipnetError
from pipnet_core.base.records import Face, FrameFaces, HeadPose
from pipnet_core.base.version import __version__
from pipnet_core.export.annotate import (
    AnnotateOptions,
    FileResult,
    Progress,
    annotate_file,
    input_files,
    move_outputs,
    open_landmarker,
    output_files,
    output_paths,
    prepare_for_video,
    resume_settings,
    run_settings,
    write_whole_video,
    written_whole,
)
from pipnet_core.export.writers import export_header
from pipnet_core.io.files import write_file
from pipnet_core.io.frames import VideoLayout, VideoRange
from pipnet_core.io.images import check_pixels
from pipnet_core.io.media import media_kind
from pipnet_core.io.state_codec import (
    NUMBER,
    decode_state,
    encode_state,
    float_array,
    from_plain,
    holds,
    optional,
    to_plain,
    tuple_of,
)
from pipnet_core.pipeline.landmarker import Landmarker

PLUGIN = "pipnet-landmarker"
DEFAULT_CHUNK_SECONDS = 60.0
# The warm-up that took every chunk of five of the six clips of ../shared/videos (5 s chunks) to
# the single-process run's points bit for bit; 2 s left one chunk start 2 px off for 20 frames.
DEFAULT_OVERLAP_SECONDS = 4.0
# Dask's retries are for exceptions a task raises (a flaky network filesystem); a worker that dies
# is Dask's own business: its tasks run again elsewhere, up to `distributed.scheduler.allowed-failures`.
RETRIES = 2
PROGRESS_EVERY = 30  # frames between two progress events of a chunk
# Two faces are one when their points lie this close (mean distance over the larger box side).
SAME_FACE = 0.1
PIECE_KIND = "cluster chunk"


@dataclass(frozen=True)
class ClusterOptions:
    scheduler: str  # "tcp://host:8786", or "local:N" for N single-threaded workers on this machine
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS  # 0: a video is one chunk
    overlap_seconds: float = DEFAULT_OVERLAP_SECONDS


@dataclass(frozen=True)
class Chunk:
    warmup: int  # the first frame decoded: [warmup, first) warm the tracker and smoother up
    first: int  # the first frame this chunk writes
    end: int  # one past the last


@dataclass(frozen=True)
class VideoPlan:
    path: Path
    name: str
    header: dict
    layout: VideoLayout
    chunks: list[Chunk]
    mean_face: np.ndarray  # the model's, for offline smoothing in the merge

    @property
    def settings(self) -> dict:
        return resume_settings(self.header)

    def piece(self, out_dir: Path, number: int) -> Path:
        return out_dir / f"{self.name}.chunks" / f"{number:05d}.chunk"

    def frames(self, every: int) -> int:
        """How many frames a run processes and writes."""
        return len(range(0, len(self.layout.times), every))


@dataclass(frozen=True)
class ChunkDone:
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    error: str | None = None


def _faces(value) -> bool:
    return isinstance(value, list) and all(isinstance(face, Face) for face in value)


# What a chunk piece may hold besides plain values, and what their fields may hold.
PIECE_STATE = {
    Chunk: {"warmup": int, "first": int, "end": int},
    Face: {
        "id": int,
        "box": tuple_of(*[NUMBER] * 4),
        "score": NUMBER,
        "points": float_array(None, 2),
        "confidence": float_array(None),
        "pose": optional(HeadPose),
        "success": bool,
    },
    HeadPose: {
        "yaw": NUMBER,
        "pitch": NUMBER,
        "roll": NUMBER,
        "rotation": float_array(3, 3),
        "translation": float_array(3),
    },
}
# A piece: {"settings": dict, "chunk": Chunk, "frames": [(index, timestamp, faces)], "warmup": {index: faces}}.
_PIECE = {
    "settings": dict,
    "chunk": Chunk,
    "frames": lambda v: isinstance(v, list) and all(tuple_of(int, NUMBER, _faces)(frame) for frame in v),
    "warmup": lambda v: isinstance(v, dict) and all(isinstance(k, int) and _faces(f) for k, f in v.items()),
}


def plan_chunks(layout: VideoLayout, chunk_seconds: float, overlap_seconds: float) -> list[Chunk]:
    """Chunks of ``chunk_seconds`` of presentation time (the whole video for 0); each but the
    first decodes from ``overlap_seconds`` (at most a chunk) before its first frame, and at least
    one frame before it: the faces of that frame are how ids are matched."""
    count = len(layout.times)
    starts = [0]
    while chunk_seconds > 0 and (nxt := layout.first_at(layout.seconds(starts[-1]) + chunk_seconds)) < count:
        starts.append(max(nxt, starts[-1] + 1))
    overlap = min(overlap_seconds, chunk_seconds)
    return [
        Chunk(min(layout.first_at(max(layout.seconds(first) - overlap, 0.0)), first - 1) if first else 0, first, end)
        for first, end in zip(starts, starts[1:] + [count])
    ]


def match_ids(before: dict[int, list[Face]], warmup: dict[int, list[Face]]) -> dict[int, int]:
    """Which of a chunk's own face ids (in its warm-up frames) are which ids of the chunk before
    (on the same frames): pairs whose points lie within ``SAME_FACE`` on their median frame,
    closest first, each id used once."""
    distances: dict[tuple[int, int], list[float]] = {}
    for frame, faces in warmup.items():
        for new in (f for f in faces if f.success):
            for old in (f for f in before.get(frame, []) if f.success):
                scale = max(old.box[2], old.box[3], 1.0)
                gap = float(np.linalg.norm(new.points - old.points, axis=1).mean()) / scale
                distances.setdefault((new.id, old.id), []).append(gap)
    medians = sorted((float(np.median(gaps)), new, old) for (new, old), gaps in distances.items())
    matched: dict[int, int] = {}
    for gap, new, old in medians:
        if gap < SAME_FACE and new not in matched and old not in matched.values():
            matched[new] = old
    return matched


# -- on the workers -------------------------------------------------------------------------------------
try:
    from distributed import WorkerPlugin
except ImportError:  # the cluster extra is not installed: the client says so when asked to use it
    WorkerPlugin = object


class LandmarkerPlugin(WorkerPlugin):
    """The run's landmarker on each worker, loaded when the plugin is registered (a worker that
    cannot load the model says so then) and kept for every task; a worker running tasks in several
    threads gets one per thread that needs it. Closed when the worker leaves or the next run
    registers its own."""

    def __init__(self, options: AnnotateOptions, version: str = __version__):
        self.options, self.version = options, version

    def setup(self, worker) -> None:
        if self.version != __version__:
            raise PipnetError(f"worker {worker.address} has pipnet-live {__version__}, the client {self.version}")
        self._made: list[Landmarker] = []
        self._free: queue.SimpleQueue[Landmarker] = queue.SimpleQueue()
        self._free.put(self._open())

    def _open(self) -> Landmarker:
        landmarker = open_landmarker(self.options)
        self._made.append(landmarker)
        return landmarker

    @contextmanager
    def landmarker(self):
        try:
            landmarker = self._free.get_nowait()
        except queue.Empty:
            landmarker = self._open()
        try:
            yield landmarker
        finally:
            self._free.put(landmarker)

    def teardown(self, worker) -> None:
        for landmarker in self._made:
            landmarker.close()


def _plugin() -> LandmarkerPlugin:
    from distributed import get_worker

    return get_worker().plugins[PLUGIN]


def _plan_video(path: Path, name: str, options: AnnotateOptions, cluster: ClusterOptions) -> VideoPlan | FileResult:
    """The video's header, frames and chunks; a FileResult when there is nothing to run (an
    error, or complete already and --resume)."""
    try:
        layout = VideoLayout.read(path)
        if not layout.times:
            raise PipnetError(f"{path}: no frame could be decoded")
        check_pixels(str(path), layout.width, layout.height, options.max_pixels)
        with _plugin().landmarker() as landmarker:
            mean_face = landmarker.model.info.codec.mean_face
            header = export_header(
                landmarker.model,
                fps=layout.fps,
                width=layout.width,
                height=layout.height,
                frame_count=len(layout.times),
                time_offset=layout.times[0] * layout.time_base,
                **run_settings(path, options, landmarker, (layout.width, layout.height)),
            )
        paths = output_paths(name, options, several=False)
        outputs = output_files(paths)
        if options.resume:
            # Complete once the merge has moved every output, whole, into place and said so (a
            # .pts folder may end before the video does: frames without a face have no file);
            # until then the outputs are an earlier run's, and the chunks are what continues.
            if written_whole(paths, header):
                return FileResult(path, already_complete=True, outputs=outputs)
        else:
            # Chunks an earlier run left are not removed: a chunk task without --resume writes its
            # own over them, and this task may run twice (its worker lost) while chunks are written.
            paths["progress"].unlink(missing_ok=True)
        return VideoPlan(
            path, name, header, layout, plan_chunks(layout, cluster.chunk_seconds, cluster.overlap_seconds), mean_face
        )
    except PipnetError as exc:
        return FileResult(path, error=str(exc))
    except OSError as exc:
        return FileResult(path, error=f"{exc.filename or path}: {exc.strerror or exc}")


def read_piece(path: Path, plan: VideoPlan, chunk: Chunk) -> dict | None:
    """A finished chunk of this video and these settings; None when there is none, or when it is
    another plan's chunk (other --chunk-seconds): it runs again. A file that is not a piece of
    this program, or was made with other settings, is refused in one line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PipnetError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        piece = from_plain(decode_state(data, PIECE_KIND, str(path)), PIECE_STATE)
    except ValueError:
        piece = None
    if (
        not isinstance(piece, dict)
        or set(piece) != set(_PIECE)
        or not all(holds(piece[k], kind) for k, kind in _PIECE.items())
    ):
        raise PipnetError(f"{path}: a damaged chunk piece; delete it, or run without --resume")
    if piece["settings"] != plan.settings:
        raise PipnetError(f"{path}: a chunk made with other settings; delete {path.parent}, or run without --resume")
    return piece if piece["chunk"] == chunk else None


def _run_chunk(plan: VideoPlan, number: int, options: AnnotateOptions, topic: str) -> ChunkDone:
    from distributed import get_worker

    started, chunk = time.monotonic(), plan.chunks[number]
    piece_path = plan.piece(options.out_dir, number)
    worker = get_worker()
    if options.resume and (piece := read_piece(piece_path, plan, chunk)) is not None:
        worker.log_event(topic, (plan.name, number, len(piece["frames"])))
        return ChunkDone(len(piece["frames"]), sum(len(faces) for _, _, faces in piece["frames"]))
    frames, warmup = [], {}
    try:
        with _plugin().landmarker() as landmarker:
            landmarker.reset(restart_ids=True, first_frame=len(range(0, chunk.warmup, options.every)))
            prepare_for_video(landmarker, options)
            source = VideoRange(plan.path, plan.layout, chunk.warmup, chunk.end)
            try:
                for frame in source:
                    if frame.index % options.every:
                        continue
                    faces = landmarker.process(frame.image, frame.timestamp)
                    if frame.index < chunk.first:
                        warmup[frame.index] = faces
                        continue
                    frames.append(FrameFaces(frame.index, frame.timestamp, faces))
                    if len(frames) % PROGRESS_EVERY == 0:
                        worker.log_event(topic, (plan.name, number, len(frames)))
            finally:
                source.close()
        piece_path.parent.mkdir(exist_ok=True)
        piece = {"settings": plan.settings, "chunk": chunk, "frames": frames, "warmup": warmup}
        write_file(piece_path, encode_state(PIECE_KIND, to_plain(piece, PIECE_STATE)), shared=True)
    except PipnetError as exc:
        return ChunkDone(error=str(exc))
    except OSError as exc:
        return ChunkDone(error=f"{exc.filename or piece_path}: {exc.strerror or exc}")
    worker.log_event(topic, (plan.name, number, len(frames)))
    return ChunkDone(len(frames), sum(len(faces) for _, _, faces in frames), time.monotonic() - started)


def _merge_video(plan: VideoPlan, options: AnnotateOptions, *done: ChunkDone) -> FileResult:
    paths = output_paths(plan.name, options, several=False)
    result = FileResult(
        plan.path,
        frames=sum(d.frames for d in done),
        faces=sum(d.faces for d in done),
        seconds=sum(d.seconds for d in done),
        outputs=output_files(paths),
    )
    failed = next((d.error for d in done if d.error), None)
    if (
        not (options.out_dir / f"{plan.name}.chunks").is_dir()
        and Progress.completed_at(paths["progress"], plan.settings) is not None
    ):
        return result  # this merge ran before, its worker lost before the client heard
    if failed:
        result.error = f"{failed} (the finished chunks are kept: --resume continues)"
        return result
    try:
        last = write_whole_video(plan.name, options, plan.header, _merged_frames(plan, options), plan.mean_face)
        Progress(paths["progress"], plan.settings, 0).finish(last)
        shutil.rmtree(options.out_dir / f"{plan.name}.chunks", ignore_errors=True)
        paths["raw"].unlink(missing_ok=True)  # a single-process run's, killed: these outputs replace it
    except PipnetError as exc:
        result.error = f"{exc} (the finished chunks are kept: --resume continues)"
    except OSError as exc:
        result.error = (
            f"{exc.filename or plan.path}: {exc.strerror or exc} (the finished chunks are kept: --resume continues)"
        )
    return result


def _merged_frames(plan: VideoPlan, options: AnnotateOptions) -> Iterator[FrameFaces]:
    """Every chunk's frames in order, its ids mapped to the video's (one chunk in memory at once)."""
    before: dict[int, list[Face]] = {}  # the previous chunk's faces, with the video's ids
    next_id = 0
    for number, chunk in enumerate(plan.chunks):
        piece = read_piece(plan.piece(options.out_dir, number), plan, chunk)
        if piece is None:
            raise PipnetError(f"{plan.piece(options.out_dir, number)}: missing or from another run")
        ids = match_ids(before, piece["warmup"])
        before = {}
        for index, timestamp, faces in piece["frames"]:
            for face in faces:
                if face.id not in ids:
                    ids[face.id], next_id = next_id, next_id + 1
            faces = sorted((replace(face, id=ids[face.id]) for face in faces), key=lambda face: face.id)
            yield index, timestamp, faces
            before[index] = faces


def _annotate_image(path: Path, name: str, options: AnnotateOptions, topic: str) -> FileResult:
    """An image, written in a staging folder and moved into place when complete."""
    from distributed import get_worker

    staging = options.out_dir / f".{name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
        with _plugin().landmarker() as landmarker:
            result = annotate_file(path, replace(options, out_dir=staging, resume=False), landmarker, name)
        if not result.error:
            result.outputs = move_outputs(name, options, staging, video=False)
        get_worker().log_event(topic, (name, 0, 1))
        return result
    except OSError as exc:
        return FileResult(path, error=f"{exc.filename or path}: {exc.strerror or exc}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# -- the client ------------------------------------------------------------------------------------------
def local_workers(scheduler: str) -> int | None:
    """N of "local:N"; None for a scheduler's address."""
    if not scheduler.startswith("local:"):
        return None
    count = scheduler[len("local:") :]
    if not count.isdigit() or int(count) < 1:
        raise PipnetError(f"--scheduler {scheduler}: say how many workers, e.g. local:4")
    return int(count)


@contextmanager
def _client(scheduler: str):
    """A client of the named scheduler, or of a local cluster of N single-threaded workers."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise PipnetError("--scheduler needs Dask: pip install 'pipnet-live[cluster]'") from None
    import logging

    # The run reports its errors one line per file; Dask's client would also log a traceback of
    # its own cancelled calls when the user stops the run with Ctrl-C (the workers log in their
    # own processes).
    logging.disable(logging.ERROR)
    try:
        workers = local_workers(scheduler)
        if workers:
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            try:
                with Client(cluster) as client:
                    yield client
            finally:
                cluster.close()
            return
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise PipnetError(f"cannot reach the Dask scheduler at {scheduler} ({exc})") from None
        with client:
            yield client
    finally:
        logging.disable(logging.NOTSET)


def annotate_on_cluster(inputs: list[str], options: AnnotateOptions, cluster: ClusterOptions) -> list[FileResult]:
    """Every input (files, folders) on the cluster; results in the order of the files."""
    from distributed import as_completed

    files, names = input_files(inputs, options)
    if options.video_out is not None:
        raise PipnetError("--video-out draws one video in one process: run it without --scheduler")
    if workers := local_workers(cluster.scheduler):
        options = replace(options, threads=max(1, options.threads // workers))  # the cores, shared
    with _client(cluster.scheduler) as client:
        try:
            client.register_plugin(LandmarkerPlugin(options), name=PLUGIN)
        except Exception as exc:  # raised on a worker: its message is the line to show
            raise PipnetError(f"a worker cannot load the landmarker: {str(exc).splitlines()[0]}") from None
        topic = f"pipnet-annotate-{uuid.uuid4().hex}"
        bar = _Bar(options.show_progress)
        client.subscribe_topic(topic, bar.event)
        futures, plans = {}, {}
        try:
            for path in files:
                if media_kind(path) == "image":
                    futures[path] = client.submit(
                        _annotate_image, path, names[path], options, topic, retries=RETRIES, pure=False
                    )
                    bar.add(1)
                else:
                    plans[
                        client.submit(_plan_video, path, names[path], options, cluster, retries=RETRIES, pure=False)
                    ] = path
            for planned in as_completed(plans):
                plan = _result(plans[planned], planned)
                if isinstance(plan, FileResult):
                    futures[plans[planned]] = plan
                    continue
                bar.add(plan.frames(options.every))
                chunks = [
                    client.submit(_run_chunk, planned, number, options, topic, retries=RETRIES, pure=False)
                    for number in range(len(plan.chunks))
                ]
                futures[plan.path] = client.submit(_merge_video, planned, options, *chunks, retries=RETRIES, pure=False)
            results = [_result(path, futures[path]) for path in files]
        except BaseException:
            client.cancel([f for f in [*plans, *futures.values()] if not isinstance(f, FileResult)], force=True)
            raise
        finally:
            client.unsubscribe_topic(topic)
            bar.close()
    return results


def _result(path: Path, future):
    """A task's result, or the file's error when the task failed on every try or its worker died
    too often (Dask's KilledWorker)."""
    if isinstance(future, FileResult):
        return future
    try:
        return future.result()
    except Exception as exc:
        return FileResult(path, error=f"{path}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


class _Bar:
    """One progress bar over every frame of the run, fed by the tasks' progress events (a chunk
    run again after its worker died counts its frames once; an image is one frame)."""

    def __init__(self, shown: bool):
        self._bar = None
        self._done: dict[tuple[str, int], int] = {}
        if shown:
            import sys

            from tqdm import tqdm

            self._bar = tqdm(total=0, unit="frame", desc="annotate", dynamic_ncols=True, file=sys.stderr)

    def add(self, frames: int) -> None:
        if self._bar is not None:
            self._bar.total += frames
            self._bar.refresh()

    def event(self, event) -> None:
        _, (name, number, frames) = event
        key = (name, number)
        grown = frames - self._done.get(key, 0)
        if grown > 0:
            self._done[key] = frames
            if self._bar is not None:
                self._bar.update(grown)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

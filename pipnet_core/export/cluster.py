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
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path

from pipnet_core.base.errors import PipnetError
from pipnet_core.base.records import Face, FrameFaces
from pipnet_core.base.version import __version__
from pipnet_core.export.annotate import (
    annotate_file,
    input_files,
    open_landmarker,
    prepare_for_video,
    write_whole_video,
)
from pipnet_core.export.chunks import (
    DEFAULT_CHUNK_SECONDS,
    DEFAULT_OVERLAP_SECONDS,
    PIECE_KIND,
    PIECE_STATE,
    ChunkDone,
    VideoPlan,
    match_ids,
    plan_chunks,
    read_piece,
)
from pipnet_core.export.outputs import (
    AnnotateOptions,
    FileResult,
    Progress,
    move_outputs,
    output_files,
    output_paths,
    run_settings,
    written_whole,
)
from pipnet_core.export.writers import export_header
from pipnet_core.io.files import write_file
from pipnet_core.io.frames import VideoLayout, VideoRange
from pipnet_core.io.images import check_pixels
from pipnet_core.io.media import media_kind
from pipnet_core.io.state_codec import encode_state, to_plain
from pipnet_core.pipeline.landmarker import Landmarker

PLUGIN = "pipnet-landmarker"
# Dask's retries are for exceptions a task raises (a flaky network filesystem); a worker that dies
# is Dask's own business: its tasks run again elsewhere, up to `distributed.scheduler.allowed-failures`.
RETRIES = 2
PROGRESS_EVERY = 30  # frames between two progress events of a chunk


@dataclass(frozen=True)
class ClusterOptions:
    scheduler: str  # "tcp://host:8786", or "local:N" for N single-threaded workers on this machine
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS  # 0: a video is one chunk
    overlap_seconds: float = DEFAULT_OVERLAP_SECONDS


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
                    frames.append((frame.index, frame.timestamp, faces))  # a piece holds plain tuples (PIECE_STATE)
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
            yield FrameFaces(index, timestamp, faces)
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
                client = Client(cluster)
                try:
                    yield client
                finally:
                    _close(client)
            finally:
                _quietly(cluster.close)
            return
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise PipnetError(f"cannot reach the Dask scheduler at {scheduler} ({exc})") from None
        try:
            yield client
        finally:
            _close(client)
    finally:
        logging.disable(logging.NOTSET)


def _close(client) -> None:
    """Close the client without letting a failing close replace how the run ended (the interrupt,
    or the results): right after a Ctrl-C, Dask's client can be mid-reconnect, and its close then
    fails an assertion of its own (distributed 2026.8 did, in CI)."""
    try:
        client.close()
    except Exception:
        # Left "closing", the client would close again when collected and print that traceback.
        client.status = "closed"


def _quietly(cleanup, *args, **kwargs) -> None:
    """One step of stopping a run whose failure must not replace how the run ended: a cancel or an
    unsubscribe that finds the client closed by a lost scheduler, a local cluster slow to stop."""
    with suppress(Exception):
        cleanup(*args, **kwargs)


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
            running = [f for f in [*plans, *futures.values()] if not isinstance(f, FileResult)]
            _quietly(client.cancel, running, force=True)
            raise
        finally:
            _quietly(client.unsubscribe_topic, topic)
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

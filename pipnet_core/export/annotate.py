"""`pipnet annotate`: landmark tables (and an annotated video) for video and image files.

One ``Landmarker`` per process serves every file of a run, reset between files. Every output
records the settings that shaped it; ``--resume`` checks them and continues from the earliest
frame that any output lacks. With offline smoothing (the default) a video's faces go as measured
to NAME.raw.jsonl while it runs, and its outputs are written whole once it is done: every track
smoothed without lag (``tracks.smooth_offline``), with its blinks. A video's progress file keeps
the landmarker's video state (tracks, smoothers, ids) every few frames, so a resumed video
restores the last state before that frame, runs the few frames after it again unwritten, and goes
on exactly as an uninterrupted run would; once the video is done it says so, and ``--resume``
skips it. A write that fails (a full disk) fails that file alone, leaving every output complete up
to a frame.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import replace
from multiprocessing import get_context, util
from pathlib import Path

import cv2

from pipnet_core.base.errors import PipnetError
from pipnet_core.base.records import FrameFaces
from pipnet_core.export.draw import OverlayOptions, draw_faces
from pipnet_core.export.outputs import (
    CHECKPOINT_FRAMES,
    FORMATS,
    SMOOTHING,
    WRITERS,
    AnnotateOptions,
    FileResult,
    Progress,
    check_settings,
    move_outputs,
    output_files,
    output_names,
    output_paths,
    output_tables,
    resume_point,
    resume_settings,
    run_settings,
    staged_paths,
    streamed_tables,
    writer_for,
    written_whole,
)
from pipnet_core.export.read_back import read_records
from pipnet_core.export.writers import RawTrackWriter, export_header, video_writer, write_blinks
from pipnet_core.io.frames import ImageSource, VideoSource
from pipnet_core.io.media import expand, media_kind
from pipnet_core.offline.tracks import blinks, smooth_offline
from pipnet_core.pipeline.landmarker import VIDEO_MAX_FACES, Landmarker
from pipnet_core.pipeline.pose import camera_matrix
from pipnet_core.pipeline.smoothing import SmoothingParams


def open_landmarker(options: AnnotateOptions) -> Landmarker:
    """The one landmarker of a run (per process): its detector serves videos and stills alike."""
    landmarker = Landmarker(
        options.model,
        detector=options.detector,
        still_detector=options.detector,
        calibration=options.calibration,
        threads=options.threads,
    )
    landmarker.set_camera(*options.camera)
    return landmarker


class _Outputs:
    """The streamed tables of one input file, and its annotated video (when drawn as it runs),
    written under a temporary name and renamed when the file is complete (a resumed run writes it
    whole again)."""

    def __init__(
        self,
        tables: dict[str, Path],
        header: dict,
        start: int,
        video_path: Path | None,
        video_size: tuple[int, int],
        fps: float,
    ):
        self.writers, self.video, self.video_path = [], None, video_path
        try:
            for fmt, path in tables.items():
                self.writers.append(writer_for(fmt)(path, header, start))
            if self.video_path is not None:
                self.video = video_writer(self._partial_video(), fps, video_size)
        except Exception:
            self.close(complete=False)
            raise
        # The faces of earlier frames, to draw them again into the video.
        self.done = read_records(next(iter(tables.values()))) if start and tables and self.video is not None else {}

    def _partial_video(self) -> Path:
        return self.video_path.with_name(f"{self.video_path.stem}.partial{self.video_path.suffix}")

    def write(self, frame, faces) -> None:
        for writer in self.writers:
            writer.write_frame(frame.index, frame.timestamp, faces)
        self.draw(frame, faces)

    def draw(self, frame, faces) -> None:
        if self.video is not None:
            self.video.write(draw_faces(frame.image, faces, OverlayOptions()))

    def close(self, complete: bool) -> None:
        """Close everything (once; again is a no-op); a complete video takes its real name."""
        writers, video, self.writers, self.video = self.writers, self.video, [], None
        for writer in writers:
            writer.close()
        if video is None:
            return
        video.release()
        partial = self._partial_video()
        if not complete:
            partial.unlink(missing_ok=True)
        elif not partial.is_file() or partial.stat().st_size == 0:
            raise PipnetError(f"{self.video_path}: the video could not be written (no space?)")
        else:
            partial.replace(self.video_path)


def annotate_file(
    path: Path,
    options: AnnotateOptions,
    landmarker: Landmarker,
    name: str | None = None,
    several: bool = False,
    position: int = 0,
) -> FileResult:
    """One input file, start to end (or from where an interrupted run stopped)."""
    result = FileResult(path)
    started = time.monotonic()
    try:
        with ExitStack() as resources:  # closed before the error is recorded, the last opened first
            _annotate_into(result, resources, options, landmarker, name or path.stem, several, position)
    except PipnetError as exc:
        result.error = str(exc)
    except OSError as exc:  # a sidecar, a folder: anything the writers' own messages do not cover
        result.error = f"{exc.filename or path}: {exc.strerror or exc}"
    except cv2.error as exc:  # a decoder failing inside a damaged file
        result.error = f"{path}: cannot be decoded ({str(exc).strip().splitlines()[-1][:120]})"
    except KeyboardInterrupt:
        result.error = f"{path}: interrupted; what was written is complete up to a frame (--resume continues)"
        raise
    finally:
        result.seconds = time.monotonic() - started
        if result.error:
            result.outputs = [output for output in result.outputs if output.exists()]
    return result


def _annotate_into(result: FileResult, resources: ExitStack, options, landmarker, name, several, position) -> None:
    path = result.path
    is_image = media_kind(path) == "image"
    source = ImageSource(path, options.max_pixels) if is_image else VideoSource(path, max_pixels=options.max_pixels)
    resources.callback(source.close)
    if is_image and source.problem:
        result.warning, result.damage = source.problem, source.damage
    first = source.read()
    if first is None:
        raise PipnetError(f"{path}: no frame could be decoded")
    height, width = first.image.shape[:2]
    header = export_header(
        landmarker.model,
        fps=source.fps,
        width=width,
        height=height,
        frame_count=source.frame_count,
        time_offset=source.start_offset,
        **run_settings(path, options, landmarker, (width, height)),
    )
    paths = output_paths(name, options, several, video=not is_image)
    result.outputs = output_files(paths)
    tables = streamed_tables(paths, options)
    offline = "raw" in tables  # outputs written whole at the end, the video drawn then
    start = _start_frame(result, paths, tables, header, options)
    if result.already_complete:
        return
    progress = None if is_image else Progress(paths["progress"], resume_settings(header), start)
    if progress is not None and progress.complete_at is not None and start >= progress.complete_at:
        result.already_complete = True
        return
    fps = source.fps / options.every
    outputs = _Outputs(tables, header, start, None if offline else paths.get("video"), (width, height), fps)
    resources.callback(outputs.close, complete=False)  # after a failure; a no-op after success
    bar = resources.enter_context(_progress_bar(source, path, position)) if options.show_progress else None
    decoded, last = _run(source, first, landmarker, outputs, options, progress, result, bar)
    outputs.close(complete=True)
    if offline:
        write_whole_video(
            name, options, header, RawTrackWriter.read_frames(paths["raw"]), landmarker.model.info.codec.mean_face
        )
        if "video" in paths:
            _draw_video(path, read_records(next(iter(output_tables(paths).values()))), paths["video"], fps)
    if progress is not None:
        progress.finish(last)
    if offline:
        paths["raw"].unlink(missing_ok=True)
    if not is_image and source.frame_count > decoded + 1:
        # The header's count is often wrong (variable frame rate, edited files): not an error, but
        # the user should know in case the file is cut short.
        result.warning = (
            f"{path}: decoded {decoded} frames where the container announces {source.frame_count}; "
            "all decodable frames were exported (a truncated file also looks like this)"
        )


def _start_frame(result: FileResult, paths: dict[str, Path], tables: dict[str, Path], header: dict, options) -> int:
    """The first frame to run: 0, or with --resume where the outputs stop (``result.already_complete``
    when a video's outputs were written whole and marked complete)."""
    if not options.resume:
        if "raw" in paths and "raw" not in tables:
            paths["raw"].unlink(missing_ok=True)  # an offline run's, killed: these settings replace it
        return 0
    if "raw" in tables and written_whole(paths, header):
        paths["raw"].unlink(missing_ok=True)  # a run killed just before it removed its working file
        result.already_complete = True
        return 0
    # What another run left beside the tables this one continues (its outputs, or its working
    # file) is not overwritten unasked.
    others = output_tables(paths) | ({"raw": paths["raw"]} if "raw" in paths else {})
    check_settings({kind: path for kind, path in others.items() if kind not in tables}, header)
    result.resumed_from = resume_point(tables, header)
    return result.resumed_from


def _progress_bar(source, path: Path, position: int):
    from tqdm import tqdm

    return tqdm(
        total=source.frame_count or None,
        desc=path.name,
        unit="frame",
        position=position,
        leave=True,
        dynamic_ncols=True,
        mininterval=0.5,
        file=sys.stderr,
    )


def write_whole_video(
    name: str, options: AnnotateOptions, header: dict, frames: Iterable[FrameFaces], mean_face
) -> int:
    """A video's outputs written whole from its frames in order (an offline-smoothed run, a
    cluster's merge): when offline, every track smoothed first and the blinks found; every format
    into a staging folder, then moved into place. Returns the last frame's index (-1: none)."""
    if options.smooth == "offline":
        frames = smooth_offline(
            list(frames), mean_face, camera_matrix(header["width"], header["height"], *header["camera"])
        )
    staging = options.out_dir / f".{name}.finishing"
    shutil.rmtree(staging, ignore_errors=True)
    staged = staged_paths(name, options, staging)
    writers, last = [], -1
    try:
        staging.mkdir()
        writers = [WRITERS[fmt](staged[fmt], header) for fmt in FORMATS if fmt in staged]
        for last, timestamp, faces in frames:
            for writer in writers:
                writer.write_frame(last, timestamp, faces)
        for writer in writers:
            writer.close()
        writers = []
        if "blinks" in staged:
            write_blinks(staged["blinks"], blinks(frames))
        move_outputs(name, options, staging)
    finally:
        for writer in writers:
            writer.close()
        shutil.rmtree(staging, ignore_errors=True)
    return last


def _draw_video(path: Path, faces: dict[int, list], video_path: Path, fps: float) -> None:
    """The annotated video of a video whose faces are known for every processed frame."""
    source = VideoSource(path)
    outputs = None
    try:
        frame = source.read()
        if frame is None:
            raise PipnetError(f"{path}: no frame could be decoded")
        outputs = _Outputs({}, {}, 0, video_path, frame.image.shape[1::-1], fps)
        while frame is not None:
            if frame.index in faces:
                outputs.draw(frame, faces[frame.index])
            frame = source.read()
        outputs.close(complete=True)
    finally:
        if outputs is not None:
            outputs.close(complete=False)
        source.close()


def prepare_for_video(landmarker: Landmarker, options: AnnotateOptions) -> None:
    landmarker.set_max_faces(options.max_faces or VIDEO_MAX_FACES)
    landmarker.set_smoothing(SmoothingParams() if options.smooth == "live" else None)


def _start_video(landmarker: Landmarker, options: AnnotateOptions, progress: Progress) -> int:
    """Set the landmarker up for a video; returns the first frame to process. A resumed video
    continues from its newest saved state, and the frames after it are processed again."""
    prepare_for_video(landmarker, options)
    frame, state = progress.latest()
    if state is not None:
        landmarker.restore_video_state(state)
    return frame + 1


def _run(
    source,
    frame,
    landmarker: Landmarker,
    outputs: _Outputs,
    options: AnnotateOptions,
    progress: Progress | None,
    result: FileResult,
    bar,
) -> tuple[int, int]:
    """Every frame of the source from ``frame`` on (``progress`` None: a still); returns how
    many frames were decoded and the index of the last one processed."""
    landmarker.reset(restart_ids=True)
    start, done = result.resumed_from, outputs.done
    replay_from = start if progress is None else _start_video(landmarker, options, progress)
    decoded = last = 0
    while frame is not None:
        decoded += 1
        if frame.index % options.every == 0:
            last = frame.index
            if frame.index < start:
                if frame.index >= replay_from:
                    landmarker.process(frame.image, frame.timestamp)
                outputs.draw(frame, done.get(frame.index, []))
            else:
                faces = (
                    landmarker.process_image(frame.image, options.max_faces)
                    if progress is None
                    else landmarker.process(frame.image, frame.timestamp)
                )
                outputs.write(frame, faces)
                result.frames += 1
                result.faces += len(faces)
                if progress is not None and (frame.index // options.every) % CHECKPOINT_FRAMES == CHECKPOINT_FRAMES - 1:
                    progress.save(frame.index, landmarker.video_state())
        if bar is not None:
            bar.update(1)
        frame = source.read()
    return decoded, last


# The landmarker of a worker process (--jobs N), made once by ``_start_worker``.
_worker: Landmarker | PipnetError | None = None


def _start_worker(options: AnnotateOptions) -> None:
    global _worker
    try:
        _worker = open_landmarker(options)
        util.Finalize(_worker, _worker.close, exitpriority=10)  # workers leave through os._exit
    except PipnetError as exc:
        _worker = exc  # every file of this worker reports it


def _annotate_in_worker(args) -> FileResult:
    if isinstance(_worker, PipnetError):
        return FileResult(args[0], error=str(_worker))
    path, options, name, several, position = args
    return annotate_file(path, options, _worker, name, several, position)


def input_files(inputs: list[str], options: AnnotateOptions) -> tuple[list[Path], dict[Path, str]]:
    """The files of a run (folders expanded) and each one's output name, once the options are
    checked and the output folder is there: what a run on this machine or on a cluster starts from."""
    files = expand(inputs)
    if not files:
        raise PipnetError("no input files")
    bad = [f for f in options.formats if f not in FORMATS]
    if bad:
        raise PipnetError(f"unknown format {bad[0]!r}; choose from {', '.join(FORMATS)}")
    if options.smooth not in SMOOTHING:
        raise PipnetError(f"unknown smoothing {options.smooth!r}; choose from {', '.join(SMOOTHING)}")
    try:
        options.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PipnetError(f"{options.out_dir}: cannot create the output folder ({exc.strerror})") from None
    return files, output_names(files)


def annotate(inputs: list[str], options: AnnotateOptions, jobs: int = 1) -> list[FileResult]:
    """Every input (files, folders), in ``jobs`` processes of this machine (a Dask cluster's:
    ``cluster.annotate_on_cluster``)."""
    files, names = input_files(inputs, options)
    several = len(files) > 1
    if jobs <= 1 or len(files) == 1:
        with open_landmarker(options) as landmarker:
            return [annotate_file(f, options, landmarker, names[f], several) for f in files]
    # Separate processes, each with one landmarker for all its files, sharing the cores.
    per_job = replace(options, threads=max(1, options.threads // jobs))
    work = [(f, per_job, names[f], several, i % jobs) for i, f in enumerate(files)]
    with ProcessPoolExecutor(
        max_workers=jobs, mp_context=get_context("spawn"), initializer=_start_worker, initargs=(per_job,)
    ) as pool:
        return list(pool.map(_annotate_in_worker, work))

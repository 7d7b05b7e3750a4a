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
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from multiprocessing import get_context, util
from pathlib import Path

import cv2

from pipnet_core.base.errors import PipnetError
from pipnet_core.base.records import FrameFaces
from pipnet_core.export.draw import OverlayOptions, draw_faces
from pipnet_core.export.writers import (
    CsvWriter,
    JsonLinesWriter,
    OpenFaceWriter,
    PtsWriter,
    RawTrackWriter,
    export_header,
    read_records,
    video_writer,
    write_blinks,
)
from pipnet_core.io.files import write_file
from pipnet_core.io.frames import ImageSource, VideoSource
from pipnet_core.io.images import DEFAULT_MAX_PIXELS
from pipnet_core.io.media import expand, media_kind
from pipnet_core.io.state_codec import decode_state, encode_state
from pipnet_core.offline.tracks import blinks, smooth_offline
from pipnet_core.pipeline.landmarker import VIDEO_MAX_FACES, Landmarker
from pipnet_core.pipeline.pose import camera_matrix
from pipnet_core.pipeline.smoothing import SmoothingParams

WRITERS = {"csv": CsvWriter, "json": JsonLinesWriter, "pts": PtsWriter, "openface": OpenFaceWriter}
FORMATS = tuple(WRITERS)
SMOOTHING = ("offline", "live", "none")
# The header fields that shape what is written: `--resume` continues only the same input made
# with the same settings.
RESUME_SETTINGS = (
    "source_name",
    "source_bytes",
    "model_sha256",
    "detector",
    "detector_calibration_sha256",
    "every",
    "smoothing",
    "max_faces",
    "formats",
    "camera",
)
# Processed frames between two saved video states: at most this many are run twice on --resume.
CHECKPOINT_FRAMES = 30


@dataclass(frozen=True)
class AnnotateOptions:
    out_dir: Path
    formats: tuple[str, ...] = ("csv",)
    video_out: Path | None = None
    every: int = 1
    max_faces: int | None = None  # None: every face in an image, VIDEO_MAX_FACES in a video
    smooth: str = "offline"  # a video's: offline (whole tracks, no lag), live (the app's filter) or none
    camera: tuple[float | None, float | None, float | None, float | None] = (None, None, None, None)  # fx fy cx cy
    resume: bool = False
    model: str | None = None
    detector: str = "blazeface-both"  # video files come from anywhere: near and far faces
    calibration: Path | None = None  # a detector calibration file of the user's; None: the shipped one
    threads: int = 2
    show_progress: bool = True
    max_pixels: int = DEFAULT_MAX_PIXELS  # images and video frames above it are refused unread


@dataclass
class FileResult:
    path: Path
    frames: int = 0  # frames written this run
    faces: int = 0
    seconds: float = 0.0
    resumed_from: int = 0
    already_complete: bool = False  # --resume found it done: nothing was run
    error: str | None = None  # one line; the file failed or is incomplete
    warning: str | None = None  # one line; something deserves a look (with ``damage``: what is wrong with it)
    damage: str | None = None  # "truncated" or "damaged": a still that decoded only in part is not complete
    outputs: list[Path] = field(default_factory=list)


def output_names(files: list[Path]) -> dict[Path, str]:
    """A distinct output name per input: its stem, or for inputs sharing a stem (``a/clip.mp4``,
    ``b/clip.mp4``, ``a/clip.avi``) folder_stem_suffix, numbered if even that repeats."""
    stems = Counter(path.stem for path in files)
    names: dict[Path, str] = {}
    for path in files:
        name = path.stem if stems[path.stem] == 1 else f"{path.parent.name}_{path.stem}_{path.suffix.lstrip('.')}"
        unique, number = name, 2
        while unique in names.values():
            unique, number = f"{name}_{number}", number + 1
        names[path] = unique
    return names


def output_paths(name: str, options: AnnotateOptions, several: bool, video: bool = True) -> dict[str, Path]:
    """Where a file's outputs go, by kind: the formats, the annotated video, and (kinds that are
    not outputs) the progress file and, for an offline-smoothed video, its working file."""
    out = options.out_dir
    paths = {
        "csv": out / f"{name}.csv",
        "json": out / f"{name}.jsonl",
        "pts": out / f"{name}_pts",
        "openface": out / f"{name}_openface.csv",
    }
    paths = {k: v for k, v in paths.items() if k in options.formats}
    paths["progress"] = out / f"{name}.progress"
    if video:
        paths["raw"] = out / f"{name}.raw.jsonl"  # the working file of offline smoothing
        if options.smooth == "offline":
            paths["blinks"] = out / f"{name}_blinks.csv"
    if options.video_out:
        video = Path(options.video_out)
        paths["video"] = video.with_name(f"{video.stem}_{name}{video.suffix}") if several else video
    return paths


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


def run_settings(path: Path, options: AnnotateOptions, landmarker: Landmarker, frame_size: tuple[int, int]) -> dict:
    """The input and settings an output records, beside the model's sha256 (see ``RESUME_SETTINGS``)."""
    camera = landmarker.camera(frame_size)
    return {
        "source": str(path),
        "source_name": path.name,
        "source_bytes": path.stat().st_size,
        "detector": options.detector,
        **landmarker.calibration.fields(),
        "every": options.every,
        "smoothing": options.smooth,
        "max_faces": options.max_faces,
        "formats": sorted(options.formats),
        "camera": [camera[0, 0], camera[1, 1], camera[0, 2], camera[1, 2]],
    }


def output_files(paths: dict[str, Path]) -> list[Path]:
    return [path for kind, path in paths.items() if kind not in ("progress", "raw")]


def output_tables(paths: dict[str, Path]) -> dict[str, Path]:
    """The landmark tables among a file's paths, by format."""
    return {fmt: path for fmt, path in paths.items() if fmt in WRITERS}


def streamed_tables(paths: dict[str, Path], options: AnnotateOptions) -> dict[str, Path]:
    """The tables written frame by frame while a file runs: the working file of an offline-smoothed
    video, else the outputs themselves."""
    return {"raw": paths["raw"]} if "raw" in paths and options.smooth == "offline" else output_tables(paths)


def _writer(fmt: str):
    return RawTrackWriter if fmt == "raw" else WRITERS[fmt]


def check_settings(tables: dict[str, Path], header: dict) -> dict[str, Path]:
    """The tables that hold records (a table killed before its first frame has nothing to
    continue); refuses, with the setting named, any made with other settings than ``header``'s."""
    present = {fmt: path for fmt, path in tables.items() if _writer(fmt).has_records(path)}
    for fmt, path in present.items():
        written = _writer(fmt).read_header(path)
        if written is None:
            raise PipnetError(
                f"{path}: records no settings to resume with (an older pipnet-live?); run without --resume"
            )
        for key in RESUME_SETTINGS:
            if written.get(key) != header[key]:
                raise PipnetError(
                    f"{path}: cannot resume: made with {key} {written.get(key)!r}, this run has {header[key]!r}"
                )
    return present


def resume_point(tables: dict[str, Path], header: dict) -> int:
    """The first frame that some streamed table of a file lacks (0: start afresh). Refuses tables
    made with other settings, and a format missing from a run that wrote the others (it would be
    half a file)."""
    present = check_settings(tables, header)
    start = min((_writer(fmt).last_complete(path) for fmt, path in present.items()), default=-1) + 1
    missing = [path for fmt, path in tables.items() if fmt not in present]
    if start and missing:
        raise PipnetError(
            f"{missing[0]}: missing while the other outputs go to frame {start}; "
            "run without --resume to write every format from the first frame"
        )
    return start


class Progress:
    """Where a video's run is, in NAME.progress beside its outputs: while unfinished, the
    landmarker's video state after every ``CHECKPOINT_FRAMES``-th processed frame (the last two:
    the newest may be past what every output completed); once complete, the last frame. A
    ``state_codec`` file (no code in it) that records the input and settings it was made with: one
    made with others, or not by this version, is refused in one line."""

    KIND = "annotate progress"

    def __init__(self, path: Path, settings: dict, start: int):
        self.path, self.settings = path, settings
        self.states: dict[int, dict] = {}
        self.complete_at: int | None = None  # the last frame of a finished run
        if not start:
            path.unlink(missing_ok=True)  # an earlier run's states would not belong to this one
            return
        saved = self.read(path, settings)
        if saved is not None:
            self.states = {frame: state for frame, state in saved["states"].items() if frame < start}
            self.complete_at = saved["complete_at"]

    @classmethod
    def read(cls, path: Path, settings: dict) -> dict | None:
        """The saved progress (None: there is none, and the video runs again from its start,
        unwritten); refuses a file that is not this program's or was made with other settings."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise PipnetError(f"{path}: cannot be read ({exc.strerror})") from None
        saved = decode_state(data, cls.KIND, str(path))
        if (
            not isinstance(saved, dict)
            or set(saved) != {"settings", "states", "complete_at"}
            or not isinstance(saved["settings"], dict)
            or not isinstance(saved["states"], dict)
            or not all(isinstance(frame, int) and isinstance(state, dict) for frame, state in saved["states"].items())
            or not isinstance(saved["complete_at"], (int, type(None)))
        ):
            raise PipnetError(f"{path}: a damaged progress file; delete it, or run without --resume")
        for key in RESUME_SETTINGS:
            if saved["settings"].get(key) != settings[key]:
                raise PipnetError(
                    f"{path}: cannot resume: made with {key} {saved['settings'].get(key)!r}, "
                    f"this run has {settings[key]!r}"
                )
        return saved

    @classmethod
    def completed_at(cls, path: Path, settings: dict) -> int | None:
        """The last frame of the finished run this file records; None if it records none."""
        saved = cls.read(path, settings)
        return None if saved is None else saved["complete_at"]

    def latest(self) -> tuple[int, dict | None]:
        """The newest state and its frame (-1 and None when there is none)."""
        frame = max(self.states, default=-1)
        return frame, self.states.get(frame)

    def save(self, frame: int, state: dict) -> None:
        newest = sorted(self.states)[-1:]
        self.states = {f: self.states[f] for f in newest} | {frame: state}
        self._write(None)

    def finish(self, last_frame: int) -> None:
        self.states = {}
        self._write(last_frame)

    def _write(self, complete_at: int | None) -> None:
        document = {"settings": self.settings, "states": self.states, "complete_at": complete_at}
        write_file(self.path, encode_state(self.KIND, document))


def resume_settings(header: dict) -> dict:
    """The header fields an output must share to be continued (``RESUME_SETTINGS``)."""
    return {key: header[key] for key in RESUME_SETTINGS}


def written_whole(paths: dict[str, Path], header: dict) -> bool:
    """Were a video's outputs written whole (offline smoothing, a cluster's merge) and marked
    complete? (A .pts folder may be empty: a video without a face.) Outputs made with other
    settings are refused."""
    outputs = output_tables(paths)
    if Progress.completed_at(paths["progress"], resume_settings(header)) is None or not all(
        path.exists() for path in outputs.values()
    ):
        return False
    check_settings(outputs, header)
    return True


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
                self.writers.append(_writer(fmt)(path, header, start))
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
    source = outputs = bar = None
    try:
        is_image = media_kind(path) == "image"
        source = ImageSource(path, options.max_pixels) if is_image else VideoSource(path, max_pixels=options.max_pixels)
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
        name = name or path.stem
        paths = output_paths(name, options, several, video=not is_image)
        result.outputs = output_files(paths)
        tables = streamed_tables(paths, options)
        offline = "raw" in tables  # outputs written whole at the end, the video drawn then
        start = 0
        if options.resume:
            if offline and written_whole(paths, header):
                paths["raw"].unlink(missing_ok=True)  # a run killed just before it removed its working file
                result.already_complete = True
                return result
            # What another run left beside the tables this one continues (its outputs, or its working
            # file) is not overwritten unasked.
            others = output_tables(paths) | ({"raw": paths["raw"]} if "raw" in paths else {})
            check_settings({kind: path for kind, path in others.items() if kind not in tables}, header)
            start = result.resumed_from = resume_point(tables, header)
        elif "raw" in paths and not offline:
            paths["raw"].unlink(missing_ok=True)  # an offline run's, killed: these settings replace it
        progress = None if is_image else Progress(paths["progress"], resume_settings(header), start)
        if progress is not None and progress.complete_at is not None and start >= progress.complete_at:
            result.already_complete = True
            return result
        fps = source.fps / options.every
        outputs = _Outputs(tables, header, start, None if offline else paths.get("video"), (width, height), fps)
        if options.show_progress:
            from tqdm import tqdm

            bar = tqdm(
                total=source.frame_count or None,
                desc=path.name,
                unit="frame",
                position=position,
                leave=True,
                dynamic_ncols=True,
                mininterval=0.5,
                file=sys.stderr,
            )
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
        if outputs is not None:
            outputs.close(complete=False)  # after a failure; a no-op after success
        if source is not None:
            source.close()
        if bar is not None:
            bar.close()
        result.seconds = time.monotonic() - started
        if result.error:
            result.outputs = [output for output in result.outputs if output.exists()]
    return result


def staged_paths(name: str, options: AnnotateOptions, staging: Path, video: bool = True) -> dict[str, Path]:
    return output_paths(name, replace(options, out_dir=staging), several=False, video=video)


def move_outputs(name: str, options: AnnotateOptions, staging: Path, video: bool = True) -> list[Path]:
    """The finished tables of ``name`` (and its blinks) from ``staging`` into the output folder (a
    .pts folder replaces the old one; a CSV brings its sidecar); returns where they are now."""
    paths = output_paths(name, options, several=False, video=video)
    moved = []
    for kind, source in staged_paths(name, options, staging, video).items():
        if kind not in WRITERS and kind != "blinks" or not source.exists():
            continue
        target = paths[kind]
        if source.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        source.replace(target)
        sidecar = source.with_name(source.name + ".json")
        if sidecar.is_file():
            sidecar.replace(target.with_name(target.name + ".json"))
        moved.append(target)
    return moved


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

"""`pipnet annotate`: landmark tables (and an annotated video) for video and image files."""
from __future__ import annotations

import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path


from .data import IMAGE_SUFFIXES
from .draw import OverlayOptions, draw_faces
from .errors import PipnetError
from .frames import VIDEO_SUFFIXES, ImageSource, VideoSource
from .landmarker import VIDEO_MAX_FACES
from .writers import CsvWriter, JsonLinesWriter, PtsWriter, export_header, read_records, resume_point, video_writer

FORMATS = ("csv", "json", "pts")


@dataclass(frozen=True)
class AnnotateOptions:
    out_dir: Path
    formats: tuple[str, ...] = ("csv",)
    video_out: Path | None = None
    every: int = 1
    max_faces: int | None = None  # None: every face in an image, VIDEO_MAX_FACES in a video
    smooth: bool = True
    resume: bool = False
    model: str | None = None
    detector: str = "mediapipe-both"  # video files come from anywhere: near and far faces
    threads: int = 2
    show_progress: bool = True


@dataclass
class FileResult:
    path: Path
    frames: int = 0  # frames written this run
    faces: int = 0
    seconds: float = 0.0
    resumed_from: int = 0
    error: str | None = None  # one line; the file failed or is incomplete
    warning: str | None = None  # one line; the file is complete but something deserves a look
    outputs: list[Path] = field(default_factory=list)


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files as given, folders as the media files inside them (sorted); order kept, no repeats."""
    found: list[Path] = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES + IMAGE_SUFFIXES)
        else:
            found.append(path)
    return list(dict.fromkeys(found))


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


def output_paths(name: str, options: AnnotateOptions, several: bool) -> dict[str, Path]:
    out = options.out_dir
    paths = {"csv": out / f"{name}.csv", "json": out / f"{name}.jsonl", "pts": out / f"{name}_pts"}
    paths = {k: v for k, v in paths.items() if k in options.formats}
    if options.video_out:
        video = Path(options.video_out)
        paths["video"] = video.with_name(f"{video.stem}_{name}{video.suffix}") if several else video
    return paths


class _Outputs:
    """The writers of one input file; a resumed run appends, after trimming a torn last line."""

    def __init__(self, paths: dict[str, Path], header: dict, resume: bool, video_size: tuple[int, int], fps: float):
        table = paths.get("csv") or paths.get("json")
        self.start = resume_point(table) if resume and table else 0
        append = self.start > 0
        self.done = read_records(table) if append else {}  # earlier frames: redrawn, and the tracks to continue
        self.writers = []
        self.video = None
        if "csv" in paths:
            self.writers.append(CsvWriter(paths["csv"], header, append))
        if "json" in paths:
            self.writers.append(JsonLinesWriter(paths["json"], header, append))
        if "pts" in paths:
            self.writers.append(PtsWriter(paths["pts"]))
        if "video" in paths:
            self.video = video_writer(paths["video"], fps, video_size)

    def write(self, frame, faces) -> None:
        for writer in self.writers:
            writer.write_frame(frame.index, frame.timestamp, faces)
        if self.video is not None:
            self.video.write(draw_faces(frame.image, faces, OverlayOptions()))

    def close(self) -> None:
        for writer in self.writers:
            writer.close()
        if self.video is not None:
            self.video.release()


def annotate_file(path: Path, options: AnnotateOptions, name: str | None = None, several: bool = False,
                  position: int = 0) -> FileResult:
    """One input file, start to end (or from where an interrupted run stopped)."""
    result = FileResult(path)
    started = time.monotonic()
    outputs, bar = None, None
    try:
        is_image = path.suffix.lower() in IMAGE_SUFFIXES
        source = ImageSource(path) if is_image else VideoSource(path)
        landmarker = _landmarker(options, is_image)
        first = source.read()
        if first is None:
            raise PipnetError(f"{path}: no frame could be decoded")
        height, width = first.image.shape[:2]
        header = export_header(landmarker.model, source=str(path), fps=source.fps, width=width, height=height,
                               frame_count=source.frame_count, every=options.every)
        paths = output_paths(name or path.stem, options, several)
        result.outputs = list(paths.values())
        outputs = _Outputs(paths, header, options.resume, (width, height), source.fps / options.every)
        result.resumed_from = outputs.start
        if outputs.start:
            landmarker.resume_tracks(outputs.done, outputs.start)
        if options.show_progress:
            from tqdm import tqdm

            bar = tqdm(total=source.frame_count or None, desc=path.name, unit="frame", position=position,
                       leave=True, dynamic_ncols=True, mininterval=0.5, file=sys.stderr)
        decoded = _run(source, first, landmarker, outputs, options, is_image, result, bar)
        if not is_image and source.frame_count > decoded + 1:
            # The header's count is often wrong (variable frame rate, edited files): not an error, but
            # the user should know in case the file is cut short.
            result.warning = (f"{path}: decoded {decoded} frames where the container announces {source.frame_count}; "
                              "all decodable frames were exported (a truncated file also looks like this)")
    except PipnetError as exc:
        result.error = str(exc)
    except KeyboardInterrupt:
        result.error = f"{path}: interrupted; what was written is complete up to the last frame (--resume continues)"
        raise
    finally:
        if outputs is not None:
            outputs.close()
        if bar is not None:
            bar.close()
        result.seconds = time.monotonic() - started
    return result


def _landmarker(options: AnnotateOptions, is_image: bool):
    from .landmarker import Landmarker

    return Landmarker(options.model, detector=options.detector, still_detector=options.detector,
                      max_faces=options.max_faces or (None if is_image else VIDEO_MAX_FACES),
                      smoothing=options.smooth and not is_image, threads=options.threads)


def _run(source, frame, landmarker, outputs: _Outputs, options: AnnotateOptions, is_image: bool,
         result: FileResult, bar) -> int:
    """Every frame of the source from ``frame`` on; returns how many were decoded."""
    decoded = 0
    while frame is not None:
        decoded += 1
        if frame.index % options.every == 0:
            if frame.index < outputs.start:
                if outputs.video is not None:
                    outputs.video.write(draw_faces(frame.image, outputs.done.get(frame.index, [])))
            else:
                faces = (landmarker.process_image(frame.image, options.max_faces) if is_image
                         else landmarker.process(frame.image, frame.timestamp))
                outputs.write(frame, faces)
                result.frames += 1
                result.faces += len(faces)
        if bar is not None:
            bar.update(1)
        frame = source.read()
    source.close()
    return decoded


def _annotate_one(args) -> FileResult:
    return annotate_file(*args)


def annotate(inputs: list[str], options: AnnotateOptions, jobs: int = 1) -> list[FileResult]:
    files = expand_inputs(inputs)
    if not files:
        raise PipnetError("no input files")
    bad = [f for f in options.formats if f not in FORMATS]
    if bad:
        raise PipnetError(f"unknown format {bad[0]!r}; choose from {', '.join(FORMATS)}")
    try:
        options.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PipnetError(f"{options.out_dir}: cannot create the output folder ({exc.strerror})") from None
    several = len(files) > 1
    names = output_names(files)
    if jobs <= 1 or len(files) == 1:
        return [annotate_file(f, options, names[f], several) for f in files]
    # Separate processes: each has its own ONNX session and detector, sharing the cores.
    per_job = AnnotateOptions(**{**options.__dict__, "threads": max(1, options.threads // jobs)})
    work = [(f, per_job, names[f], several, i % jobs) for i, f in enumerate(files)]
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        return list(pool.map(_annotate_one, work))

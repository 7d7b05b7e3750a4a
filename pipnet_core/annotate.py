"""`pipnet annotate`: landmark tables (and an annotated video) for video and image files."""
from __future__ import annotations

import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import cv2

from .data import IMAGE_SUFFIXES
from .draw import OverlayOptions, draw_faces
from .errors import PipnetError
from .frames import VIDEO_SUFFIXES, ImageSource, VideoSource
from .writers import CsvWriter, JsonLinesWriter, PtsWriter, read_records, resume_point

FORMATS = ("csv", "json", "pts")


@dataclass(frozen=True)
class AnnotateOptions:
    out_dir: Path
    formats: tuple[str, ...] = ("csv",)
    video_out: Path | None = None
    every: int = 1
    max_faces: int = 1
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


def output_paths(path: Path, options: AnnotateOptions, several: bool) -> dict[str, Path]:
    stem, out = path.stem, options.out_dir
    paths = {"csv": out / f"{stem}.csv", "json": out / f"{stem}.jsonl", "pts": out / f"{stem}_pts"}
    paths = {k: v for k, v in paths.items() if k in options.formats}
    if options.video_out:
        video = Path(options.video_out)
        paths["video"] = video.with_name(f"{video.stem}_{stem}{video.suffix}") if several else video
    return paths


def _video_writer(path: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    # .avi: Motion JPEG; anything else: MPEG-4 Part 2 in the given container (.mp4 by default).
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, size)
    if not writer.isOpened():
        raise PipnetError(f"{path}: cannot write a video there")
    return writer


def annotate_file(path: Path, options: AnnotateOptions, several: bool = False, position: int = 0) -> FileResult:
    """One input file, start to end (or from where an interrupted run stopped)."""
    from .landmarker import Landmarker

    result = FileResult(path)
    started = time.monotonic()
    writers, video, bar = [], None, None
    try:
        is_image = path.suffix.lower() in IMAGE_SUFFIXES
        source = ImageSource(path) if is_image else VideoSource(path)
        paths = output_paths(path, options, several)
        result.outputs = list(paths.values())
        resume_table = paths.get("csv") or paths.get("json")
        start = resume_point(resume_table) if options.resume and resume_table else 0
        append = start > 0
        result.resumed_from = start
        landmarker = Landmarker(options.model, detector=options.detector, still_detector=options.detector,
                                max_faces=options.max_faces,
                                smoothing=options.smooth and not is_image, threads=options.threads)
        first = source.read()
        if first is None:
            raise PipnetError(f"{path}: no frame could be decoded")
        height, width = first.image.shape[:2]
        info = landmarker.model.info
        header = {"source": str(path), "model": info.name, "model_version": info.version, "fps": source.fps,
                  "width": width, "height": height, "frame_count": source.frame_count, "every": options.every}
        if "csv" in paths:
            writers.append(CsvWriter(paths["csv"], append))
        if "json" in paths:
            writers.append(JsonLinesWriter(paths["json"], header, append))
        if "pts" in paths:
            writers.append(PtsWriter(paths["pts"]))
        if "video" in paths:
            video = _video_writer(paths["video"], source.fps / options.every, (width, height))
        done_records = read_records(resume_table) if append and video is not None else {}

        if options.show_progress:
            from tqdm import tqdm

            bar = tqdm(total=source.frame_count or None, desc=path.name, unit="frame", position=position,
                       leave=True, dynamic_ncols=True, mininterval=0.5, file=sys.stderr)
        frame = first
        while frame is not None:
            if frame.index % options.every == 0:
                if frame.index < start:
                    if video is not None:
                        video.write(draw_faces(frame.image, done_records.get(frame.index, [])))
                else:
                    faces = (landmarker.process_image(frame.image, options.max_faces) if is_image
                             else landmarker.process(frame.image, frame.timestamp))
                    for writer in writers:
                        writer.write_frame(frame.index, frame.timestamp, faces)
                    if video is not None:
                        video.write(draw_faces(frame.image, faces, OverlayOptions()))
                    result.frames += 1
                    result.faces += len(faces)
            if bar is not None:
                bar.update(1)
            last_index = frame.index
            frame = source.read()
        source.close()
        expected = source.frame_count
        if not is_image and expected and last_index + 1 < expected:
            result.error = f"{path}: video ends early: decoded {last_index + 1} of {expected} frames; exported those"
    except PipnetError as exc:
        result.error = str(exc)
    except KeyboardInterrupt:
        result.error = f"{path}: interrupted; what was written is complete up to the last frame (--resume continues)"
        raise
    finally:
        for writer in writers:
            writer.close()
        if video is not None:
            video.release()
        if bar is not None:
            bar.close()
        result.seconds = time.monotonic() - started
    return result


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
    if jobs <= 1 or len(files) == 1:
        return [annotate_file(f, options, several) for f in files]
    # Separate processes: each has its own ONNX session and detector, sharing the cores.
    per_job = AnnotateOptions(**{**options.__dict__, "threads": max(1, options.threads // jobs)})
    work = [(f, per_job, several, i % jobs) for i, f in enumerate(files)]
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        return list(pool.map(_annotate_one, work))

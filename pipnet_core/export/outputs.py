"""A file's outputs for `pipnet annotate`: the options and result of a run, where each output goes, the
settings every output records, and what `--resume` finds there (the last complete frame, a video's
progress file with the landmarker's saved states)."""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from pipnet_core.base.errors import PipnetError
from pipnet_core.export.writers import CsvWriter, JsonLinesWriter, OpenFaceWriter, PtsWriter, RawTrackWriter
from pipnet_core.io.files import write_file
from pipnet_core.io.images import DEFAULT_MAX_PIXELS
from pipnet_core.io.state_codec import decode_state, encode_state, read_state_file
from pipnet_core.pipeline.landmarker import Landmarker

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


def writer_for(fmt: str):
    return RawTrackWriter if fmt == "raw" else WRITERS[fmt]


def check_settings(tables: dict[str, Path], header: dict) -> dict[str, Path]:
    """The tables that hold records (a table killed before its first frame has nothing to
    continue); refuses, with the setting named, any made with other settings than ``header``'s."""
    present = {fmt: path for fmt, path in tables.items() if writer_for(fmt).has_records(path)}
    for fmt, path in present.items():
        written = writer_for(fmt).read_header(path)
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
    start = min((writer_for(fmt).last_complete(path) for fmt, path in present.items()), default=-1) + 1
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
        data = read_state_file(path)
        if data is None:
            return None
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

"""A training set packed into one file of face crops (`pipnet pack`), for a machine without the
labelled folders (a rented GPU, a cluster node): `pipnet train --archive` then reads it instead of
the folders, with the config's sources, repeats and held-out faces unchanged.

Each face is stored as its picture holds it (not turned upright: training shifts its crops along
the picture's axes, so an archive's draw is then the folder's draw), around its crop box enlarged
by ``margin`` so that training's scale, shift and most of its rotation find real surroundings, at
no more pixels than the model's input (or the teacher's, if larger) needs and no more than the
picture has (a small face is not enlarged). What a strongly rotated crop reaches beyond the margin
is black, as beyond a picture's edge. A crop with no face is stored at the input size. Crops are
WebP (OpenCV encodes and decodes it); the labels are in crop pixels. With a teacher (issue 34's
distillation), its points on every face crop are stored beside the labels.

The split into training and validation faces is made when packing (`sources.load_sources`, the
same seed), and kept: the archive holds both and says which is which.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipnet_core.base.crop import CropBox, crop_matrix, landmark_crop, transform_points, warp
from pipnet_core.base.errors import PipnetError
from pipnet_core.io.images import load_image
from pipnet_core.io.labels import Sample
from pipnet_core.model.interface import LandmarkModel
from pipnet_core.training.batches import Distillation
from pipnet_core.training.config import Config
from pipnet_core.training.sources import NO_FACE, Source, is_negative, load_sources

ARCHIVE_FORMAT = 1
DEFAULT_MARGIN = 1.5
DEFAULT_QUALITY = 80
_KEYS = ("format", "sources", "webp", "offsets", "points", "has_face", "source", "validation")  # and "teacher"


@dataclass
class PackReport:
    path: Path
    crops: int
    faces: int
    size_mib: float
    with_teacher: bool


def _stored_crop(
    image: np.ndarray, points: np.ndarray, crop_scale: float, size: int, margin: float
) -> tuple[np.ndarray, np.ndarray]:
    """A face's crop with margin, in the picture's axes, for crops of ``size`` pixels, and its
    points in that crop's pixels."""
    box = CropBox.around_points(points, crop_scale)
    box = CropBox(box.cx, box.cy, box.side * margin)
    side = int(min(round(size * margin), math.ceil(box.side)))
    matrix = crop_matrix(box, side, 0.0, False)
    return warp(image, matrix, side), transform_points(points, matrix).astype(np.float32)


def _negative_crop(image: np.ndarray, size: int) -> np.ndarray:
    if max(image.shape[:2]) <= size:
        return image
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def _teacher_points(teacher: LandmarkModel, crops: list[np.ndarray], points: list[np.ndarray]):
    """The teacher's points on each stored face crop, cropped from its labels as `pipnet eval` does."""
    size = teacher.info.input_size
    made = [landmark_crop(crop, p, teacher.info.crop_scale, size) for crop, p in zip(crops, points)]
    predicted, _ = teacher.predict(np.stack([c for c, _ in made]))
    return [transform_points(p, cv2.invertAffineTransform(m)).astype(np.float32) for p, (_, m) in zip(predicted, made)]


def pack(
    cfg: Config,
    out: Path,
    data_root: str | None = None,
    margin: float = DEFAULT_MARGIN,
    quality: int = DEFAULT_QUALITY,
    teacher: LandmarkModel | None = None,
    progress: Callable[[int, int], None] | None = None,
    max_mib: float = 0.0,
) -> PackReport:
    """Write every training and validation sample of ``cfg``'s sources into ``out`` (.npz); with
    ``max_mib``, refuse (keeping any old archive) one that comes out larger."""
    if margin < 1 or not 1 <= quality <= 100:
        raise PipnetError("--margin is at least 1 and --quality lies within 1-100")
    if teacher is not None and teacher.info.num_points != cfg.model.num_points:
        raise PipnetError(f"the teacher gives {teacher.info.num_points} points, the config {cfg.model.num_points}")
    sources = load_sources(cfg.data, cfg.train.seed, data_root)
    rows = [(k, s, False) for k, src in enumerate(sources) for s in src.train]
    rows += [(k, s, True) for k, src in enumerate(sources) for s in src.val]
    n = cfg.model.num_points
    # Pixels for the larger of the two inputs: a teacher at 192 sees its faces as sharp as it was trained to.
    size = max(cfg.model.input_size, teacher.info.input_size if teacher is not None else 0)
    encoded, points = [], np.full((len(rows), n, 2), np.nan, np.float32)
    teacher_points = np.full_like(points, np.nan)
    pending: list[tuple[int, np.ndarray, np.ndarray]] = []
    for i, (_, sample, _) in enumerate(rows):
        image = load_image(sample.image_path)
        if is_negative(sample):
            crop = _negative_crop(image, cfg.model.input_size)
        else:
            crop, points[i] = _stored_crop(image, sample.points, cfg.model.crop_scale, size, margin)
            if teacher is not None:
                pending.append((i, crop, points[i]))
        ok, data = cv2.imencode(".webp", crop, [cv2.IMWRITE_WEBP_QUALITY, quality])
        if not ok:
            raise PipnetError(f"{sample.image_path}: the crop could not be encoded as WebP")
        encoded.append(data.reshape(-1))
        if teacher is not None and (len(pending) == 32 or (pending and i == len(rows) - 1)):
            found = _teacher_points(teacher, [c for _, c, _ in pending], [p for _, _, p in pending])
            for (j, _, _), p in zip(pending, found):
                teacher_points[j] = p
            pending = []
        if progress is not None:
            progress(i + 1, len(rows))
    offsets = np.cumsum([0] + [len(e) for e in encoded]).astype(np.int64)
    described = [{"name": s.name, "turned": s.turned} for s in sources]
    arrays = {
        "format": np.array(ARCHIVE_FORMAT),
        "sources": np.array(json.dumps({"sources": described, "config": cfg.to_dict(), "margin": margin})),
        "webp": np.concatenate(encoded) if encoded else np.zeros(0, np.uint8),
        "offsets": offsets,
        "points": points,
        "has_face": np.array([not is_negative(s) for _, s, _ in rows]),
        **({"teacher": teacher_points} if teacher is not None else {}),
        "source": np.array([k for k, _, _ in rows], np.int32),
        "validation": np.array([v for _, _, v in rows]),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    try:  # a kill or a full disk mid-write leaves the old archive, never half a new one
        with open(partial, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        size_mib = partial.stat().st_size / 2**20
        if max_mib and size_mib > max_mib:
            raise PipnetError(f"{out}: {size_mib:.1f} MiB, over --max-mb {max_mib:g}: lower --quality or --margin")
        partial.replace(out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise PipnetError(
            f"{out}: cannot write the archive ({exc.strerror or exc}); the old one, if any, is kept"
        ) from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    faces = int(arrays["has_face"].sum())
    return PackReport(out, len(rows), faces, size_mib, teacher is not None)


@dataclass
class Archive:
    """What `pipnet train --archive` reads: sources whose samples name their crop (``FILE#index``),
    the decoded crops by those names, and each face's teacher points (NaN without a teacher)."""

    sources: list[Source]
    images: dict[Path, np.ndarray]
    teacher: dict[Path, np.ndarray]


def distillation(packed: Archive, cfg: Config) -> Distillation | None:
    """``[distil]``'s share of teacher targets for every training sample of ``packed``; None when off."""
    d = cfg.distil
    if not d.active:
        return None
    names = {s.name for s in packed.sources}
    unknown = [name for name in d.teacher_only if name not in names]
    if unknown:
        raise PipnetError(f"config: [distil] teacher_only names {unknown[0]!r}, not a source")
    shares = [1.0 if src.name in d.teacher_only else d.teacher_share for src in packed.sources for _ in src.train]
    faces = [s for src in packed.sources for s in src.train if not is_negative(s)]
    if any(np.isnan(packed.teacher[s.image_path]).any() for s in faces):
        raise PipnetError("config: [distil] asks for a teacher's points: pack the archive with `pipnet pack --teacher`")
    return Distillation(packed.teacher, shares)


def _check_packed_like(packed: dict, cfg: Config, path: Path) -> None:
    """The settings an archive's crops and split were made for must be ``cfg``'s."""
    settings = (
        ("[model] crop_scale", packed["model"]["crop_scale"], cfg.model.crop_scale),
        ("[model] num_points", packed["model"]["num_points"], cfg.model.num_points),
        ("[data] val_fraction", packed["data"]["val_fraction"], cfg.data.val_fraction),
        ("[data] drop_conflicting", packed["data"]["drop_conflicting"], cfg.data.drop_conflicting),
        ("[train] seed (it splits the faces)", packed["train"]["seed"], cfg.train.seed),
    )
    for what, theirs, ours in settings:
        if theirs != ours:
            raise PipnetError(f"{path}: packed with {what} = {theirs}, the config has {ours}: pack it with this config")
    if packed["model"]["input_size"] < cfg.model.input_size:
        raise PipnetError(
            f"{path}: packed for input {packed['model']['input_size']}, smaller than the config's {cfg.model.input_size}"
        )


def read_archive(path: str | Path, cfg: Config) -> Archive:
    """The archive's sources, in the order and with the repeats of ``cfg``'s ``[data] train``."""
    path = Path(path).expanduser()
    try:
        with np.load(path, allow_pickle=False) as stored:
            missing = [key for key in _KEYS if key not in stored.files]
            if missing:
                raise PipnetError(f"{path}: not a pipnet crop archive (no {missing[0]!r})")
            arrays = {key: stored[key] for key in (*_KEYS, "teacher") if key in stored.files}
    except FileNotFoundError:
        raise PipnetError(f"{path}: archive not found") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:  # a truncated copy is a bad zip
        raise PipnetError(f"{path}: not a pipnet crop archive, or a damaged one ({exc})") from None
    if int(arrays["format"]) != ARCHIVE_FORMAT:
        raise PipnetError(f"{path}: archive format {int(arrays['format'])}, this version reads {ARCHIVE_FORMAT}")
    packed = json.loads(str(arrays["sources"]))
    _check_packed_like(packed["config"], cfg, path)
    described = packed["sources"]
    no_teacher = np.full((cfg.model.num_points, 2), np.nan, np.float32)
    by_name = {d["name"]: k for k, d in enumerate(described)}
    images, teacher, members = {}, {}, {k: ([], []) for k in range(len(described))}
    webp, offsets = arrays["webp"], arrays["offsets"]
    for i, k in enumerate(arrays["source"]):
        name = Path(f"{path}#{i}")
        crop = cv2.imdecode(webp[offsets[i] : offsets[i + 1]], cv2.IMREAD_COLOR)
        if crop is None:
            raise PipnetError(f"{path}: crop {i} is damaged")
        images[name] = crop
        points = arrays["points"][i] if arrays["has_face"][i] else NO_FACE
        members[int(k)][bool(arrays["validation"][i])].append(Sample(name, points))
        if arrays["has_face"][i]:
            teacher[name] = arrays["teacher"][i] if "teacher" in arrays else no_teacher
    sources = []
    for entry in cfg.data.train:
        if entry["path"] not in by_name:
            raise PipnetError(
                f"{path}: holds no source {entry['path']!r} (it holds: {', '.join(by_name)}); pack it with this config"
            )
        k = by_name[entry["path"]]
        train, val = members[k]
        sources.append(
            Source(entry["path"], train, val, float(entry.get("repeat", 1.0)), turned=described[k]["turned"])
        )
    return Archive(sources, images, teacher)

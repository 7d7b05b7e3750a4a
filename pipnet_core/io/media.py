"""The media registry: which files are images, which are videos, decided by their first bytes.

A suffix is a guess (a ``.mp4`` of text, a JPEG named ``.png``, a ``.webp`` or ``.tif`` a suffix list
forgot); the signature at the start of the file is what the decoders themselves look at. Every
place that takes media files uses this module: `pipnet annotate` and `pipnet detect`, folder
expansion, ``frames.open_source`` and the app's open dialogs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pipnet_core.base.errors import PipnetError

MediaKind = Literal["image", "video"]

# Suffixes are only for what has no content to look at yet: the app's open dialogs, and the
# labeled-data readers that pair ``name.jpg`` with ``name.pts``.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pgm", ".ppm", ".pbm", ".pnm")
VIDEO_SUFFIXES = (
    ".mp4",
    ".avi",
    ".mov",
    ".mkv",
    ".webm",
    ".m4v",
    ".mpg",
    ".mpeg",
    ".ts",
    ".mts",
    ".m2ts",
    ".wmv",
    ".flv",
    ".ogv",
    ".3gp",
    ".gif",
    ".y4m",
)

# ISO base media brands that hold a still image (HEIF, AVIF) rather than a movie.
_STILL_BRANDS = {b"avif", b"heic", b"heix", b"mif1", b"msf1"}
_QUICKTIME_ATOMS = {b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}


def _image_signature(head: bytes) -> bool:
    return (
        head.startswith(
            (
                b"\xff\xd8\xff",
                b"\x89PNG\r\n\x1a\n",
                b"II*\x00",
                b"MM\x00*",
                b"\x00\x00\x00\x0cjP  \r\n\x87\n",
                b"\xff\x4f\xff\x51",
            )
        )
        # BMP: "BM", then a DIB header of one of the sizes the format defines.
        or (head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in (12, 40, 52, 56, 64, 108, 124))
        or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
        or (head[4:8] == b"ftyp" and head[8:12] in _STILL_BRANDS)
        or (len(head) > 2 and head[0:1] == b"P" and head[1:2] in b"123456" and head[2:3].isspace())
    )


def _video_signature(head: bytes) -> bool:
    return (
        head[4:8] in _QUICKTIME_ATOMS  # MP4, MOV, M4V, 3GP (an image brand was ruled out first)
        or (head[:4] == b"RIFF" and head[8:12] == b"AVI ")
        or head.startswith(
            (
                b"\x1a\x45\xdf\xa3",  # Matroska, WebM
                b"\x00\x00\x01\xba",
                b"\x00\x00\x01\xb3",  # MPEG program / elementary stream
                b"\x30\x26\xb2\x75\x8e\x66\xcf\x11",  # ASF (WMV)
                b"FLV",
                b"OggS",
                b"GIF87a",
                b"GIF89a",
                b"YUV4MPEG2",
            )
        )
        or (len(head) > 188 and head[0] == head[188] == 0x47)  # MPEG transport stream
        or (len(head) > 196 and head[4] == head[196] == 0x47)
    )  # M2TS (.mts, .m2ts): 4-byte timecode first


def sniff(path: Path) -> MediaKind | None:
    """ "image" or "video" from the file's first bytes; None when it is neither (or unreadable)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(256)
    except OSError:
        return None
    if _image_signature(head):
        return "image"
    if _video_signature(head):
        return "video"
    return None


def media_kind(path: Path) -> MediaKind:
    """What a file the user named is. Content we do not recognise goes to the video decoders,
    which know more containers than this list and say clearly when they cannot open a file."""
    path = Path(path)
    if not path.is_file():
        raise PipnetError(f"{path}: no such file")
    return sniff(path) or "video"


def expand(inputs: list[str | Path], kinds: tuple[MediaKind, ...] = ("image", "video")) -> list[Path]:
    """Files as given, folders as the media files of ``kinds`` inside them (by content, sorted,
    not recursive); order kept, no repeats."""
    found: list[Path] = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_file() and sniff(p) in kinds)
        else:
            found.append(path)
    return list(dict.fromkeys(found))


def dialog_filter(kind: MediaKind) -> str:
    """A Qt file-dialog filter for one kind (the dialog can only go by names)."""
    suffixes = IMAGE_SUFFIXES if kind == "image" else VIDEO_SUFFIXES
    label = "Images" if kind == "image" else "Videos"
    return f"{label} ({' '.join('*' + s for s in suffixes)});;All files (*)"

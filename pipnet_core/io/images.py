"""The one reader of still images: every path that opens a still (`pipnet detect`, `pipnet
annotate`, ``frames.ImageSource`` and so the app, training and evaluation data) comes here.

Two things the decoders do not do on their own:

* **A pixel limit read from the header, before decoding.** A 3.6 MB PNG can announce 60,000 x
  60,000 pixels (10 GB of BGR); OpenCV's own limit (2^30 pixels) lets a 20,000 x 20,000 one through
  at 3.6 GB. The size is read from the file's first bytes here, for every format the registry calls
  an image, and a file above ``max_pixels`` is refused without a pixel decoded.
* **Decoder warnings as one line naming the file.** libjpeg decodes a truncated or damaged JPEG
  and says so only on the process's stderr ("Premature end of JPEG file"). What is written there
  while the decoder runs is caught: the decoders' complaints about the pixels come back with the
  image (a truncated file is reported as truncated, with the rows that really came from the
  file, never as complete); their remarks on harmless metadata are dropped; anything else (another
  thread's output) is passed on to stderr.
"""

from __future__ import annotations

import logging
import os
import struct
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from pipnet_core.base.errors import PipnetError

# The size of a large phone panorama (e.g. 16,000 x 6,000): above it a still is refused unread.
DEFAULT_MAX_PIXELS = 100_000_000
# libjpeg-turbo fills what a truncated file lacks with mid-grey: the rows from the file are those
# above the last row that is not entirely this value.
_JPEG_FILLER = 128

# libjpeg's word for a file that ends before its data does (not "premature end of data segment":
# a damaged stretch inside).
_JPEG_EOF = "Premature end of JPEG file"
# How the decoders' own lines start (libjpeg's messages, libpng's, OpenCV's log), and those of
# them that remark on metadata, not on the pixels (a PNG's colour profile, a JFIF version).
_DECODER_LINES = (
    "libpng ",
    "Corrupt JPEG",
    "Premature end",
    "Invalid ",
    "Unsupported ",
    "Inconsistent ",
    "Bogus ",
    "Warning: ",
    "Not a JPEG",
    "[ WARN",
    "[ERROR",
    "TIFF",
)
_HARMLESS = ("iCCP", "sRGB", "cHRM", "gAMA", "tEXt", "zTXt", "iTXt", "eXIf", "pHYs", "Interlace", "unknown JFIF")

_log = logging.getLogger(__name__)
_stderr_lock = threading.Lock()


@dataclass(frozen=True)
class StillImage:
    """A decoded still: BGR uint8 pixels, and what went wrong while decoding them (one line, or
    None for a clean decode)."""

    image: np.ndarray
    problem: str | None = None
    # "truncated": the file ends before its pixels do (the rest of the image is filler);
    # "damaged": the decoder complained of the data on the way. None: a clean decode.
    damage: str | None = None


def read_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> StillImage:
    """A still image from a file, or a one-line PipnetError naming it (missing, not an image, too
    large, undecodable). A file that decodes only in part comes back with its ``problem``."""
    path = Path(path)
    if not path.is_file():
        raise PipnetError(f"{path}: {'is a folder' if path.is_dir() else 'does not exist'}")
    try:
        with path.open("rb") as handle:
            size = image_size(handle)
    except OSError as exc:
        raise PipnetError(f"{path}: cannot be read ({exc.strerror})") from None
    except ValueError:
        raise PipnetError(f"{path}: damaged: its header gives no image size") from None
    if size is None:
        raise PipnetError(f"{path}: is not an image this program reads (JPEG, PNG, WebP, TIFF, BMP, JPEG 2000, PNM)")
    width, height = size
    if width <= 0 or height <= 0:
        raise PipnetError(f"{path}: its header gives an empty image ({width} x {height})")
    check_pixels(str(path), width, height, max_pixels)
    try:
        image, messages = _decode(path)
    except OSError as exc:  # no temporary file for the decoders' messages, or no stderr to swap
        raise PipnetError(f"{path}: cannot be decoded here ({exc.strerror or exc})") from None
    if image is None:
        detail = f" ({messages[-1]})" if messages else ""
        raise PipnetError(f"{path}: cannot be decoded{detail}")
    if not messages:
        return StillImage(image)
    if any(m.startswith(_JPEG_EOF) for m in messages):
        return StillImage(image, f"{path}: truncated: {_part_from_file(image)}", "truncated")
    return StillImage(image, f"{path}: damaged: {messages[0]} (decoded what could be)", "damaged")


def check_pixels(origin: str, width: int, height: int, max_pixels: int) -> None:
    """Refuses an image or video frame larger than ``max_pixels``, before it is decoded."""
    if width * height > max_pixels:
        raise PipnetError(
            f"{origin}: {width} x {height} pixels is more than the limit of {max_pixels:,} (--max-pixels to raise it)"
        )


def load_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A still's pixels for data sets (training, evaluation, calibration): a damaged file's problem
    goes to the log as one line rather than failing a run over a whole folder."""
    still = read_image(path, max_pixels)
    if still.problem:
        _log.warning(still.problem)
    return still.image


def _decode(path: Path) -> tuple[np.ndarray | None, list[str]]:
    """OpenCV's decode of the file (EXIF orientation applied), with what the decoders printed on
    the process's stderr meanwhile: the lines about its pixels (others are passed on)."""
    with _stderr_lock, tempfile.TemporaryFile() as caught:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(caught.fileno(), 2)
        try:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        except cv2.error as exc:  # an assertion deep in a codec: its last line says which
            image = None
            os.write(2, str(exc).strip().splitlines()[-1].encode() + b"\n")
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        caught.seek(0)
        lines = [line.strip() for line in caught.read(64_000).decode("utf-8", "replace").splitlines() if line.strip()]
    decoders = [line for line in lines if line.startswith(_DECODER_LINES)]
    others = [line for line in lines if not line.startswith(_DECODER_LINES)]
    if others:
        print("\n".join(others), file=sys.stderr)
    return image, [line for line in decoders if not any(word in line for word in _HARMLESS)]


def _part_from_file(image: np.ndarray) -> str:
    """How much of a truncated JPEG's picture came from the file: the rows before the filler its
    decode ends in. The filler lies along whichever edge the file's last rows are shown at once
    the EXIF orientation is applied (the bottom when upright); a progressive file has none."""
    filled_rows = (image == _JPEG_FILLER).all(axis=(1, 2))
    filled_columns = (image == _JPEG_FILLER).all(axis=(0, 2))
    bands = [
        (_run_length(lines), len(lines))
        for lines in (filled_rows[::-1], filled_rows, filled_columns[::-1], filled_columns)
    ]
    band, total = max(bands)
    if not band:
        return "the file ends before its image data does (the rest of the picture is a guess)"
    return f"decoded the first {total - band} of {total} rows"


def _run_length(flags: np.ndarray) -> int:
    """How many leading entries are True."""
    return int(np.argmin(flags)) if not flags.all() else len(flags)


# -- sizes from headers ------------------------------------------------------------------------------


def image_size(handle: BinaryIO) -> tuple[int, int] | None:
    """(width, height) from an image file's header, reading a few bytes (JPEG: its markers up to
    the frame header); None when the format is not one of those read here, a ValueError when the
    header is damaged. Multi-image files (TIFF pages) give their first image, the one decoded."""
    head = handle.read(64)
    readers = (
        (head.startswith(b"\xff\xd8"), _jpeg_size),
        (head.startswith(b"\x89PNG\r\n\x1a\n"), _png_size),
        (head.startswith((b"II*\x00", b"MM\x00*")), _tiff_size),
        (head.startswith(b"BM"), _bmp_size),
        (head[:4] == b"RIFF" and head[8:12] == b"WEBP", _webp_size),
        (head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n"), _jp2_size),
        (head.startswith(b"\xff\x4f\xff\x51"), _j2k_size),
        (head[:1] == b"P" and head[1:2] in (b"1", b"2", b"3", b"4", b"5", b"6") and head[2:3].isspace(), _pnm_size),
        (head.startswith((b"GIF87a", b"GIF89a")), _gif_size),
    )
    for matches, reader in readers:
        if matches:
            handle.seek(0)
            try:
                size = reader(handle)
            except (struct.error, ValueError, IndexError, OSError):  # OSError: a seek before the start
                size = None
            if size is None:
                raise ValueError(f"a damaged {reader.__name__[1:-5]} header")
            return size
    return None


def _jpeg_size(handle: BinaryIO) -> tuple[int, int] | None:
    handle.seek(2)
    # Frame headers: SOF0-SOF15 but DHT (C4), JPG (C8) and DAC (CC).
    frames = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
    for _ in range(10_000):
        byte = handle.read(1)
        if byte != b"\xff":
            return None
        marker = handle.read(1)
        while marker == b"\xff":  # fill bytes
            marker = handle.read(1)
        if not marker or marker[0] in (0xD9, 0xDA):  # end of image, start of scan: no frame header first
            return None
        if 0xD0 <= marker[0] <= 0xD7 or marker[0] == 0x01:  # markers without a length
            continue
        (length,) = struct.unpack(">H", handle.read(2))
        if length < 2:
            return None
        if marker[0] in frames:
            _precision, height, width = struct.unpack(">BHH", handle.read(5))
            return width, height
        handle.seek(length - 2, os.SEEK_CUR)
    return None


def _png_size(handle: BinaryIO) -> tuple[int, int] | None:
    handle.seek(8)
    length, kind, width, height = struct.unpack(">I4sII", handle.read(16))
    return (width, height) if kind == b"IHDR" and length == 13 else None


def _tiff_size(handle: BinaryIO) -> tuple[int, int] | None:
    order = "<" if handle.read(2) == b"II" else ">"
    handle.seek(4)
    (offset,) = struct.unpack(order + "I", handle.read(4))
    handle.seek(offset)
    (count,) = struct.unpack(order + "H", handle.read(2))
    found: dict[int, int] = {}
    for _ in range(min(count, 1000)):
        tag, kind, _n, value = struct.unpack(order + "HHI4s", handle.read(12))
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
            found[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), value[: 2 if kind == 3 else 4])[0]
    return (found[256], found[257]) if len(found) == 2 else None


def _bmp_size(handle: BinaryIO) -> tuple[int, int] | None:
    handle.seek(14)
    (header,) = struct.unpack("<I", handle.read(4))
    if header == 12:  # OS/2 BITMAPCOREHEADER
        width, height = struct.unpack("<HH", handle.read(4))
    else:
        width, height = struct.unpack("<ii", handle.read(8))
    return width, abs(height)  # a negative height: rows stored top-down


def _webp_size(handle: BinaryIO) -> tuple[int, int] | None:
    handle.seek(12)  # past "RIFF", the size and "WEBP" (image_size checked them)
    chunk, _length = struct.unpack("<4sI", handle.read(8))
    data = handle.read(10)
    if chunk == b"VP8 ":  # lossy: a key frame's start code, then 14-bit sizes
        if data[3:6] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack("<HH", data[6:10])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":  # lossless: a signature byte, then 14-bit sizes less one
        if data[0] != 0x2F:
            return None
        bits = int.from_bytes(data[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended (alpha, animation): a 24-bit canvas size less one
        return int.from_bytes(data[4:7], "little") + 1, int.from_bytes(data[7:10], "little") + 1
    return None


def _jp2_size(handle: BinaryIO) -> tuple[int, int] | None:
    """JP2 boxes down to the image header (ihdr inside jp2h)."""
    position, end = 0, os.fstat(handle.fileno()).st_size
    for _ in range(1000):
        handle.seek(position)
        length, kind = struct.unpack(">I4s", handle.read(8))
        if kind == b"jp2h":
            position, end = position + 8, position + length
            continue
        if kind == b"ihdr":
            height, width = struct.unpack(">II", handle.read(8))
            return width, height
        if length < 8 or position + length > end:
            return None
        position += length
    return None


def _j2k_size(handle: BinaryIO) -> tuple[int, int] | None:
    """A raw JPEG 2000 codestream: its SIZ segment, right after the start marker."""
    handle.seek(4)
    _length, _caps, width, height, x0, y0 = struct.unpack(">HHIIII", handle.read(20))
    return width - x0, height - y0


def _gif_size(handle: BinaryIO) -> tuple[int, int] | None:
    """GIF's logical screen, every frame's canvas (the registry calls GIF a video, whose frames
    are held to the same limit)."""
    handle.seek(6)
    return struct.unpack("<HH", handle.read(4))


def _pnm_size(handle: BinaryIO) -> tuple[int, int] | None:
    """PBM, PGM, PPM: "P1".."P6" (image_size checked it), then width and height as text
    (comments start with #)."""
    handle.seek(0)
    text = handle.read(512)
    fields = [line.split(b"#")[0] for line in text[2:].splitlines()]
    numbers = b" ".join(fields).split()
    return int(numbers[0]), int(numbers[1])

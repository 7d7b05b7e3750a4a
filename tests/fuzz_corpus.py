"""Broken and hostile media files, made here from real encodes: what users and attackers leave in
input folders. `tests/test_fuzz_inputs.py` runs a standing corpus of them through every reader;
`tools/fuzz_inputs.py` makes thousands more with other seeds.

Every file is a real encode of a face (OpenCV, Pillow or PyAV, as a camera or an editor would make
it), mutated by seeded bit flips, truncations, random blocks, another format's header or the
wrong suffix; beside them, hand-made edge cases that are valid but unusual (16-bit, CMYK, palette,
animated, EXIF-turned, a frame size that changes mid-stream, no video stream, odd names) and
decompression bombs.
"""

from __future__ import annotations

import io
import os
import re
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from pipnet_core.io.sample_clip import face_photo

SIDE = 128  # small: the corpus runs hundreds of files through the whole pipeline
STILLS = ("jpg", "png", "webp", "tiff", "gif")
VIDEOS = ("mp4", "mov", "avi", "mkv")
# A header of each kind, pasted over another's.
HEADERS = {
    "jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01",
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    "mp4": b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00",
    "avi": b"RIFF\x00\x10\x00\x00AVI LIST",
    "mkv": b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81",
    "gif": b"GIF89a\x80\x00\x80\x00\xf7\x00\x00",
}


def face(side: int = SIDE, shift: int = 0) -> np.ndarray:
    """The sample photo's face, BGR, ``side`` pixels square, moved ``shift`` pixels right."""
    image = cv2.resize(face_photo(), (side, side), interpolation=cv2.INTER_AREA)
    return np.roll(image, shift, axis=1)


def _rgb(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def encode_still(kind: str) -> bytes:
    """A real file of the face in the format ``kind``."""
    from PIL import Image

    if kind in ("jpg", "png", "webp", "tiff"):
        ok, data = cv2.imencode("." + kind, face())
        assert ok
        return data.tobytes()
    if kind == "gif":  # animated: three frames
        buffer = io.BytesIO()
        frames = [Image.fromarray(_rgb(face(shift=s))).convert("P") for s in (0, 3, 6)]
        frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=40, loop=0)
        return buffer.getvalue()
    raise ValueError(kind)


def encode_video(kind: str, frames: int = 6) -> bytes:
    """A real clip of the face moving, as cameras and editors store it: H.264 in MP4, MPEG-4 in
    MOV, Motion JPEG in AVI, VP8 in Matroska."""
    import av

    codec = {"mp4": "libx264", "mov": "mpeg4", "avi": "mjpeg", "mkv": "libvpx"}[kind]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format={"mp4": "mp4", "mov": "mov", "avi": "avi", "mkv": "matroska"}[kind]) as out:
        stream = out.add_stream(codec, rate=Fraction(15))
        stream.width = stream.height = SIDE
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(face(shift=2 * i), format="bgr24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return buffer.getvalue()


def real_files() -> dict[str, bytes]:
    """One real encode per kind (suffix -> bytes)."""
    return {kind: encode_still(kind) for kind in STILLS} | {kind: encode_video(kind) for kind in VIDEOS}


def mutations(data: bytes, kind: str, seed: int, count: int) -> list[tuple[str, str, bytes]]:
    """``count`` seeded mutations of one file: (description, suffix, bytes). The first bytes (the
    headers the decoders go by) are hit as often as the rest."""
    rng = np.random.default_rng(seed)
    made = []
    for n in range(count):
        how = ("flip", "flip-head", "truncate", "block", "zeros", "header", "suffix", "repeat")[n % 8]
        out = bytearray(data)
        suffix = kind
        if how in ("flip", "flip-head"):
            span = min(len(out), 64) if how == "flip-head" else len(out)
            for at in rng.integers(0, span, int(rng.integers(1, 24))):
                out[at] ^= 1 << int(rng.integers(8))
        elif how == "truncate":
            out = out[: int(len(out) * rng.uniform(0.02, 0.98))]
        elif how in ("block", "zeros"):
            length = int(rng.integers(16, max(17, len(out) // 8)))
            at = int(rng.integers(0, max(1, len(out) - length)))
            out[at : at + length] = rng.bytes(length) if how == "block" else bytes(length)
        elif how == "header":
            other = [k for k in HEADERS if k != kind][int(rng.integers(len(HEADERS) - 1))]
            out[: len(HEADERS[other])] = HEADERS[other]
        elif how == "suffix":
            suffix = [k for k in STILLS + VIDEOS if k != kind][int(rng.integers(len(STILLS + VIDEOS) - 1))]
        else:  # a stretch of the file written twice (a copy that went wrong)
            at, length = int(rng.integers(0, len(out))), int(rng.integers(64, 4096))
            out[at:at] = out[at : at + length]
        made.append((f"{kind}-{how}-{seed}-{n}", suffix, bytes(out)))
    return made


def png_bomb(width: int, height: int) -> bytes:
    """A valid PNG of width x height black 1-bit pixels: a few MB that decode to gigabytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\x00" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    rows_at_once = max(1, (1 << 22) // len(row))
    body = b"".join(packer.compress(row * min(rows_at_once, height - done)) for done in range(0, height, rows_at_once))
    body += packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real JPEG whose frame header claims another size (as large as 65,535 a side)."""
    data = bytearray(encode_still("jpg"))
    at = data.index(b"\xff\xc0") + 5
    data[at : at + 4] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_claiming(width: int, height: int) -> bytes:
    """A real GIF whose logical screen (every frame's canvas) claims another size."""
    data = bytearray(encode_still("gif"))
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def edge_cases() -> list[tuple[str, str, bytes | None]]:
    """Valid but unusual files and hand-made traps: (name, suffix, bytes); None bytes: a folder."""
    from PIL import Image

    def pil(image, fmt: str, **options) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        return buffer.getvalue()

    rgb = Image.fromarray(_rgb(face()))
    cases: list[tuple[str, str, bytes | None]] = [
        ("empty", "jpg", b""),
        ("empty-video", "mp4", b""),
        ("text", "jpg", b"not an image at all\n"),
        ("html", "mp4", b"<html><body>404 Not Found</body></html>\n"),
        ("one-pixel", "png", cv2.imencode(".png", face()[:1, :1])[1].tobytes()),
        ("one-pixel", "jpg", cv2.imencode(".jpg", face()[:1, :1])[1].tobytes()),
        ("sixteen-bit", "png", cv2.imencode(".png", face().astype(np.uint16) * 257)[1].tobytes()),
        ("grey", "jpg", cv2.imencode(".jpg", cv2.cvtColor(face(), cv2.COLOR_BGR2GRAY))[1].tobytes()),
        ("with-alpha", "png", cv2.imencode(".png", cv2.cvtColor(face(), cv2.COLOR_BGR2BGRA))[1].tobytes()),
        ("cmyk", "jpg", pil(rgb.convert("CMYK"), "JPEG", quality=90)),
        ("palette", "png", pil(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG")),
        ("single-frame", "gif", pil(rgb.convert("P"), "GIF")),
        (
            "animated",
            "webp",
            pil(rgb, "WEBP", save_all=True, append_images=[rgb.rotate(5), rgb.rotate(10)], duration=40),
        ),
        ("bmp", "bmp", cv2.imencode(".bmp", face())[1].tobytes()),
        ("pnm", "ppm", cv2.imencode(".ppm", face())[1].tobytes()),
        ("multi-page", "tiff", pil(rgb, "TIFF", save_all=True, append_images=[rgb.rotate(90)])),
        ("wide", "png", cv2.imencode(".png", np.zeros((2, 4000, 3), np.uint8))[1].tobytes()),
        ("bomb-60000", "png", png_bomb(60_000, 60_000)),
        ("bomb-20000", "png", png_bomb(20_000, 20_000)),
        ("claims-65535", "jpg", jpeg_claiming(65_535, 65_535)),
        ("claims-65535", "gif", gif_claiming(65_535, 65_535)),
        ("frame-size-changes", "mkv", _video_changing_size()),
        ("audio-only", "mkv", _audio_only()),
        ("folder", "mp4", None),
        ("name with spaces", "jpg", encode_still("jpg")),
        ("visage-é-顔", "png", encode_still("png")),
        ("clip with spaces é", "avi", encode_video("avi")),
    ]
    for orientation in range(1, 9):  # stored turned, the EXIF tag says how to show it
        exif = Image.Exif()
        exif[0x0112] = orientation
        cases.append((f"exif-{orientation}", "jpg", pil(rgb, "JPEG", exif=exif, quality=90)))
    return cases


def _video_changing_size() -> bytes:
    """Motion JPEG in Matroska whose frames go from 128 to 96 pixels a side halfway."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska") as out:
        stream = out.add_stream("mjpeg", rate=Fraction(15))
        stream.width = stream.height = SIDE
        stream.pix_fmt = "yuvj420p"
        small = av.CodecContext.create("mjpeg", "w")
        small.width = small.height = 96
        small.pix_fmt, small.time_base = "yuvj420p", Fraction(1, 15)
        for i in range(6):
            image = face(SIDE if i < 3 else 96, shift=i)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuvj420p")
            frame.pts = i
            for packet in stream.encode(frame) if i < 3 else small.encode(frame):
                packet.stream, packet.pts, packet.dts = stream, i, i
                out.mux(packet)
        out.mux(stream.encode())
    return buffer.getvalue()


def _audio_only() -> bytes:
    """Matroska holding one second of a tone and no video stream."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska") as out:
        stream = out.add_stream("pcm_s16le", rate=8000)
        stream.layout = "mono"
        tone = (np.sin(np.arange(8000) / 8000 * 2 * np.pi * 440) * 8000).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(tone, format="s16", layout="mono")
        frame.sample_rate = 8000
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return buffer.getvalue()


def write_corpus(folder: Path, seed: int = 0, per_kind: int = 30) -> list[Path]:
    """The corpus in ``folder``: ``per_kind`` mutations of each real file, and the edge cases."""
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for kind, data in real_files().items():
        for name, suffix, mutated in mutations(data, kind, seed, per_kind):
            made.append(folder / f"{name}.{suffix}")
            made[-1].write_bytes(mutated)
    for name, suffix, data in edge_cases():
        made.append(folder / f"{name}.{suffix}")
        if data is None:
            made[-1].mkdir(exist_ok=True)
        else:
            made[-1].write_bytes(data)
    return made


# -- running it ---------------------------------------------------------------------------------------

MEMORY_LIMIT = 1.5 * 2**30  # bytes of peak resident memory, any case (the largest process of a run)
RUN_TIMEOUT = 300  # seconds for the whole corpus in one command: a hang on any file ends it
SUMMARY = re.compile(r"^(\d+) of (\d+) (?:images|files) complete((?:, \d+ \w+)*)$")


def run_pipnet(args: list[str], cwd: Path) -> tuple[int, str, str, int]:
    """`pipnet ARGS` in a process of its own: exit code, stdout, stderr and peak resident bytes
    (of it or of any process it waited for: the workers of --jobs)."""
    out, err = cwd / "stdout.txt", cwd / "stderr.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipnet_core", *args],
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
        )
        deadline = time.monotonic() + RUN_TIMEOUT
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise AssertionError(f"pipnet {' '.join(args[:1])} hung on the corpus: killed after {RUN_TIMEOUT} s")
            time.sleep(0.05)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, out.read_text(), err.read_text(), usage.ru_maxrss * 1024


def known_broken(inputs: list[Path]) -> list[Path]:
    """Inputs that no reader may report as complete: cut stills (also a plausible wrong answer's
    blind spot: a reader that took whatever decodes as a whole image)."""
    return [path for path in inputs if re.match(r"(jpg|png|webp|tiff)-truncate-", path.name)]


def check_run(command: str, rc: int, stdout: str, stderr: str, peak: int, inputs: list[Path]) -> Counter:
    """The properties every run over the corpus must have; returns its summary's counts."""
    assert rc in (0, 2), stderr[-2000:]
    assert "Traceback" not in stdout + stderr
    assert peak <= MEMORY_LIMIT, f"peak memory {peak / 2**20:.0f} MB"
    lines = stderr.splitlines()
    stray = [line for line in lines if not line.startswith(f"pipnet {command}: ")]
    assert not stray, f"{len(stray)} lines not ours, e.g. {stray[:3]}"  # a decoder speaking for itself
    *per_file, last = lines
    assert re.fullmatch(rf"pipnet {command}: error: \d+ \w+\(s\) failed or are incomplete", last)
    named = Counter()
    for line in per_file:
        path = next((p for p in inputs if line.split(": ", 2)[2].startswith(f"{p}: ")), None)
        assert path is not None, f"a problem line that names no input: {line}"
        named[path, line.split(": ", 2)[1]] += 1
    assert max(named.values()) == 1, "one line per problem: " + str(named.most_common(1))
    silent = [path for path in known_broken(inputs) if not any(named_path == path for named_path, _ in named)]
    assert not silent, f"broken files reported as complete: {silent[:3]}"
    summary = SUMMARY.fullmatch(stdout.splitlines()[-1])
    assert summary, stdout.splitlines()[-1]
    counts = Counter({what: int(n) for n, what in re.findall(r", (\d+) (\w+)", summary.group(3))})
    errors = sum(kind == "error" for _, kind in named)
    assert counts["failed"] == errors
    assert int(summary.group(1)) == int(summary.group(2)) - sum(counts.values())
    return counts

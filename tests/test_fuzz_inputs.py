"""A standing fuzz corpus (tests/fuzz_corpus.py: 270 seeded mutations of real JPEG, PNG, WebP, TIFF,
GIF, MP4, MOV, AVI and MKV files, and 35 hand-made edge cases) through every reader a user reaches:
`pipnet detect`, `pipnet annotate` (one process and --jobs 2) and the Python API. Each run must end
with exit 0 or 2, one line per problem naming the file, no traceback, no raw decoder message, no
hang and bounded memory; truncated stills are counted as truncated, never as complete."""

import re
import time
from collections import Counter
from pathlib import Path

import pytest
from fuzz_corpus import check_run, encode_still, png_bomb, run_pipnet, write_corpus

from pipnet_core.base.errors import PipnetError
from pipnet_core.io.frames import ImageSource, open_source
from pipnet_core.io.images import read_image
from pipnet_core.io.media import sniff
from pipnet_core.pipeline.landmarker import Landmarker


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[Path]:
    made = write_corpus(tmp_path_factory.mktemp("corpus"))
    assert len(made) >= 300
    return made


def test_the_corpus_through_pipnet_detect(corpus, tmp_path):
    rc, stdout, stderr, peak = run_pipnet(
        ["detect", *map(str, corpus), "--out", str(tmp_path / "out"), "--json"], tmp_path
    )
    counts = check_run("detect", rc, stdout, stderr, peak, corpus)
    truncated = [line for line in stderr.splitlines() if re.match(r"pipnet detect: warning: .*: truncated: ", line)]
    assert counts["truncated"] == len(truncated) >= 4  # counted as truncated, not complete
    assert rc == 2


@pytest.mark.parametrize("jobs", [1, 2])
def test_the_corpus_through_pipnet_annotate(corpus, tmp_path, jobs):
    rc, stdout, stderr, peak = run_pipnet(
        ["annotate", *map(str, corpus), "--out", str(tmp_path / "out"), "--jobs", str(jobs), "--format", "csv,json"],
        tmp_path,
    )
    counts = check_run("annotate", rc, stdout, stderr, peak, corpus)
    assert counts["truncated"] >= 4 and counts["failed"] >= 100
    # The valid edge cases are complete: every one has its result line and no problem line.
    for name in (
        "cmyk.jpg",
        "palette.png",
        "sixteen-bit.png",
        "exif-6.jpg",
        "name with spaces.jpg",
        "visage-é-顔.png",
        "clip with spaces é.avi",
        "frame-size-changes.mkv",
        "multi-page.tiff",
    ):
        assert re.search(rf"/{re.escape(name)}: \d+ frames, [1-9]\d* faces", stdout), name
        assert f"/{name}: " not in stderr, name


def test_the_corpus_through_the_python_api(corpus):
    """read_image + Landmarker.process_image for what the registry calls a still, open_source +
    process for the rest: a PipnetError (one line) or faces, nothing else."""
    outcomes, slowest = Counter(), 0.0
    with Landmarker() as landmarker:
        for path in corpus:
            started = time.monotonic()
            try:
                if sniff(path) == "image":
                    landmarker.process_image(read_image(path).image)
                else:
                    source = open_source(path)
                    try:
                        for _ in range(10):
                            if (frame := source.read()) is None:
                                break
                            landmarker.process(frame.image, frame.timestamp)
                    finally:
                        source.close()
                outcomes["read"] += 1
            except PipnetError as exc:
                assert "\n" not in str(exc) and str(path) in str(exc), str(exc)
                outcomes["refused"] += 1
            slowest = max(slowest, time.monotonic() - started)
    assert outcomes["read"] >= 100 and outcomes["refused"] >= 80, outcomes
    assert slowest < 10, f"a file took {slowest:.1f} s"  # a stall, short of a hang


def test_a_decompression_bomb_is_refused_from_its_header_without_decoding(tmp_path):
    import tracemalloc

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb(60_000, 60_000))  # 0.4 MB that would decode to 10 GB of BGR
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(PipnetError, match=r"bomb.png: 60000 x 60000 pixels is more than the limit of 100,000,000"):
        read_image(bomb)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seconds < 1.0 and peak < 10 * 2**20
    # The limit is the user's to move: a real 1-bit image of 2,000 x 1,500 decodes under the default
    # and is refused under a lower one.
    small = tmp_path / "small.png"
    small.write_bytes(png_bomb(2000, 1500))
    assert read_image(small).image.shape == (1500, 2000, 3)
    with pytest.raises(PipnetError, match="more than the limit of 1,000,000"):
        read_image(small, max_pixels=1_000_000)


def test_a_truncated_jpeg_is_reported_as_truncated_with_the_rows_it_has(tmp_path):
    whole = encode_still("jpg")
    complete, cut = tmp_path / "complete.jpg", tmp_path / "cut.jpg"
    complete.write_bytes(whole)
    cut.write_bytes(whole[: len(whole) // 2])
    assert read_image(complete).problem is None  # the control: a whole file is clean
    still = read_image(cut)
    assert still.damage == "truncated" and still.image.shape == (128, 128, 3)
    rows = int(re.search(r"decoded the first (\d+) of 128 rows", still.problem).group(1))
    assert 20 < rows < 128
    assert not (still.image[rows - 1] == 128).all() and (still.image[rows:] == 128).all()
    source = ImageSource(cut)
    assert source.damage == "truncated" and source.problem == still.problem
    rc, stdout, stderr, _ = run_pipnet(["detect", str(complete), str(cut), "--out", "out"], tmp_path)
    assert rc == 2 and stdout.splitlines()[-1] == "1 of 2 images complete, 1 truncated"
    assert stderr.splitlines()[0] == f"pipnet detect: warning: {still.problem}"

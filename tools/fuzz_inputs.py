"""Fuzz the media readers with many more seeds than the test suite's corpus.

    .venv/bin/python tools/fuzz_inputs.py --seeds 20 --per-kind 60     # 20 x 9 x 60 = 10,800 files

Each seed makes a corpus as tests/fuzz_corpus.py does (seeded mutations of real JPEG, PNG, WebP,
TIFF, GIF, MP4, MOV, AVI and MKV encodes, and the hand-made edge cases), runs it through `pipnet
detect` and `pipnet annotate` (one process and --jobs 2), and checks what the suite checks: exit 0
or 2, one line per problem naming the file, no traceback or raw decoder message, no hang, peak
memory under 1.5 GB. A failing seed's corpus is kept and named, so the file can be found and
turned into a test.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fuzz_corpus import check_run, run_pipnet, write_corpus  # noqa: E402

RUNS = {"detect": ["--json"], "annotate": ["--format", "csv,json"], "annotate --jobs 2": ["--jobs", "2"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="corpora to make and run (default: 10)")
    parser.add_argument("--first-seed", type=int, default=1, help="the suite's corpus is seed 0 (default: 1)")
    parser.add_argument("--per-kind", type=int, default=60, help="mutations of each real file per seed (default: 60)")
    args = parser.parse_args()
    failed = 0
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        failed_before = failed
        folder = Path(tempfile.mkdtemp(prefix=f"pipnet-fuzz-{seed}-"))
        corpus = write_corpus(folder / "corpus", seed, args.per_kind)
        for name, extra in RUNS.items():
            command = name.split()[0]
            started = time.monotonic()
            try:
                rc, stdout, stderr, peak = run_pipnet(
                    [command, *map(str, corpus), "--out", str(folder / "out"), *extra], folder
                )
                counts = check_run(command, rc, stdout, stderr, peak, corpus)
            except AssertionError as exc:
                failed += 1
                print(f"seed {seed}, {name}: FAILED: {str(exc).splitlines()[0]} (corpus kept in {folder})")
                continue
            finally:
                shutil.rmtree(folder / "out", ignore_errors=True)
            print(
                f"seed {seed}, {name}: {len(corpus)} files, exit {rc}, {dict(counts)}, peak {peak / 2**20:.0f} MB, "
                f"{time.monotonic() - started:.1f} s"
            )
        if failed == failed_before:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"{failed} failing run(s)" if failed else "no failures")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

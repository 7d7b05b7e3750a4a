"""The `pipnet` command: one sub-command per job, every user error as a one-line message."""
from __future__ import annotations

import argparse
import sys

from .errors import PipnetError


def _train(args) -> None:
    from .config import Config
    from .train import train

    train(Config.load(args.config), resume=args.resume, data_root=args.data_root, out_dir=args.out)


def _eval(args) -> None:
    from .data import read_labeled
    from .evaluate import evaluate, load_landmark_model, write_reports

    model = load_landmark_model(args.model, args.threads)
    samples = read_labeled(args.data)
    result = evaluate(model, samples, progress=_progress("evaluating"))
    summary = result.summary()
    print(f"{args.data}: {summary['faces']} faces  NME {100 * summary['nme']:.2f}%  "
          f"FR@0.10 {100 * summary['fr@0.10']:.2f}%  AUC@0.10 {summary['auc@0.10']:.4f}")
    write_reports(result, str(args.model), str(args.data), args.csv, args.json, args.plot)


def _export(args) -> None:
    from .export import PARITY_TOLERANCE, export_onnx

    report = export_onnx(args.checkpoint, args.out)
    verdict = "verified" if report.verified else "PARITY FAILED"
    print(f"wrote {report.path} ({report.size_mb:.1f} MB); ONNX Runtime vs torch: largest landmark difference "
          f"{report.max_point_difference:.2e} of the crop (limit {PARITY_TOLERANCE:.0e}): {verdict}")
    if not report.verified:
        raise PipnetError(f"{report.path}: ONNX Runtime disagrees with torch")


def _progress(label: str):
    """A one-line counter on stderr, for loops that are not worth a tqdm dependency at run time."""
    def show(done: int, total: int) -> None:
        print(f"\r{label} {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)
    return show


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipnet", description="68-point facial landmarks with PIPNet.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model from a TOML config")
    p.add_argument("--config", required=True, help="TOML file, e.g. configs/pipnet_mbv2_68.toml")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    p.add_argument("--data-root", help="override [data] root")
    p.add_argument("--out", help="override [train] out_dir")
    p.set_defaults(run=_train)

    p = sub.add_parser("eval", help="NME, FR@0.10 and AUC@0.10 on labeled faces")
    p.add_argument("--model", required=True, help="an .onnx model or a training checkpoint (.pt)")
    p.add_argument("--data", required=True, help="a 300-W folder (images + .pts), a landmark CSV, or a folder with a same-named CSV")
    p.add_argument("--csv", help="write per-face NME here")
    p.add_argument("--json", help="write the summary and per-landmark NME here")
    p.add_argument("--plot", help="write the cumulative error distribution as a PNG here")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default 2)")
    p.set_defaults(run=_eval)

    p = sub.add_parser("export", help="export a checkpoint to ONNX and verify it against torch")
    p.add_argument("--checkpoint", required=True, help="a training checkpoint, e.g. runs/NAME/best.pt")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.set_defaults(run=_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except PipnetError as exc:
        print(f"pipnet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pipnet {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0

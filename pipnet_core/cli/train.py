"""`pipnet train`, `bench-train`, `export` and `quantize`: the commands that need torch (and onnx)."""

from __future__ import annotations

from pathlib import Path

from pipnet_core.base.errors import PipnetError


def _train(args) -> None:
    from pipnet_core.training.config import Config
    from pipnet_core.training.train import train

    cfg = Config.load(args.config, args.set)
    train(cfg, resume=args.resume, data_root=args.data_root, out_dir=args.out, archive=args.archive)


def _export(args) -> None:
    from pipnet_core.training.export import PARITY_TOLERANCE, export_onnx

    report = export_onnx(args.checkpoint, args.out, name=args.name, version=args.version, licence=args.licence)
    verdict = "verified" if report.verified else "PARITY FAILED"
    print(
        f"wrote {report.path} ({report.size_mb:.1f} MB); ONNX Runtime vs torch: largest landmark difference "
        f"{report.max_point_difference:.2e} of the crop (limit {PARITY_TOLERANCE:.0e}): {verdict}"
    )
    if not report.verified:
        raise PipnetError(f"{report.path}: ONNX Runtime disagrees with torch")


def _quantize(args) -> None:
    from pipnet_core.training.config import Config
    from pipnet_core.training.quantize import evenly, int8_path, quantize
    from pipnet_core.training.sources import is_negative, load_sources

    cfg = Config.load(args.config)
    sources = load_sources(cfg.data, cfg.train.seed, args.data_root)
    # Faces only: the crops with no face have no landmark box to crop by.
    faces = [s for src in sources for s in src.train if not is_negative(s)]
    calibration = evenly(faces, args.calibration_faces)
    # Upright faces only: the NME of a profile copy divides by the picture's eye distance, near zero
    # there, so a few copies would outweigh every other face (`pipnet eval --yaw` measures them).
    check = [s for src in sources if not src.turned for s in src.val]
    out = Path(args.out) if args.out else int8_path(Path(args.model))
    report = quantize(Path(args.model), out, calibration, check, args.tolerance / 100, args.threads)
    print(
        f"calibrated on {len(calibration)} training faces of {args.config}; checked on its {report.faces_checked} "
        f"upright validation faces: NME float {100 * report.float_nme:.2f}% -> INT8 {100 * report.int8_nme:.2f}% "
        f"({100 * report.nme_change:+.2f}); {report.float_ms:.2f} -> {report.int8_ms:.2f} ms per face "
        f"({args.threads} threads); {report.size_mb:.1f} MB"
    )
    if report.path is None:
        raise PipnetError(
            f"INT8 model loses {100 * report.nme_change:.2f} NME points, more than the tolerance "
            f"{args.tolerance:.2f}: not written"
        )
    print(f"wrote {report.path}")


def _bench_train(args) -> None:
    from pipnet_core.training.config import Config
    from pipnet_core.training.throughput import bench_training

    cfg = Config.load(args.config)
    if args.input_size:
        cfg.model.input_size = args.input_size
    alone, with_pipeline = bench_training(cfg, args.steps, args.data_root)
    print(
        f"training at input {cfg.model.input_size}, batch {cfg.train.batch_size}, {cfg.train.workers} loader worker(s): "
        f"network alone {alone:.1f} images/s, with the data pipeline {with_pipeline:.1f} images/s "
        f"({100 * with_pipeline / alone:.0f}%)"
    )


def add_commands(sub) -> None:
    p = sub.add_parser("train", help="train a model from a TOML config")
    p.add_argument("--config", required=True, help="TOML file, e.g. configs/pipnet_mbv2_68/1_from_imagenet.toml")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    p.add_argument("--data-root", help="override [data] root")
    p.add_argument("--out", help="override [train] out_dir")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one key of the config, e.g. --set train.lr=1e-3 --set train.epochs=3 (repeatable)",
    )
    p.add_argument(
        "--archive", help="read the config's sources from this crop archive (`pipnet pack`), not their folders"
    )
    p.set_defaults(run=_train)

    p = sub.add_parser("bench-train", help="training images/s: network alone and with the data pipeline")
    p.add_argument("--config", default="configs/pipnet_mbv2_68/1_from_imagenet.toml")
    p.add_argument("--input-size", type=int, help="override [model] input_size, e.g. 256")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--data-root", help="override [data] root")
    p.set_defaults(run=_bench_train)

    p = sub.add_parser("export", help="export a checkpoint to ONNX and verify it against torch")
    p.add_argument("--checkpoint", required=True, help="a training checkpoint, e.g. runs/NAME/best.pt")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--name", help="model name in the metadata (default: the run folder's name)")
    p.add_argument("--version", help="semantic model version in the metadata, e.g. 1.1.0")
    p.add_argument(
        "--licence", default="", help="licence of the weights, for the metadata (follows the training data's)"
    )
    p.set_defaults(run=_export)

    p = sub.add_parser("quantize", help="a statically quantized INT8 twin of an ONNX model, checked against it")
    p.add_argument("--model", required=True, help="the float .onnx model")
    p.add_argument(
        "--config", required=True, help="its training config: training faces calibrate, validation faces check"
    )
    p.add_argument("--out", help="default: MODEL_int8.onnx beside the model (the runtime then prefers it)")
    p.add_argument("--tolerance", type=float, default=0.1, help="largest NME increase allowed, in points (default 0.1)")
    p.add_argument("--calibration-faces", type=int, default=120)
    p.add_argument("--data-root", help="override [data] root")
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(run=_quantize)

"""`pipnet prepare-data` (data made from labelled folders, for training or evaluation: turned faces,
crops with no face) and `pipnet pack` (a config's training data as one file of crops)."""

from __future__ import annotations

from pathlib import Path

from pipnet_core.base.errors import PipnetError
from pipnet_core.cli.options import progress_counter


def _prepare(args) -> None:
    from pipnet_core.io.labels import read_labeled

    tests = [path for path in args.data if "test" in Path(path).name.lower()]
    what = "patches" if args.negatives else "turned copies"
    if tests and not args.for_evaluation:
        raise PipnetError(
            f"{tests[0]}: a test set; {what} of it are for evaluation only: give --for-evaluation, "
            "and never train on the output"
        )
    samples = [s for path in args.data for s in read_labeled(path)]
    purpose = "evaluation" if args.for_evaluation else "training"
    (_prepare_negatives if args.negatives else _prepare_turned)(args, samples, purpose)


def _prepare_turned(args, samples, purpose: str) -> None:
    from pipnet_core.training.prepare import TurnPlan, prepare_turned

    if args.per_face < 1 or not 0 <= args.yaw_range[0] <= args.yaw_range[1] <= 90:
        raise PipnetError("--per-face is at least 1, and --yaw-range MIN MAX lies within 0-90 degrees")
    plan = TurnPlan(args.per_face, tuple(args.yaw_range), args.stratify, args.pitch, args.seed, purpose)
    lifted = prepare_turned(samples, Path(args.out), plan, progress=progress_counter("turning"))
    print(
        f"{len(samples)} faces -> {len(samples) * args.per_face} turned copies in {args.out} (with turns.csv); "
        f"lifted to 3D by Face Mesh: {lifted['face mesh']}, by the generic face: {lifted['generic face']}"
    )


def _prepare_negatives(args, samples, purpose: str) -> None:
    from pipnet_core.training.negatives import NegativePlan, prepare_negatives

    if args.per_image < 1 or args.textures < 0:
        raise PipnetError("--per-image is at least 1, and --textures is a share of 0 or more")
    plan = NegativePlan(args.per_image, args.textures, args.seed, purpose)
    counts = prepare_negatives(samples, Path(args.out), plan, progress=progress_counter("patches"))
    print(
        f"{counts['background']} background patches and {counts['texture']} textures in {args.out} "
        f"(with negatives.csv); {counts['refused by the detector']} placements refused: the detector saw a face"
    )


def _pack(args) -> None:
    from pipnet_core.model.onnx import OnnxLandmarkModel
    from pipnet_core.training.archive import pack
    from pipnet_core.training.config import Config

    teacher = OnnxLandmarkModel(args.teacher) if args.teacher else None
    try:
        report = pack(
            Config.load(args.config),
            Path(args.out),
            args.data_root,
            args.margin,
            args.quality,
            teacher,
            progress=progress_counter("packing"),
            max_mib=args.max_mb,
        )
    finally:
        if teacher is not None:
            teacher.close()
    print(
        f"wrote {report.path}: {report.crops} crops ({report.faces} faces), {report.size_mib:.1f} MiB"
        + (", with the teacher's points" if report.with_teacher else "")
    )


def add_commands(sub) -> None:
    p = sub.add_parser(
        "prepare-data",
        help="turned copies (3/4 and profile views) of labelled faces (needs MediaPipe), or patches with no face "
        "(--negatives), for training or evaluation",
    )
    p.add_argument("--data", nargs="+", required=True, help="labelled folders or CSVs, as `pipnet eval --data`")
    p.add_argument("--out", required=True, help="the folder to write (images, .pts labels, turns.csv)")
    p.add_argument("--per-face", type=int, default=2, help="turned copies of each face (default 2)")
    p.add_argument(
        "--yaw-range",
        type=float,
        nargs=2,
        default=(15.0, 75.0),
        metavar=("MIN", "MAX"),
        help="how far from frontal each copy ends, degrees (default 15 75)",
    )
    p.add_argument(
        "--stratify", action="store_true", help="one copy in each of --per-face equal parts of the range (bins)"
    )
    p.add_argument("--pitch", type=float, default=10.0, help="at most this much pitch either way (default 10)")
    p.add_argument(
        "--negatives", action="store_true", help="patches of the pictures away from every face, and drawn textures"
    )
    p.add_argument("--per-image", type=int, default=2, help="with --negatives: patches of each picture (default 2)")
    p.add_argument(
        "--textures", type=float, default=0.2, help="with --negatives: drawn textures, a share of the patches (0.2)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--for-evaluation", action="store_true", help="allow test sets: the output is for `eval` only")
    p.set_defaults(run=_prepare)

    p = sub.add_parser(
        "pack",
        help="a config's training and validation faces as one file of crops, for `pipnet train --archive` "
        "on a machine without the folders (a GPU)",
    )
    p.add_argument("--config", required=True, help="the training config whose [data] train sources to pack")
    p.add_argument("--out", required=True, help="the archive to write (.npz)")
    p.add_argument("--data-root", help="override [data] root")
    p.add_argument("--margin", type=float, default=1.5, help="stored side / the model's crop side (default 1.5)")
    p.add_argument("--quality", type=int, default=80, help="WebP quality, 1-100 (default 80)")
    p.add_argument("--teacher", help="an ONNX model whose points on every face are stored too (distillation)")
    p.add_argument(
        "--max-mb", type=float, default=0, help="MiB: refuse an archive that comes out larger, keeping the old one"
    )
    p.set_defaults(run=_pack)

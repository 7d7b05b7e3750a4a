"""`pipnet eval`, `calibrate` and `eval-clip`: accuracy on labeled faces and the sample clip."""

from __future__ import annotations

from pathlib import Path

from pipnet_core.base.errors import PipnetError
from pipnet_core.cli.options import add_calibration_option, add_runtime_options, make_landmarker, progress_counter
from pipnet_core.detection.registry import DETECTORS


def _scores(summary: dict) -> str:
    return (
        f"NME {100 * summary['nme']:.2f}%  FR@0.10 {100 * summary['fr@0.10']:.2f}%  AUC@0.10 {summary['auc@0.10']:.4f}"
    )


def _eval(args) -> None:
    from pipnet_core.evaluation.evaluate import evaluate, write_reports
    from pipnet_core.io.labels import conflicting_labels, read_labeled
    from pipnet_core.training.loading import load_landmark_model

    model = load_landmark_model(args.model, args.threads)
    if args.negatives:
        return _eval_negatives(args, model)
    if args.validation_of:
        from pipnet_core.training.config import Config
        from pipnet_core.training.sources import load_sources

        cfg = Config.load(args.validation_of)
        samples = [s for source in load_sources(cfg.data, cfg.train.seed) for s in source.val]
        args.data_paths, args.data = [], f"validation faces of {args.validation_of}"
    else:
        samples = [s for path in args.data for s in read_labeled(path)]
        args.data_paths, args.data = args.data, " + ".join(args.data)
    if args.limit:
        samples = samples[:: max(len(samples) // args.limit, 1)][: args.limit]
    turns = _turns_of(args, samples) if args.yaw else None  # before the evaluation: a missing file says so now
    if args.rotate or args.face_height:
        return _eval_views(args, model, samples)
    if args.roll_error:
        return _eval_roll_errors(args, model, samples)
    if args.detector:
        from pipnet_core.evaluation.evaluate import evaluate_pipeline
        from pipnet_core.pipeline.landmarker import Landmarker

        landmarker = Landmarker(
            model, detector=args.detector, still_detector=args.detector, smoothing=False, calibration=args.calibration
        )
        result = evaluate_pipeline(landmarker, samples, progress=progress_counter("evaluating"))
        if not result.names:
            raise PipnetError("the detector found none of the labeled faces")
        crops = f"crops from the {landmarker.still_detector.name} detector"
        ranking = result.confidence_ranking()
        ranking_line = (
            f"\nreported confidence against NME: Spearman {ranking['spearman']:+.3f}; the 10% least "
            f"confident faces: NME {100 * ranking['least_confident_nme']:.2f}% vs "
            f"{100 * ranking['rest_nme']:.2f}% for the rest ({ranking['ratio']:.2f}x; a perfect ranking "
            f"would give {ranking['perfect_ratio']:.2f}x)"
        )
    else:
        result = evaluate(model, samples, progress=progress_counter("evaluating"))
        crops, ranking_line = "crops from the ground-truth landmark box", ""
    summary = result.summary()
    missed = f" ({summary['missed']} not detected, counted as failures)" if summary["missed"] else ""
    print(f"{args.data}: {summary['faces']} faces{missed}, {crops}\n{_scores(summary)}{ranking_line}")
    conflicting = {path.name for path in conflicting_labels(samples)}
    if conflicting:
        rows = sum(s.image_path.name in conflicting for s in samples)
        kept = result.without(conflicting).summary()
        print(
            f"note: {len(conflicting)} images carry {rows} rows that label the same face differently, so some "
            f"labels belong to another picture; without them ({kept['faces']} faces): {_scores(kept)}"
        )
    if turns is not None:
        _print_yaw_bins(result, samples, turns)
    write_reports(result, str(args.model), str(args.data), args.csv, args.json, args.plot)


def _eval_negatives(args, model) -> None:
    from pipnet_core.evaluation.negatives import evaluate_negatives
    from pipnet_core.io.labels import read_negatives

    if args.detector or args.rotate or args.face_height or args.roll_error or args.yaw:
        raise PipnetError("--negatives shows each patch to the model whole: no detector, view or --yaw options")
    patches = [p for folder in args.negatives for p in read_negatives(Path(folder))]
    if args.limit:
        patches = patches[:: max(len(patches) // args.limit, 1)][: args.limit]
    result = evaluate_negatives(model, patches, progress=progress_counter("patches"))
    print(
        f"{' + '.join(args.negatives)}: {len(patches)} crops with no face; passed as a face: mean confidence "
        f">= {result.threshold:g}\n      kind  patches  passed %  with shape check %  confidence median / p99"
    )
    for row in result.rows():
        print(
            f"{row['kind']:>10}  {row['patches']:7d}  {100 * row['passed']:8.2f}  "
            f"{100 * row['passed_with_shape_check']:18.2f}  {row['median']:17.3f} / {row['p99']:.3f}"
        )


def _turns_of(args, samples) -> dict:
    """What each sample is (``io.labels.TurnedFace``), from its folder's turns.csv."""
    from pipnet_core.io.labels import read_turns

    if args.rotate or args.face_height or args.roll_error:
        raise PipnetError("--yaw scores turned faces as they are: not with --rotate, --face-height or --roll-error")
    if not args.data_paths:
        raise PipnetError("--yaw reads the turns.csv of --data folders made by `pipnet prepare-data`")
    turns = {name: turned for folder in args.data_paths for name, turned in read_turns(Path(folder)).items()}
    unknown = [s.image_path.name for s in samples if s.image_path.name not in turns]
    if unknown:
        raise PipnetError(f"{unknown[0]}: not in the turns.csv of {', '.join(map(str, args.data_paths))}")
    return turns


def _print_yaw_bins(result, samples, turns) -> None:
    from pipnet_core.evaluation.evaluate import by_yaw

    rows = by_yaw(result, samples, turns)
    print(
        "per bin of |yaw| (the line above divides by the picture's eye distance, near zero in profile):\n"
        "   |yaw|  faces  missed  FR@0.10 %   NME % by 3D eye distance: 68 / inner 51   by face box: 68 / inner 51"
    )
    for row in rows:
        print(
            f"{row['bin']:>8}  {row['faces']:5d}  {row['missed']:6d}  {100 * row['failure_rate']:9.2f}"
            f"   {100 * row['eye_68']:21.2f} / {100 * row['eye_51']:5.2f}"
            f"   {100 * row['box_68']:17.2f} / {100 * row['box_51']:5.2f}"
        )
    first = rows[0]["eye_68"]
    print(
        "by eye distance against the 0-30 bin: "
        + ", ".join(f"{row['bin']} {row['eye_68'] / first:.2f}x" for row in rows[1:])
    )


def _eval_roll_errors(args, model, samples) -> None:
    from pipnet_core.evaluation.evaluate import evaluate, landmark_box_crops

    print(f"{args.data}: {len(samples)} faces, one pass from the ground-truth box turned away from upright")
    print("roll error   NME %   FR@0.10 %")
    for error in args.roll_error:
        finder = landmark_box_crops(model.info.crop_scale, model.info.input_size, error)
        summary = evaluate(model, samples, finder, progress=progress_counter(f"{error:g} deg")).summary()
        print(f"{error:6g} deg  {100 * summary['nme']:6.2f}  {100 * summary['fr@0.10']:9.2f}")


def _eval_views(args, model, samples) -> None:
    """The still-image pipeline on turned pictures (--rotate) or small faces in a large frame
    (--face-height): one table row per angle or height."""

    import numpy as np

    from pipnet_core.evaluation.evaluate import evaluate_pipeline, rotated_view, small_face_view
    from pipnet_core.pipeline.landmarker import Landmarker

    detector = args.detector or "blazeface-both"
    landmarker = Landmarker(
        model, detector=detector, still_detector=detector, smoothing=False, calibration=args.calibration
    )
    if args.rotate:
        label, views = "rotation", [(f"{a:g} deg", rotated_view(a)) for a in args.rotate]
    else:
        label, views = "landmark box height", [(f"{h:g} px", small_face_view(h)) for h in args.face_height]
    print(f"{args.data}: {len(samples)} faces per row, {landmarker.still_detector.name} detector, whole still pipeline")
    print(f"{label:>20}  found %   NME %   FR@0.10 %")
    rows = []
    for name, view in views:
        result = evaluate_pipeline(landmarker, samples, view, progress=progress_counter(name))
        summary = result.summary()
        rows.append(
            {"view": name, "found": result.found_fraction, **{k: summary[k] for k in ("nme", "fr@0.10", "auc@0.10")}}
        )
        print(
            f"{name:>20}  {100 * result.found_fraction:7.1f}  {100 * summary['nme']:6.2f}  {100 * summary['fr@0.10']:9.2f}"
        )
    worst = max(rows, key=lambda r: r["nme"] if np.isfinite(r["nme"]) else np.inf)
    print(f"worst row: {worst['view']} (NME {100 * worst['nme']:.2f}%, found {100 * worst['found']:.1f}%)")
    if args.json:
        from pipnet_core.io.files import write_json

        write_json(Path(args.json), {"model": str(args.model), "data": str(args.data), "rows": rows})


def _eval_clip(args) -> None:
    from pipnet_core.evaluation.evaluate import evaluate_clip
    from pipnet_core.io.sample_clip import ClipSpec

    with make_landmarker(args, max_faces=1) as landmarker:
        frames = int(round(args.seconds * 30))
        if args.turn is not None:
            return _eval_turning_clip(landmarker, args.turn, frames)
        results = {}
        for roll_speed in (args.roll_speed, 0.0):
            results[roll_speed] = evaluate_clip(landmarker, ClipSpec(frames=frames, roll_speed=roll_speed))
            print(f"sample clip, {frames} frames at 30 fps, rolling {roll_speed:g} deg/s: {results[roll_speed].line()}")
        ratio = results[args.roll_speed].nme.mean() / results[0.0].nme.mean()
        print(f"mean NME rolling / still: {ratio:.2f}x")


def _eval_turning_clip(landmarker, max_yaw: float, frames: int) -> None:
    from pipnet_core.evaluation.evaluate import track_clip
    from pipnet_core.io.sample_clip import face_photo
    from pipnet_core.training.turning import lift, turning_clip

    if not 0 < max_yaw <= 90:
        raise PipnetError("--turn MAX_YAW lies within 0-90 degrees")
    photo = face_photo()
    reference = landmarker.process_image(photo)
    if not reference:
        raise PipnetError("no face found in the sample photo")
    face = lift(photo, reference[0].points, _face_mesh_of(photo))
    clip = ((frame, t, labels, face.eye_distance) for frame, t, labels in turning_clip(face, max_yaw, frames))
    result = track_clip(landmarker, clip)
    print(
        f"sample photo lifted by the {face.lifted_by}, turned to +-{max_yaw:g} degrees of yaw and back, {frames} "
        f"frames at 30 fps (NME by the 3D eye distance): {result.line()}"
    )


def _face_mesh_of(photo):
    """Face Mesh's 3D points of the photo's face, as `prepare-data` lifts faces; None without MediaPipe
    (the generic face then, whose profile views look less like a head)."""
    try:
        from pipnet_core.evaluation.face_mesh import FaceMesh

        with FaceMesh(stills=True) as mesh:
            return mesh.meshes_3d(photo)[0]
    except PipnetError:  # MediaPipe absent
        return None


def _calibrate(args) -> None:
    from pipnet_core.detection.calibration import calibrate, save_calibration
    from pipnet_core.detection.registry import create_detector
    from pipnet_core.io.labels import read_labeled

    samples = [s for path in args.data for s in read_labeled(path)]
    with create_detector(args.detector) as detector:
        fitted = calibrate(detector, samples, progress=progress_counter("detecting"))
    save_calibration({source: calibration for source, (calibration, _) in fitted.items()}, args.out)
    for source, (calibration, matched) in fitted.items():
        print(f"{source}: fitted on {matched}/{len(samples)} faces: {calibration}")
    print(f"saved to {args.out}; other commands use it with --calibration {args.out}")


def add_commands(sub) -> None:
    _add_eval(sub)
    _add_calibrate(sub)
    _add_eval_clip(sub)


def _add_eval_data(p) -> None:
    """What `pipnet eval` scores: labelled faces, a config's validation faces, or crops with no face."""
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument(
        "--data",
        nargs="+",
        help="300-W folders (images + .pts), landmark CSVs, or folders with a "
        "same-named CSV; several are scored as one set",
    )
    data.add_argument(
        "--negatives",
        nargs="+",
        metavar="FOLDER",
        help="folders of crops with no face (`pipnet prepare-data --negatives`): the share taken for a face",
    )
    data.add_argument(
        "--validation-of",
        metavar="CONFIG",
        help="the faces a training config holds out for validation (for choices; test sets only report)",
    )


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="NME, FR@0.10 and AUC@0.10 on labeled faces")
    p.add_argument("--model", required=True, help="an .onnx model or a training checkpoint (.pt)")
    _add_eval_data(p)
    p.add_argument("--csv", help="write per-face NME here")
    p.add_argument("--json", help="write the summary and per-landmark NME here")
    p.add_argument("--plot", help="write the cumulative error distribution as a PNG here")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default 2)")
    p.add_argument(
        "--detector",
        choices=DETECTORS,
        help="start from this face detector's boxes instead of the ground-truth landmark box",
    )
    add_calibration_option(p)
    views = p.add_mutually_exclusive_group()
    views.add_argument(
        "--rotate",
        type=float,
        nargs="+",
        metavar="DEG",
        help="turn each whole picture by these angles (clockwise, degrees) and run the still "
        "pipeline (detector default blazeface-both); found rate and NME per angle",
    )
    views.add_argument(
        "--face-height",
        type=float,
        nargs="+",
        metavar="PX",
        help="scale each face to this landmark-box height in a 1280x720 frame; found rate and NME per height",
    )
    views.add_argument(
        "--roll-error",
        type=float,
        nargs="+",
        metavar="DEG",
        help="one pass from the ground-truth box turned this far from upright: how far off a first crop's roll may be",
    )
    p.add_argument("--limit", type=int, help="evaluate an evenly spread subset of this many faces")
    p.add_argument(
        "--yaw",
        action="store_true",
        help="also NME per yaw bin (0-30, 30-60, 60-90 degrees) of folders made by `pipnet prepare-data`: by "
        "the eye distance and by the face box, all 68 points and the inner 51",
    )
    p.set_defaults(run=_eval)


def _add_calibrate(sub) -> None:
    p = sub.add_parser("calibrate", help="fit a detector's box -> model crop mapping on labeled training faces")
    p.add_argument("--data", required=True, nargs="+", help="labeled folders or CSVs (training data, never test sets)")
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        help="the calibration file to write (other commands read it "
        "with --calibration; an existing file keeps its other detectors' mappings)",
    )
    p.add_argument(
        "--detector",
        default="blazeface-both",
        choices=DETECTORS,
        help="blazeface-both (default) fits both BlazeFace ranges",
    )
    p.set_defaults(run=_calibrate)


def _add_eval_clip(sub) -> None:
    p = sub.add_parser(
        "eval-clip", help="the video pipeline on the sample clip with its head rolling through 360 degrees"
    )
    p.add_argument(
        "--roll-speed", type=float, default=36.0, help="degrees per second (default 36: a full turn in 10 s)"
    )
    p.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10)")
    p.add_argument(
        "--turn",
        type=float,
        metavar="MAX_YAW",
        help="instead: the photo's face turning to MAX_YAW degrees either way and back (3/4 and profile views)",
    )
    add_runtime_options(p)
    p.set_defaults(run=_eval_clip)

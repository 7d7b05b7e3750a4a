"""The `pipnet` command: one sub-command per job, every user error as a one-line message."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from contextlib import nullcontext
from pathlib import Path

from pipnet_core.base.errors import PipnetError
from pipnet_core.detection.registry import DETECTORS

# Installed by requirements/dev.txt only: the runtime (app, detect, annotate, bench) never needs them.
TRAINING_MODULES = {"torch", "onnx"}


def _train(args) -> None:
    from pipnet_core.training.config import Config
    from pipnet_core.training.train import train

    train(Config.load(args.config), resume=args.resume, data_root=args.data_root, out_dir=args.out)


def _scores(summary: dict) -> str:
    return (
        f"NME {100 * summary['nme']:.2f}%  FR@0.10 {100 * summary['fr@0.10']:.2f}%  AUC@0.10 {summary['auc@0.10']:.4f}"
    )


def _eval(args) -> None:
    from pipnet_core.evaluation.evaluate import evaluate, write_reports
    from pipnet_core.io.labels import conflicting_labels, read_labeled
    from pipnet_core.training.loading import load_landmark_model

    model = load_landmark_model(args.model, args.threads)
    if args.validation_of:
        from pipnet_core.training.config import Config
        from pipnet_core.training.sources import load_sources

        cfg = Config.load(args.validation_of)
        samples = [s for source in load_sources(cfg.data, cfg.train.seed) for s in source.val]
        args.data = f"validation faces of {args.validation_of}"
    else:
        samples = [s for path in args.data for s in read_labeled(path)]
        args.data = " + ".join(args.data)
    if args.limit:
        samples = samples[:: max(len(samples) // args.limit, 1)][: args.limit]
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
        result = evaluate_pipeline(landmarker, samples, progress=_progress("evaluating"))
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
        result = evaluate(model, samples, progress=_progress("evaluating"))
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
    write_reports(result, str(args.model), str(args.data), args.csv, args.json, args.plot)


def _eval_roll_errors(args, model, samples) -> None:
    from pipnet_core.evaluation.evaluate import evaluate, landmark_box_crops

    print(f"{args.data}: {len(samples)} faces, one pass from the ground-truth box turned away from upright")
    print("roll error   NME %   FR@0.10 %")
    for error in args.roll_error:
        finder = landmark_box_crops(model.info.crop_scale, model.info.input_size, error)
        summary = evaluate(model, samples, finder, progress=_progress(f"{error:g} deg")).summary()
        print(f"{error:6g} deg  {100 * summary['nme']:6.2f}  {100 * summary['fr@0.10']:9.2f}")


def _eval_views(args, model, samples) -> None:
    """The still-image pipeline on turned pictures (--rotate) or small faces in a large frame
    (--face-height): one table row per angle or height."""
    import json

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
        result = evaluate_pipeline(landmarker, samples, view, progress=_progress(name))
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
        Path(args.json).write_text(
            json.dumps({"model": str(args.model), "data": str(args.data), "rows": rows}, indent=2)
        )


def _eval_clip(args) -> None:
    from pipnet_core.evaluation.evaluate import evaluate_clip
    from pipnet_core.io.sample_clip import ClipSpec

    with _landmarker(args, max_faces=1) as landmarker:
        frames = int(round(args.seconds * 30))
        results = {}
        for roll_speed in (args.roll_speed, 0.0):
            results[roll_speed] = evaluate_clip(landmarker, ClipSpec(frames=frames, roll_speed=roll_speed))
            print(f"sample clip, {frames} frames at 30 fps, rolling {roll_speed:g} deg/s: {results[roll_speed].line()}")
        ratio = results[args.roll_speed].nme.mean() / results[0.0].nme.mean()
        print(f"mean NME rolling / still: {ratio:.2f}x")


def _calibrate(args) -> None:
    from pipnet_core.detection.calibration import calibrate, save_calibration
    from pipnet_core.detection.registry import create_detector
    from pipnet_core.io.labels import read_labeled

    samples = [s for path in args.data for s in read_labeled(path)]
    with create_detector(args.detector) as detector:
        fitted = calibrate(detector, samples, progress=_progress("detecting"))
    save_calibration({source: calibration for source, (calibration, _) in fitted.items()}, args.out)
    for source, (calibration, matched) in fitted.items():
        print(f"{source}: fitted on {matched}/{len(samples)} faces: {calibration}")
    print(f"saved to {args.out}; other commands use it with --calibration {args.out}")


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
    from pipnet_core.training.sources import load_sources

    cfg = Config.load(args.config)
    sources = load_sources(cfg.data, cfg.train.seed, args.data_root)
    calibration = evenly([s for src in sources for s in src.train], args.calibration_faces)
    check = [s for src in sources for s in src.val]
    out = Path(args.out) if args.out else int8_path(Path(args.model))
    report = quantize(Path(args.model), out, calibration, check, args.tolerance / 100, args.threads)
    print(
        f"calibrated on {len(calibration)} training faces of {args.config}; checked on its {report.faces_checked} "
        f"validation faces: NME float {100 * report.float_nme:.2f}% -> INT8 {100 * report.int8_nme:.2f}% "
        f"({100 * report.nme_change:+.2f}); {report.float_ms:.2f} -> {report.int8_ms:.2f} ms per face "
        f"({args.threads} threads); {report.size_mb:.1f} MB"
    )
    if report.path is None:
        raise PipnetError(
            f"INT8 model loses {100 * report.nme_change:.2f} NME points, more than the tolerance "
            f"{args.tolerance:.2f}: not written"
        )
    print(f"wrote {report.path}")


def _landmarker(args, **overrides):
    from pipnet_core.pipeline.landmarker import Landmarker

    options = dict(model=args.model, detector=args.detector, threads=args.threads, calibration=args.calibration)
    options.update(overrides)
    return Landmarker(**options)


def _detect(args) -> None:
    from pipnet_core.export.annotate import output_names
    from pipnet_core.io.media import expand

    images = expand(args.images, kinds=("image",))
    if not images:
        raise PipnetError("no images found in " + ", ".join(args.images))
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PipnetError(f"{out}: cannot create the output folder ({exc.strerror})") from None
    names = output_names(images)
    problems: Counter[str] = Counter()  # failed, truncated, damaged: images not complete
    with _landmarker(args, smoothing=False, still_detector=args.detector) as landmarker:
        for path in images:
            try:
                count, written, damage = _detect_one(landmarker, path, out / names[path], args)
                print(
                    f"{path}: {count} face(s)"
                    + ("" if count else " (no face found)")
                    + " -> "
                    + ", ".join(str(w) for w in written)
                )
                if damage:
                    problems[damage] += 1
            except PipnetError as exc:
                problems["failed"] += 1
                print(f"pipnet detect: error: {exc}", file=sys.stderr)
    print(summary_line(len(images), problems, "images"))
    if problems:
        raise PipnetError(f"{sum(problems.values())} image(s) failed or are incomplete")


def summary_line(total: int, problems: Counter[str], kind: str) -> str:
    """ "3 of 5 images complete, 1 truncated, 1 failed": what is not complete, by what went wrong."""
    counts = "".join(f", {count} {what}" for what, count in sorted(problems.items()))
    return f"{total - sum(problems.values())} of {total} {kind} complete{counts}"


def _detect_one(landmarker, path, out_stem, args) -> tuple[int, list, str | None]:
    """One image: its annotated PNG (and JSON); returns the face count, the files written and the
    image's damage (None, "truncated" or "damaged": its problem is printed as a warning)."""
    import cv2

    from pipnet_core.export.draw import OverlayOptions, draw_faces
    from pipnet_core.export.writers import face_to_dict
    from pipnet_core.io.files import write_image, write_json
    from pipnet_core.io.images import read_image
    from pipnet_core.io.media import sniff

    if sniff(path) == "video":
        raise PipnetError(f"{path}: is a video; `pipnet annotate` takes videos")
    still = read_image(path, args.max_pixels)
    if still.problem:
        print(f"pipnet detect: warning: {still.problem}", file=sys.stderr)
    image = still.image
    landmarker.reset(restart_ids=True)
    try:
        faces = landmarker.process_image(image, args.max_faces)
    except cv2.error as exc:
        raise PipnetError(f"{path}: cannot be processed ({str(exc).strip().splitlines()[-1][:120]})") from None
    drawn = out_stem.with_name(out_stem.name + "_landmarks.png")
    write_image(drawn, draw_faces(image, faces, OverlayOptions(pose_axes=True)))
    written = [drawn]
    if args.json:
        written.append(out_stem.with_name(out_stem.name + ".json"))
        write_json(
            written[-1],
            {
                "image": str(path),
                "width": image.shape[1],
                "height": image.shape[0],
                "faces": [face_to_dict(f) for f in faces],
            },
        )
    return len(faces), written, still.damage


def _live(args) -> None:
    from pipnet_core.stream.command import run_live

    run_live(args)


def _annotate(args) -> None:
    from pipnet_core.export.annotate import AnnotateOptions, annotate

    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    if any(focal is not None and focal <= 0 for focal in (args.fx, args.fy)):
        raise PipnetError("--fx and --fy are focal lengths in pixels: give positive numbers")
    options = AnnotateOptions(
        Path(args.out),
        formats,
        Path(args.video_out) if args.video_out else None,
        max(args.every, 1),
        args.max_faces,
        args.smooth,
        (args.fx, args.fy, args.cx, args.cy),
        args.resume,
        args.model,
        args.detector,
        args.calibration,
        args.threads,
        show_progress=sys.stderr.isatty(),
        max_pixels=args.max_pixels,
    )
    if args.scheduler:
        from pipnet_core.export.cluster import (
            DEFAULT_CHUNK_SECONDS,
            DEFAULT_OVERLAP_SECONDS,
            ClusterOptions,
            annotate_on_cluster,
        )

        chunk = DEFAULT_CHUNK_SECONDS if args.chunk_seconds is None else args.chunk_seconds
        overlap = DEFAULT_OVERLAP_SECONDS if args.chunk_overlap is None else args.chunk_overlap
        results = annotate_on_cluster(
            args.inputs, options, ClusterOptions(args.scheduler, max(chunk, 0.0), max(overlap, 0.0))
        )
    elif args.chunk_seconds is not None or args.chunk_overlap is not None:
        raise PipnetError(
            "--chunk-seconds and --chunk-overlap split videos between the workers of --scheduler; give one"
        )
    else:
        results = annotate(args.inputs, options, args.jobs)
    problems: Counter[str] = Counter()  # failed, truncated, damaged: files not complete
    for r in results:
        if r.error:
            problems["failed"] += 1
            print(f"pipnet annotate: error: {r.error}", file=sys.stderr)
        elif r.damage:
            problems[r.damage] += 1
        if r.warning:
            print(f"pipnet annotate: warning: {r.warning}", file=sys.stderr)
        if r.already_complete:
            print(f"{r.path}: already complete -> " + ", ".join(str(o) for o in r.outputs))
        elif r.frames or not r.error:
            resumed = f", resumed at frame {r.resumed_from}" if r.resumed_from else ""
            fps = r.frames / r.seconds if r.seconds else 0.0
            print(
                f"{r.path}: {r.frames} frames, {r.faces} faces, {fps:.1f} FPS{resumed} -> "
                + ", ".join(str(o) for o in r.outputs)
            )
    print(summary_line(len(results), problems, "files"))
    if problems:
        raise PipnetError(f"{sum(problems.values())} file(s) failed or are incomplete")


def _bench(args) -> None:
    from pipnet_core.evaluation.bench import (
        FaceMeshRival,
        bench_detectors,
        bench_dlib,
        bench_mediapipe_detectors,
        bench_model,
        bench_new_face,
        bench_pipeline,
        load_frames,
    )

    with _landmarker(args, max_faces=max(args.faces)) as landmarker:
        info = landmarker.model.info
        print(
            f"model {info.name} ({info.backbone}, input {info.input_size}), {args.threads} threads, "
            f"detector {landmarker.detector.name}"
        )
        decode = ", with the decode in its graph" if getattr(landmarker.model, "decodes_in_graph", False) else ""
        print(f"landmark network alone{decode}: {bench_model(landmarker):.2f} ms per face")
        first = load_frames(args.video, 1, 1)
        if not first:
            raise PipnetError(f"{args.video}: no frames could be read")
        import cv2

        for turn, name in ((None, "upright"), (cv2.ROTATE_180, "upside down")):
            ms, confidence = bench_new_face(landmarker, first[0] if turn is None else cv2.rotate(first[0], turn))
            found = f"confidence {confidence:.2f}" if confidence else "no face found"
            print(f"a new face, {name}: {ms:.1f} ms for its first frame ({found})")
        detectors = bench_detectors(first[0])
        print(
            f"face detectors alone, {first[0].shape[1]}x{first[0].shape[0]} (ms per frame; quarter turns: the "
            "still-image search without tiles): " + ", ".join(f"{name} {ms:.2f}" for name, ms in detectors.items())
        )
        try:
            theirs = bench_mediapipe_detectors(first[0])
            print(
                "MediaPipe's own BlazeFace on the same frame (ms): "
                + ", ".join(f"{name} {ms:.2f}" for name, ms in theirs.items())
            )
        except PipnetError as exc:
            print(f"MediaPipe's own BlazeFace: not compared ({exc})")
        for faces in args.faces:
            frames = load_frames(args.video, faces, args.frames)
            if not frames:
                raise PipnetError(f"{args.video}: no frames could be read")
            landmarker.set_max_faces(faces)
            label = f"{len(frames[0][0])}x{len(frames[0])} {'video' if args.video else 'sample clip'}, {faces} face(s)"
            mesh = None
            if args.compare:
                try:
                    mesh = FaceMeshRival(frames, faces)
                except PipnetError as exc:
                    print(f"  MediaPipe Face Mesh: not compared ({exc})")
            with mesh or nullcontext():
                result = bench_pipeline(landmarker, frames, args.frames, label, rival=mesh)
            print(result.line())
            if result.memory_mb:
                trace = ", ".join(f"{n}: {mb:.0f}" for n, mb in result.memory_mb)
                print(f"  resident memory (frame: MB): {trace}")
            rivals = [("MediaPipe Face Mesh", mesh.fps if mesh else None, "in turns with ours")]
            if args.compare:
                rivals.append(("dlib 68-point", bench_dlib(frames, min(args.frames, 300)), "after ours"))
            for name, fps, when in rivals:
                if fps:
                    print(
                        f"  {name} on the same frames ({when}): {fps:.1f} FPS; pipnet-live is {result.fps / fps:.2f}x its speed"
                    )


def _bench_quality(args) -> None:
    from pipnet_core.evaluation.quality import TABLE_HEADER, measure_clip, write_report
    from pipnet_core.io.media import expand

    clips = expand(args.videos, kinds=("video",))
    if not clips:
        raise PipnetError("no videos given")
    with _landmarker(args, max_faces=1) as landmarker:
        print(
            f"model {landmarker.model.info.name} {landmarker.model.info.version}, detector {landmarker.detector.name}; "
            "reference: MediaPipe Face Mesh on the same frames; % of Face Mesh's outer eye distance"
        )
        print(TABLE_HEADER)
        results = []
        for clip in clips:
            quality = measure_clip(clip, landmarker, args.smooth, out_dir=Path(args.out) if args.out else None)
            results.append(quality)
            print(quality.row(), flush=True)
        if args.out:
            write_report(Path(args.out) / "quality.json", results)
            print(f"worst frames (ours green, Face Mesh red) and quality.json in {args.out}")


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


def _progress(label: str):
    """A one-line counter on a terminal's stderr (nothing when redirected), at most 5 updates/s."""
    last = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if not sys.stderr.isatty() or (now - last[0] < 0.2 and done < total):
            return
        last[0] = now
        print(f"\r{label} {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)

    return show


def version_text() -> str:
    """The package version and the shipped model's description (name, version, sha256, licence)."""
    from pipnet_core.base.version import __version__

    lines = [f"pipnet-live {__version__}"]
    try:
        from pipnet_core.model.interface import describe_model
        from pipnet_core.model.onnx import OnnxLandmarkModel

        described = describe_model(OnnxLandmarkModel(threads=1))
        lines.append(
            f"model {described['model']} {described['model_version']} {described['model_precision']} "
            f"({described['backbone']}, input "
            f"{described['input_size']}, {described['landmarks']}), exported {described['created'] or '?'}"
        )
        lines.append(f"  file {described['model_file']}\n  sha256 {described['model_sha256']}")
        lines.append(f"  trained on {described['training_data'] or '?'}; licence: {described['licence'] or '?'}")
    except PipnetError as exc:
        lines.append(f"model: {exc}")
    return "\n".join(lines)


class _VersionAction(argparse.Action):
    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="show the version and the shipped model, then exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipnet", description="68-point facial landmarks with PIPNet.")
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _training_commands(sub)
    _evaluation_commands(sub)
    _runtime_commands(sub)
    return parser


def _training_commands(sub) -> None:
    p = sub.add_parser("train", help="train a model from a TOML config")
    p.add_argument("--config", required=True, help="TOML file, e.g. configs/pipnet_mbv2_68.toml")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    p.add_argument("--data-root", help="override [data] root")
    p.add_argument("--out", help="override [train] out_dir")
    p.set_defaults(run=_train)

    p = sub.add_parser("bench-train", help="training images/s: network alone and with the data pipeline")
    p.add_argument("--config", default="configs/pipnet_mbv2_68.toml")
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


def _evaluation_commands(sub) -> None:
    p = sub.add_parser("eval", help="NME, FR@0.10 and AUC@0.10 on labeled faces")
    p.add_argument("--model", required=True, help="an .onnx model or a training checkpoint (.pt)")
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument(
        "--data",
        nargs="+",
        help="300-W folders (images + .pts), landmark CSVs, or folders with a "
        "same-named CSV; several are scored as one set",
    )
    data.add_argument(
        "--validation-of",
        metavar="CONFIG",
        help="the faces a training config holds out for validation (for choices; test sets only report)",
    )
    p.add_argument("--csv", help="write per-face NME here")
    p.add_argument("--json", help="write the summary and per-landmark NME here")
    p.add_argument("--plot", help="write the cumulative error distribution as a PNG here")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default 2)")
    p.add_argument(
        "--detector",
        choices=DETECTORS,
        help="start from this face detector's boxes instead of the ground-truth landmark box",
    )
    _add_calibration_option(p)
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
    p.set_defaults(run=_eval)

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

    p = sub.add_parser(
        "eval-clip", help="the video pipeline on the sample clip with its head rolling through 360 degrees"
    )
    p.add_argument(
        "--roll-speed", type=float, default=36.0, help="degrees per second (default 36: a full turn in 10 s)"
    )
    p.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10)")
    _add_runtime_options(p)
    p.set_defaults(run=_eval_clip)


def _add_runtime_options(p, detector="blazeface"):
    p.add_argument("--model", help="ONNX model (default: the shipped pipnet_mbv2_68.onnx)")
    p.add_argument(
        "--detector",
        default=detector,
        choices=DETECTORS,
        help=f"face detector (default: {detector}; blazeface is BlazeFace short range, "
        "blazeface-full the full-range model for small and far faces, blazeface-both the two)",
    )
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default 2)")
    _add_calibration_option(p)


def _add_calibration_option(p) -> None:
    p.add_argument(
        "--calibration",
        type=Path,
        metavar="FILE",
        help="detector box calibration written by `pipnet calibrate --out` (default: the shipped one)",
    )


def _add_max_pixels_option(p) -> None:
    from pipnet_core.io.images import DEFAULT_MAX_PIXELS

    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help="refuse images and video frames larger than this, read from the file's header before "
        f"decoding (default: {DEFAULT_MAX_PIXELS:,}, a large phone panorama)",
    )


def _runtime_commands(sub) -> None:
    p = sub.add_parser("detect", help="landmarks on still images: annotated PNGs and JSON")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of them")
    p.add_argument("--out", default="landmarks", help="output folder (default: landmarks/)")
    p.add_argument("--json", action="store_true", help="also write IMAGE.json with every face's points")
    p.add_argument("--max-faces", type=int, help="at most this many faces per image (default: all)")
    _add_max_pixels_option(p)
    _add_runtime_options(p, detector="blazeface-both")
    p.set_defaults(run=_detect)

    p = sub.add_parser("annotate", help="landmark tables (CSV / JSON Lines / .pts) and annotated video for media files")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video files, image files or folders of them")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--format",
        default="csv",
        help="comma-separated: csv, json, pts, openface (OpenFace 2.x's own CSV) (default: csv)",
    )
    p.add_argument(
        "--video-out", help="write the annotated video here (.mp4 or .avi); with several inputs, one per input"
    )
    p.add_argument("--every", type=int, default=1, help="process every Nth frame (default: 1)")
    p.add_argument(
        "--max-faces", type=int, help="faces per frame (default: every face in an image, one in a video: docs/api.md)"
    )
    p.add_argument(
        "--smooth",
        choices=("offline", "live", "none"),
        default="offline",
        help="videos: offline = each whole track smoothed without lag, and blinks found (default); "
        "live = the app's real-time filter; none = raw per-frame landmarks",
    )
    for name, meaning in (
        ("fx", "focal length in x"),
        ("fy", "focal length in y"),
        ("cx", "optical centre x"),
        ("cy", "optical centre y"),
    ):
        p.add_argument(
            f"--{name}", type=float, help=f"camera {meaning} in pixels, for head pose (default: OpenFace's guess)"
        )
    p.add_argument("--jobs", type=int, default=1, help="files processed in parallel (default: 1)")
    p.add_argument("--resume", action="store_true", help="continue files an interrupted run left unfinished")
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on a Dask cluster: its scheduler (tcp://HOST:8786), or local:N for N workers here; "
        "--out must be a folder every worker sees (docs/annotate.md)",
    )
    p.add_argument(
        "--chunk-seconds",
        type=float,
        metavar="S",
        help="with --scheduler: split videos into chunks of S seconds run in parallel "
        "(default: 60; 0: one task per video)",
    )
    p.add_argument(
        "--chunk-overlap",
        type=float,
        metavar="S",
        help="with --scheduler: seconds decoded before each chunk to warm the tracker up (default: 4)",
    )
    _add_max_pixels_option(p)
    _add_runtime_options(p, detector="blazeface-both")
    p.set_defaults(run=_annotate)

    p = sub.add_parser(
        "live",
        help="live landmarks from a camera or video into other programs: OSC, VMC, Lab "
        "Streaming Layer, WebSocket with a browser view (docs/streaming.md)",
    )
    p.add_argument("source", nargs="?", default="0", help="camera index, video or image file (default: camera 0)")
    p.add_argument("--osc", metavar="HOST:PORT", help="OSC bundles over UDP, one per frame, addresses under /pipnet/")
    p.add_argument(
        "--vmc",
        nargs="?",
        const="127.0.0.1:39540",
        metavar="HOST:PORT",
        help="VMC (the OSC profile VTuber apps read): head pose, blinks, mouth (default 127.0.0.1:39540)",
    )
    p.add_argument(
        "--lsl",
        nargs="?",
        const="pipnet-live",
        metavar="NAME",
        help="a Lab Streaming Layer outlet of type Landmarks, and NAME-events (default name pipnet-live)",
    )
    p.add_argument(
        "--ws", metavar="[HOST:]PORT", help="WebSocket JSON per frame, and a page that draws it at http://HOST:PORT/"
    )
    p.add_argument("--host", help="the address --ws listens on (default 127.0.0.1: this machine only)")
    p.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="another web page origin allowed to connect to --ws (e.g. http://localhost:3000); repeatable",
    )
    p.add_argument("--token", help="--ws clients must give ?token=TOKEN")
    p.add_argument("--max-clients", type=int, default=8, help="--ws clients at once (default: 8)")
    p.add_argument(
        "--window",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also show the annotated frames in a window (default: no window)",
    )
    p.add_argument("--loop", action="store_true", help="play a video file again and again")
    p.add_argument("--frames", type=int, help="stop after this many processed frames")
    p.add_argument("--seconds", type=float, help="stop after this many seconds")
    p.add_argument("--max-faces", type=int, default=1, help="faces followed (and LSL face slots) (default: 1)")
    _add_runtime_options(p)
    p.set_defaults(run=_live)

    p = sub.add_parser("bench", help="per-stage timings and FPS of the real-time pipeline")
    p.add_argument("--video", help="a video file (default: the synthetic sample clip)")
    p.add_argument("--faces", type=int, nargs="+", default=[1, 3], help="face counts to run (default: 1 3)")
    p.add_argument("--frames", type=int, default=300, help="frames per run; 10000 also traces memory")
    p.add_argument("--no-compare", dest="compare", action="store_false", help="skip MediaPipe Face Mesh / dlib")
    p.set_defaults(max_faces=1)
    _add_runtime_options(p)
    p.set_defaults(run=_bench)

    p = sub.add_parser(
        "bench-quality",
        help="the video pipeline on real clips against MediaPipe Face Mesh: faces found, id changes, jitter, agreement",
    )
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files or folders of them")
    p.add_argument("--out", help="save the 3 worst frames per clip (both point sets drawn) and quality.json here")
    p.add_argument(
        "--smooth",
        choices=("offline", "live", "none"),
        default="live",
        help="live = the app's real-time filter (default); offline = as `pipnet annotate` smooths files; none",
    )
    _add_runtime_options(p)
    p.set_defaults(run=_bench_quality)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except PipnetError as exc:
        print(f"pipnet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if exc.name not in TRAINING_MODULES:
            raise
        print(
            f"pipnet {args.command}: error: this command needs {exc.name}, a training dependency: "
            "run `make install-dev` (or pip install -r requirements/dev.txt)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"pipnet {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0

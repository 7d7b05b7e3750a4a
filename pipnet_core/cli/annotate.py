"""`pipnet detect` (stills to annotated PNGs and JSON) and `pipnet annotate` (media files to landmark tables)."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from pipnet_core.base.errors import PipnetError
from pipnet_core.cli.options import add_max_pixels_option, add_runtime_options, make_landmarker, summary_line


def _detect(args) -> None:
    from pipnet_core.export.outputs import output_names
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
    with make_landmarker(args, smoothing=False, still_detector=args.detector) as landmarker:
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


def _detect_one(landmarker, path, out_stem, args) -> tuple[int, list, str | None]:
    """One image: its annotated PNG (and JSON); returns the face count, the files written and the
    image's damage (None, "truncated" or "damaged": its problem is printed as a warning)."""
    import cv2

    from pipnet_core.export.draw import OverlayOptions, draw_faces
    from pipnet_core.export.rows import still_record
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
        write_json(written[-1], still_record(path, image, faces))
    return len(faces), written, still.damage


def _annotate_options(args):
    from pipnet_core.export.outputs import AnnotateOptions

    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    if any(focal is not None and focal <= 0 for focal in (args.fx, args.fy)):
        raise PipnetError("--fx and --fy are focal lengths in pixels: give positive numbers")
    return AnnotateOptions(
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


def _annotate(args) -> None:
    from pipnet_core.export.annotate import annotate

    options = _annotate_options(args)
    if args.scheduler:
        from pipnet_core.export.chunks import DEFAULT_CHUNK_SECONDS, DEFAULT_OVERLAP_SECONDS
        from pipnet_core.export.cluster import ClusterOptions, annotate_on_cluster

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
    _report(results)


def _report(results) -> None:
    """A line per file (errors and warnings on stderr), the summary, and an error if any is not complete."""
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


def add_commands(sub) -> None:
    _add_detect(sub)
    _add_annotate(sub)


def _add_detect(sub) -> None:
    p = sub.add_parser("detect", help="landmarks on still images: annotated PNGs and JSON")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of them")
    p.add_argument("--out", default="landmarks", help="output folder (default: landmarks/)")
    p.add_argument("--json", action="store_true", help="also write IMAGE.json with every face's points")
    p.add_argument("--max-faces", type=int, help="at most this many faces per image (default: all)")
    add_max_pixels_option(p)
    add_runtime_options(p, detector="blazeface-both")
    p.set_defaults(run=_detect)


def _add_annotate(sub) -> None:
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
    add_max_pixels_option(p)
    add_runtime_options(p, detector="blazeface-both")
    p.set_defaults(run=_annotate)

"""`pipnet bench` (speed of the real-time pipeline) and `bench-quality` (real clips against Face Mesh)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from pipnet_core.base.errors import PipnetError
from pipnet_core.cli.options import add_runtime_options, make_landmarker


def _bench(args) -> None:
    from pipnet_core.evaluation.bench import bench_model, load_frames

    with make_landmarker(args, max_faces=max(args.faces)) as landmarker:
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
        _bench_first_frame(landmarker, first[0])
        for faces in args.faces:
            _bench_faces(args, landmarker, faces)


def _bench_first_frame(landmarker, frame) -> None:
    """A new face's first frame (upright and upside down), and the detectors alone, ours and MediaPipe's."""
    import cv2

    from pipnet_core.evaluation.bench import bench_detectors, bench_mediapipe_detectors, bench_new_face

    for turn, name in ((None, "upright"), (cv2.ROTATE_180, "upside down")):
        ms, confidence = bench_new_face(landmarker, frame if turn is None else cv2.rotate(frame, turn))
        found = f"confidence {confidence:.2f}" if confidence else "no face found"
        print(f"a new face, {name}: {ms:.1f} ms for its first frame ({found})")
    detectors = bench_detectors(frame)
    print(
        f"face detectors alone, {frame.shape[1]}x{frame.shape[0]} (ms per frame; quarter turns: the "
        "still-image search without tiles): " + ", ".join(f"{name} {ms:.2f}" for name, ms in detectors.items())
    )
    try:
        theirs = bench_mediapipe_detectors(frame)
        print(
            "MediaPipe's own BlazeFace on the same frame (ms): "
            + ", ".join(f"{name} {ms:.2f}" for name, ms in theirs.items())
        )
    except PipnetError as exc:
        print(f"MediaPipe's own BlazeFace: not compared ({exc})")


def _bench_faces(args, landmarker, faces: int) -> None:
    """The whole pipeline on frames of this many faces, in turns with Face Mesh, then dlib."""
    from pipnet_core.evaluation.bench import FaceMeshRival, bench_dlib, bench_pipeline, load_frames

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
    from pipnet_core.evaluation.quality import TABLE_HEADER, measure_clip, write_report, yaw_bins
    from pipnet_core.io.media import expand

    clips = expand(args.videos, kinds=("video",))
    if not clips:
        raise PipnetError("no videos given")
    with make_landmarker(args, max_faces=1) as landmarker:
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
        print(
            "\nall clips by |yaw| (Face Mesh's): the inner 51 points against Face Mesh's (tools/derive_mesh_table.py), "
            "% of its face box\n   |yaw|  frames  missed  median %  p90 %"
        )
        for row in yaw_bins([pair for quality in results for pair in quality.turned]):
            print(
                f"{row['bin']:>8}  {row['frames']:6d}  {row['missed']:6d}  {100 * row['median']:8.2f}  {100 * row['p90']:5.2f}"
            )
        if args.out:
            write_report(Path(args.out) / "quality.json", results)
            print(f"worst frames (ours green, Face Mesh red) and quality.json in {args.out}")


def add_commands(sub) -> None:
    p = sub.add_parser("bench", help="per-stage timings and FPS of the real-time pipeline")
    p.add_argument("--video", help="a video file (default: the synthetic sample clip)")
    p.add_argument("--faces", type=int, nargs="+", default=[1, 3], help="face counts to run (default: 1 3)")
    p.add_argument("--frames", type=int, default=300, help="frames per run; 10000 also traces memory")
    p.add_argument("--no-compare", dest="compare", action="store_false", help="skip MediaPipe Face Mesh / dlib")
    p.set_defaults(max_faces=1)
    add_runtime_options(p)
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
    add_runtime_options(p)
    p.set_defaults(run=_bench_quality)

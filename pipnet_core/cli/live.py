"""`pipnet live`: landmarks from a camera or video into other programs (docs/streaming.md)."""

from __future__ import annotations

import argparse

from pipnet_core.cli.options import add_runtime_options


def _live(args) -> None:
    from pipnet_core.stream.command import run_live

    run_live(args)


def add_commands(sub) -> None:
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
    add_runtime_options(p)
    p.set_defaults(run=_live)

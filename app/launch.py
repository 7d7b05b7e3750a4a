"""The `pipnet-live` command line: a source to open, a one-line error where Qt cannot start."""

from __future__ import annotations

import argparse
import sys

from PySide6.QtWidgets import QApplication, QMessageBox

from pipnet_core import PipnetError, __version__

from .main_window import MainWindow
from .platform_check import qt_platform_problem


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pipnet-live",
        description="The pipnet-live desktop app: 68 facial landmarks on a camera, a video or an image, in real time.",
    )
    parser.add_argument(
        "source",
        nargs="?",
        help="a camera index, a video or an image (default: the first camera, or a sample clip when there is none)",
    )
    parser.add_argument("--version", action="version", version=f"pipnet-live {__version__}")
    args = parser.parse_args(argv)
    if args.source is not None and args.source.isdigit():
        args.source = int(args.source)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv if argv is None else argv
    args = parse_args(argv[1:])
    problem = qt_platform_problem()
    if problem:
        print(f"pipnet-live: error: {problem}", file=sys.stderr)
        return 1
    app = QApplication(argv[:1])
    app.setApplicationName("pipnet-live")
    try:
        window = MainWindow(args.source)
    except PipnetError as exc:  # e.g. the shipped model is missing: say so in a dialog, not a traceback
        QMessageBox.critical(None, "pipnet-live", str(exc))
        return 1
    window.show()
    return app.exec()

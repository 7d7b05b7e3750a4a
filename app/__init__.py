"""The pipnet-live desktop app (PySide6), a thin layer over pipnet_core. Installed as pipnet_core.app
with the ``[gui]`` extra."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """The ``pipnet-live`` command: a one-line message when the GUI extra is not installed."""
    try:
        from .launch import main as run_app
    except ImportError as exc:
        if not (exc.name or "").startswith("PySide6"):
            raise
        print("pipnet-live: error: the desktop app needs PySide6: pip install 'pipnet-live[gui]'", file=sys.stderr)
        return 1
    return run_app(argv)

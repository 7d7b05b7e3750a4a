"""Before Qt starts on Linux: is there a display, and can Qt's xcb platform plugin load?

Without its system libraries (libxcb-cursor0 and friends, not in a minimal install) Qt prints a
plugin error, a hint about QT_DEBUG_PLUGINS, and aborts. Here the same situation is one line that
names the Debian/Ubuntu packages to install.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def xcb_plugin() -> Path | None:
    import PySide6

    plugin = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return plugin if plugin.is_file() else None


def missing_libraries(binary: Path) -> list[str]:
    """Shared libraries ``binary`` needs (directly or not) that the dynamic loader cannot find."""
    try:
        listing = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []  # no ldd: let Qt report it
    return sorted({line.split()[0] for line in listing.splitlines() if "not found" in line})


def debian_package(soname: str) -> str:
    """Debian's name for the package of a library: libxcb-cursor.so.0 -> libxcb-cursor0,
    libxkbcommon-x11.so.0 -> libxkbcommon-x11-0 (a hyphen when the name ends in a digit)."""
    match = re.fullmatch(r"(.+)\.so\.(\d+)(\..*)?", soname)
    if not match:
        return soname
    name, major = match.group(1).lower(), match.group(2)
    return f"{name}-{major}" if name[-1].isdigit() else f"{name}{major}"


def qt_platform_problem() -> str | None:
    """One line saying why the window cannot open here, or None when it can (or Qt should decide)."""
    if not sys.platform.startswith("linux"):
        return None
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform and not platform.startswith("xcb"):
        return None  # offscreen, wayland, vnc...: not ours to check
    if not os.environ.get("DISPLAY"):
        if os.environ.get("WAYLAND_DISPLAY") and not platform:
            return None
        return (
            "no display to open a window on (DISPLAY is not set): start it from a desktop session, or set "
            "QT_QPA_PLATFORM=offscreen for a headless run"
        )
    plugin = xcb_plugin()
    missing = missing_libraries(plugin) if plugin else []
    if missing:
        return (
            f"Qt's desktop plugin (xcb) cannot load: missing {', '.join(missing)}; install them with "
            f"`sudo apt-get install {' '.join(debian_package(name) for name in missing)}`"
        )
    return None

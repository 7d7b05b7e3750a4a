"""Files written whole or not at all: under a temporary name, then renamed, so a kill, a full disk
or a reader at the wrong moment never sees half a file. Every output that is one file (JSON, a
drawn image, a progress state, a cluster's chunk) goes through here."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np

from pipnet_core.base.errors import PipnetError


def write_file(path: Path, data: bytes, shared: bool = False) -> None:
    """A file replaced whole: written under a temporary name, then renamed (never half-written).
    ``shared``: other processes may write the same file at once (a cluster task that Dask runs
    again while its first run goes on): each writes its own temporary file."""
    partial = path.with_name(path.name + (f".{uuid.uuid4().hex}" if shared else "") + ".partial")
    try:
        partial.write_bytes(data)
        partial.replace(path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise PipnetError(f"{path}: cannot write ({exc.strerror})") from None


def write_json(path: Path, value) -> None:
    """JSON, indented for people to read."""
    write_file(path, (json.dumps(value, indent=1) + "\n").encode())


def write_image(path: Path, image: np.ndarray) -> None:
    """An image file in the format its suffix names."""
    import cv2

    ok, encoded = cv2.imencode(path.suffix, image)
    if not ok:
        raise PipnetError(f"{path}: cannot encode an image with this suffix")
    write_file(path, encoded.tobytes())

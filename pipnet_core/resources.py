"""Files that ship inside the package: the landmark model, the detector calibration, the assets.

In the checkout they live in the top-level ``models/`` and ``assets/`` folders; installed, they are
the subpackages ``pipnet_core.models`` and ``pipnet_core.assets`` (see pyproject.toml). Either way
``importlib.resources`` finds them, so a wheel works without the checkout.
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from .errors import PipnetError

MODEL_FILE = "pipnet_mbv2_68.onnx"
CALIBRATION_FILE = "detector_calibration.json"


def _packaged(package: str, name: str) -> Path:
    path = Path(os.fspath(resources.files(package).joinpath(name)))
    if not path.is_file():
        raise PipnetError(f"{path}: missing from the installation (reinstall pipnet-live)")
    return path


def models_dir() -> Path:
    """The folder of the shipped model (and, in a checkout, of the experiment models)."""
    return Path(os.fspath(resources.files("pipnet_core.models")))


def shipped_model() -> Path:
    return _packaged("pipnet_core.models", MODEL_FILE)


def calibration_file() -> Path:
    return _packaged("pipnet_core.models", CALIBRATION_FILE)


def asset(name: str) -> Path:
    return _packaged("pipnet_core.assets", name)

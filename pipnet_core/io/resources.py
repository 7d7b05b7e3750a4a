"""Files that ship inside the package: the landmark model, the detector calibration, the assets.

In the checkout they live in the top-level ``models/`` and ``assets/`` folders; installed, they are
the subpackages ``pipnet_core.models`` and ``pipnet_core.assets`` (see pyproject.toml). Either way
``importlib.resources`` finds them, so a wheel works without the checkout.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from pipnet_core.base.errors import PipnetError

MODEL_FILE = "pipnet_mbv2_68.onnx"
INT8_MODEL_FILE = "pipnet_mbv2_68_int8.onnx"  # its quantized twin (`pipnet quantize`): preferred when shipped
CALIBRATION_FILE = "detector_calibration.json"


def _packaged(package: str, name: str) -> Path:
    path = Path(os.fspath(resources.files(package).joinpath(name)))
    if not path.is_file():
        raise PipnetError(f"{path}: missing from the installation (reinstall pipnet-live)")
    return path


def models_dir() -> Path:
    """The folder of the shipped model (and, in a checkout, of the experiment models)."""
    return Path(os.fspath(resources.files("pipnet_core.models")))


def shipped_model(prefer_int8: bool = True) -> Path:
    """The shipped model: its INT8 twin when that ships too (faster, within 0.1 NME points),
    else the float model."""
    if prefer_int8:
        int8 = models_dir() / INT8_MODEL_FILE
        if int8.is_file():
            return int8
    return _packaged("pipnet_core.models", MODEL_FILE)


def packaged_model(name: str) -> Path:
    """A model file shipped in the package (the landmark model, the BlazeFace detectors)."""
    return _packaged("pipnet_core.models", name)


def calibration_file() -> Path:
    return _packaged("pipnet_core.models", CALIBRATION_FILE)


def asset(name: str) -> Path:
    return _packaged("pipnet_core.assets", name)

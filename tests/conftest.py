"""Every test process (and the subprocesses tests start) keeps its cache and settings in a temporary
home: the suite never reads or writes the user's ~/.cache or ~/.config. The shipped model is a
fixture every test module shares."""

import os
import tempfile

import pytest

_home = tempfile.mkdtemp(prefix="pipnet-tests-")
os.environ["XDG_CACHE_HOME"] = os.path.join(_home, "cache")
os.environ["XDG_CONFIG_HOME"] = os.path.join(_home, "config")


@pytest.fixture(scope="module")
def model():
    from pipnet_core.model.onnx import OnnxLandmarkModel

    return OnnxLandmarkModel()

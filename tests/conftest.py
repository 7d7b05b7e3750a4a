"""Every test process (and the subprocesses tests start) keeps its cache and settings in a temporary
home: the suite never reads or writes the user's ~/.cache or ~/.config. The shipped model and its
points on the sample photo are fixtures every test module shares."""
import os
import tempfile

import pytest

_home = tempfile.mkdtemp(prefix="pipnet-tests-")
os.environ["XDG_CACHE_HOME"] = os.path.join(_home, "cache")
os.environ["XDG_CONFIG_HOME"] = os.path.join(_home, "config")


@pytest.fixture(scope="module")
def model():
    from pipnet_core.onnx_runner import OnnxLandmarkModel

    return OnnxLandmarkModel()


@pytest.fixture(scope="module")
def photo_points(model):
    """The shipped model's points on the sample photo, still: the reference motion tests move."""
    from pipnet_core.landmarker import Landmarker
    from pipnet_core.sample_clip import face_photo

    return Landmarker(model).process_image(face_photo())[0].points

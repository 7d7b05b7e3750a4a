"""pipnet-live: real-time 68-point facial landmarks with PIPNet on the CPU.

    from pipnet_core import Landmarker, read_image

    landmarker = Landmarker()  # shipped model, BlazeFace detector, smoothing on
    faces = landmarker.process_image(read_image("face.jpg").image)
    print(faces[0].points.shape, faces[0].pose.yaw)  # (68, 2), degrees

The package imports no torch: training and export load it on demand.
"""

from .align import FaceAligner
from .draw import OverlayOptions, draw_faces
from .errors import PipnetError
from .images import StillImage, read_image
from .landmarker import Face, Landmarker
from .smooth import SmoothingParams
from .track import Tracker, TrackerConfig
from .version import __version__

__all__ = [
    "Face",
    "FaceAligner",
    "Landmarker",
    "OverlayOptions",
    "PipnetError",
    "SmoothingParams",
    "StillImage",
    "Tracker",
    "TrackerConfig",
    "__version__",
    "draw_faces",
    "read_image",
]

"""pipnet-live: real-time 68-point facial landmarks with PIPNet on the CPU.

    from pipnet_core import Landmarker, read_image

    landmarker = Landmarker()  # shipped model, BlazeFace detector, smoothing on
    faces = landmarker.process_image(read_image("face.jpg").image)
    print(faces[0].points.shape, faces[0].pose.yaw)  # (68, 2), degrees

The package imports no torch: training and export load it on demand.
"""

from pipnet_core import old_paths
from pipnet_core.base.errors import PipnetError
from pipnet_core.base.records import Face, FrameFaces
from pipnet_core.base.version import __version__
from pipnet_core.export.draw import OverlayOptions, draw_faces
from pipnet_core.io.frames import Frame, iterate, open_source
from pipnet_core.io.images import StillImage, read_image
from pipnet_core.offline import measures, tracks
from pipnet_core.pipeline.align import FaceAligner
from pipnet_core.pipeline.landmarker import Landmarker
from pipnet_core.pipeline.smoothing import SmoothingParams
from pipnet_core.pipeline.tracking import Tracker, TrackerConfig

old_paths.install()  # `pipnet_core.frames` and the other paths of the flat layout still import

__all__ = [
    "Face",
    "FaceAligner",
    "Frame",
    "FrameFaces",
    "Landmarker",
    "OverlayOptions",
    "PipnetError",
    "SmoothingParams",
    "StillImage",
    "Tracker",
    "TrackerConfig",
    "__version__",
    "draw_faces",
    "iterate",
    "measures",
    "open_source",
    "read_image",
    "tracks",
]

"""The module paths of the flat layout before 2026-12-03, still importable (docs/changes.md).

``from pipnet_core.frames import iterate`` keeps working: an old path is a module made on first
import from the public names of the modules its contents moved to, with a DeprecationWarning that
names them. New code imports the new paths; this table is the only place that knows the old ones.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

PACKAGE = "pipnet_core"
# old module -> the modules its public names are in now (first one first)
MOVED = {
    "errors": ("base.errors",),
    "version": ("base.version",),
    "lifetime": ("base.lifetime",),
    "records": ("base.records",),
    "scheme": ("base.scheme",),
    "crop": ("base.crop",),
    "media": ("io.media",),
    "images": ("io.images",),
    "frames": ("io.frames",),
    "data": ("io.labels",),
    "files": ("io.files",),
    "state_codec": ("io.state_codec",),
    "resources": ("io.resources",),
    "sample_clip": ("io.sample_clip",),
    "model_interface": ("model.interface",),
    "codec": ("model.codec",),
    "onnx_runner": ("model.onnx", "model.interface"),
    "detect": ("detection.detector", "detection.blazeface", "detection.search", "detection.calibration",
               "detection.registry"),
    "align": ("pipeline.align",),
    "track": ("pipeline.tracking",),
    "smooth": ("pipeline.smoothing", "offline.smoothing", "base.geometry"),
    "plausibility": ("pipeline.plausibility",),
    "pose": ("pipeline.pose", "base.records"),
    "landmarker": ("pipeline.landmarker",),
    "tracks": ("offline.tracks",),
    "measures": ("offline.measures",),
    "writers": ("export.writers", "export.rows", "export.read_back", "export.line_files"),
    "draw": ("export.draw",),
    "annotate": ("export.annotate", "export.outputs"),
    "cluster": ("export.cluster", "export.chunks"),
    "live": ("stream.runner",),
    "metrics": ("evaluation.metrics",),
    "evaluate": ("evaluation.evaluate", "training.loading"),
    "quality": ("evaluation.quality",),
    "bench": ("evaluation.bench",),
    "mediapipe_reference": ("evaluation.face_mesh",),
}  # fmt: skip
# names that changed with the move: (old module, old name) -> (new module, new name)
RENAMED = {
    ("smooth", "MotionTracker"): ("pipeline.smoothing", "AlphaBetaFilter"),
    ("tracks", "Frame"): ("base.records", "FrameFaces"),
    ("writers", "FaceRecord"): ("base.records", "Face"),
}


class OldPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        package, _, old = fullname.partition(".")
        return importlib.util.spec_from_loader(fullname, self) if package == PACKAGE and old in MOVED else None

    def create_module(self, spec) -> types.ModuleType:
        old = spec.name.partition(".")[2]
        new = [f"{PACKAGE}.{name}" for name in MOVED[old]]
        warnings.warn(f"{spec.name} is now {' and '.join(new)} (docs/changes.md)", DeprecationWarning, stacklevel=2)
        module = types.ModuleType(spec.name, f"Moved: {', '.join(new)}.")
        for name in reversed(new):  # the first module's names win
            moved = importlib.import_module(name)
            module.__dict__.update({key: value for key, value in vars(moved).items() if not key.startswith("_")})
        for (module_name, name), (home, new_name) in RENAMED.items():
            if module_name == old:
                setattr(module, name, getattr(importlib.import_module(f"{PACKAGE}.{home}"), new_name))
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass  # made whole by create_module


def install() -> None:
    if not any(isinstance(finder, OldPaths) for finder in sys.meta_path):
        sys.meta_path.append(OldPaths())

"""The package's shape: no import circles (also through imports made inside functions, which only
hide one), no private name taken from another module, and the public names where users find them."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pipnet_core"


def module_name(path: Path) -> str:
    parts = path.with_suffix("").relative_to(ROOT).parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, known: set[str]) -> set[tuple[str, list[str]]]:
    """The package modules a file imports anywhere in it, each with the names taken from it."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package, or node.level - 1 packages up
                parts = package.split(".")
                target = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                if submodule in known:
                    found.add((submodule, ()))
                elif target in known:
                    found.add((target, (alias.name,)))
        elif isinstance(node, ast.Import):
            found |= {(alias.name, ()) for alias in node.names if alias.name in known}
    return {(module, names) for module, names in found if module != here}


def package_modules() -> dict[str, Path]:
    """The library's modules and the app's (app/ is the top of the same graph)."""
    return {module_name(path): path for folder in (PACKAGE, ROOT / "app") for path in folder.rglob("*.py")}


def test_no_module_imports_itself_through_others():
    modules = package_modules()
    graph = {name: {target for target, _ in imports(path, set(modules))} for name, path in modules.items()}
    circles, visiting, done = [], [], set()

    def visit(name: str) -> None:
        if name in visiting:
            circles.append(visiting[visiting.index(name) :] + [name])
            return
        if name in done:
            return
        visiting.append(name)
        for target in sorted(graph[name]):
            visit(target)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
    assert not circles, "import circles: " + "; ".join(" -> ".join(circle) for circle in circles[:5])


def test_no_private_name_is_taken_from_another_module():
    modules = package_modules()
    taken = [
        f"{module_name(path)} takes {target}.{name}"
        for path in modules.values()
        for target, names in imports(path, set(modules))
        for name in names
        if name.startswith("_") and name != "__version__"
    ]
    assert not taken, taken


def test_the_public_names_are_the_documented_ones_and_work():
    import numpy as np

    import pipnet_core
    from pipnet_core import Face, measures, tracks  # docs/api.md: "Whole videos"

    assert set(pipnet_core.__all__) == {
        "Face", "FaceAligner", "Frame", "FrameFaces", "Landmarker", "OverlayOptions", "PipnetError",
        "SmoothingParams", "StillImage", "Tracker", "TrackerConfig", "__version__", "draw_faces", "iterate",
        "measures", "open_source", "read_image", "tracks",
    }  # fmt: skip
    for name in pipnet_core.__all__:
        assert getattr(pipnet_core, name) is not None, name
    assert pipnet_core.__version__ == pipnet_core.base.version.__version__
    # A video as the API documents it: plain (index, timestamp, faces) tuples.
    mean = np.random.default_rng(0).uniform(0, 100, (68, 2)).astype(np.float32)
    frames = [(i, i / 30, [Face(0, (0, 0, 100, 100), 1.0, mean + i, np.ones(68), None, True)]) for i in range(5)]
    smoothed = tracks.smooth_offline(frames, mean, np.array([[500.0, 0, 50], [0, 500, 50], [0, 0, 1]]))
    assert len(smoothed) == 5 and smoothed[2][2][0].pose is not None and tracks.blinks(frames) == []
    assert np.allclose(measures.eye_aspect_ratios(mean), measures.eye_aspect_ratios(mean * 2))


def test_older_import_paths_still_work():
    from pipnet_core.base import records
    from pipnet_core.export import writers
    from pipnet_core.io import files
    from pipnet_core.pipeline import landmarker

    assert landmarker.Face is records.Face and landmarker.points_box is records.points_box
    assert writers.write_json is files.write_json


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_flat_layouts_module_paths_import_their_names_from_the_new_homes():
    import importlib
    import subprocess
    import sys

    from pipnet_core.old_paths import MOVED, RENAMED

    for old, homes in MOVED.items():
        module = importlib.import_module(f"pipnet_core.{old}")
        for home in homes:
            new = importlib.import_module(f"pipnet_core.{home}")
            public = [name for name in vars(new) if not name.startswith("_")]
            assert all(hasattr(module, name) for name in public), f"pipnet_core.{old} lacks names of {home}"
    for (old, name), (home, new_name) in RENAMED.items():
        assert getattr(importlib.import_module(f"pipnet_core.{old}"), name) is getattr(
            importlib.import_module(f"pipnet_core.{home}"), new_name
        )
    from pipnet_core.frames import iterate  # README's example before the move
    from pipnet_core.io.frames import iterate as now

    assert iterate is now
    warned = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", "import pipnet_core.frames"],
        capture_output=True,
        text=True,
    )
    assert warned.returncode == 1 and "pipnet_core.frames is now pipnet_core.io.frames" in warned.stderr


def python_files() -> list[Path]:
    """The code that ships, is run by hand or tests them: the package, the app, tools, experiments, tests."""
    folders = ("pipnet_core", "app", "tools", "experiments", "tests")
    return [path for folder in folders for path in (ROOT / folder).rglob("*.py")]


def test_no_module_over_500_lines():
    long = [f"{p.relative_to(ROOT)}: {n}" for p in python_files() if (n := len(p.read_text().splitlines())) > 500]
    assert not long, long


def test_no_function_over_60_lines_outside_training():
    """Training keeps its loop whole; everything else reads a screen at a time."""
    long = []
    for path in python_files():
        if "training" in path.relative_to(ROOT).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not long, long

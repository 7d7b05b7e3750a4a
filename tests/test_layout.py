"""The package's shape: no import circles (also through imports made inside functions, which only
hide one), no private name taken from another module, and the public names where users find them."""

import ast
from pathlib import Path

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
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


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
        for path in [*modules.values(), *(ROOT / "app").rglob("*.py")]
        for target, names in imports(path, set(modules))
        for name in names
        if name.startswith("_") and name != "__version__"
    ]
    assert not taken, taken


def test_the_public_names_are_where_users_and_older_code_find_them():
    import pipnet_core
    from pipnet_core.base import records
    from pipnet_core.export import writers
    from pipnet_core.pipeline import landmarker

    for name in pipnet_core.__all__:
        assert getattr(pipnet_core, name) is not None, name
    assert landmarker.Face is records.Face and landmarker.points_box is records.points_box
    from pipnet_core.io import files

    assert writers.write_json is files.write_json  # an older import path still works
    assert pipnet_core.__version__ == pipnet_core.base.version.__version__

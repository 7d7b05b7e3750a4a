"""State files that cannot run code: what a run writes for itself and reads back later (annotate's
``NAME.progress``, the cluster's chunk pieces).

Those files sit in output folders, which are often shared (a cluster's, a lab's), so anyone who
can write there can leave one. Pickle would run whatever such a file carries; here a state is a
JSON document, numpy arrays in it as base64 with their dtype and shape (never of objects).
Objects travel by name, and only as classes the reader lists (``to_plain`` / ``from_plain``):
their fields are set from plain values, no constructor or other code of the file's choosing runs.

A file says which program, which version of its format and which kind of state it holds; a file
that is not one (damaged, foreign, or an older pickled one) is refused with one line saying what
to do.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipnet_core.base.errors import PipnetError
from pipnet_core.base.version import __version__

FORMAT = "pipnet-live state"
FORMAT_VERSION = 1
_PICKLED = b"\x80"  # how pickle protocols 2 and later start: what pipnet-live wrote before this format


def encode_state(kind: str, document: Any) -> bytes:
    """``document`` (JSON values, numpy arrays, tuples and int-keyed dicts, nested) as a state file."""
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "program_version": __version__,
        "kind": kind,
        "document": _pack(document),
    }
    return json.dumps(meta, separators=(",", ":")).encode() + b"\n"


def read_state_file(path: Path) -> bytes | None:
    """A state file's bytes; None when there is none; a one-line PipnetError when it cannot be read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PipnetError(f"{path}: cannot be read ({exc.strerror})") from None


def decode_state(data: bytes, kind: str, origin: str) -> Any:
    """The document of a state file of ``kind``; a one-line PipnetError naming ``origin`` (the
    file) for anything else."""
    again = "delete it, or run without --resume"
    if data.startswith(_PICKLED):
        raise PipnetError(
            f"{origin}: written by an older pipnet-live in a format that can run code (pickle), "
            f"which this version refuses to read: {again}"
        )
    try:
        meta = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise PipnetError(f"{origin}: not a state file of pipnet-live (damaged, or another program's): {again}")
    if meta.get("format_version") != FORMAT_VERSION or meta.get("program_version") != __version__:
        raise PipnetError(
            f"{origin}: written by pipnet-live {meta.get('program_version')} (state format "
            f"{meta.get('format_version')}), this is {__version__}: {again}"
        )
    if meta.get("kind") != kind:
        raise PipnetError(f"{origin}: holds a {meta.get('kind')!r} state, not a {kind!r} one: {again}")
    try:
        return _unpack(meta["document"])
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError):
        raise PipnetError(f"{origin}: a damaged state file: {again}") from None


def _pack(value: Any) -> Any:
    if isinstance(value, (np.ndarray, np.generic)):  # np.float64 too: numpy 2 computes with it apart from float
        array = np.ascontiguousarray(value)
        return {
            "$array": base64.b64encode(array.tobytes()).decode(),
            "dtype": array.dtype.str,
            "shape": list(array.shape),
            "scalar": isinstance(value, np.generic),
        }
    if isinstance(value, dict):
        if all(isinstance(key, str) and not key.startswith("$") for key in value):
            return {key: _pack(item) for key, item in value.items()}
        return {"$items": [[_pack(key), _pack(item)] for key, item in value.items()]}
    if isinstance(value, tuple):
        return {"$tuple": [_pack(item) for item in value]}
    if isinstance(value, list):
        return [_pack(item) for item in value]
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    raise TypeError(f"a state cannot hold {type(value).__name__}")


def _unpack(value: Any) -> Any:
    if isinstance(value, list):
        return [_unpack(item) for item in value]
    if not isinstance(value, dict):
        return value
    if "$array" in value:
        dtype = np.dtype(value["dtype"])
        if dtype.hasobject:
            raise ValueError("an array of objects")
        array = np.frombuffer(base64.b64decode(value["$array"], validate=True), dtype).reshape(value["shape"]).copy()
        return array[()] if value["scalar"] else array
    if "$items" in value:
        return {_unpack(key): _unpack(item) for key, item in value["$items"]}
    if "$tuple" in value:
        return tuple(_unpack(item) for item in value["$tuple"])
    return {key: _unpack(item) for key, item in value.items()}


# What the fields of a class in a state may hold: a type (or tuple of types) for isinstance, or a
# test. ``from_plain`` checks every object of a state against its class's entry.
NUMBER = (int, float, np.integer, np.floating)


def optional(kind: type | tuple) -> tuple:
    return (type(None), *(kind if isinstance(kind, tuple) else (kind,)))


def float_array(*shape: int | None) -> Callable[[Any], bool]:
    """A test for a floating-point array of this shape (None: any length on that axis)."""

    def test(value: Any) -> bool:
        return (
            isinstance(value, np.ndarray)
            and value.dtype.kind == "f"
            and value.ndim == len(shape)
            and all(want is None or got == want for got, want in zip(value.shape, shape))
        )

    return test


def tuple_of(*kinds) -> Callable[[Any], bool]:
    def test(value: Any) -> bool:
        return isinstance(value, tuple) and len(value) == len(kinds) and all(holds(v, k) for v, k in zip(value, kinds))

    return test


Schema = dict[type, dict[str, Any]]


def holds(value: Any, kind: Any) -> bool:
    """Does ``value`` hold ``kind`` (a type, a tuple of types, or a test)?"""
    return isinstance(value, kind) if isinstance(kind, (type, tuple)) else kind(value)


def state_name(cls: type) -> str:
    """The name a class's objects carry in state files: its own, or ``STATE_NAME`` for a class
    renamed since (so that files written before the rename still read)."""
    return getattr(cls, "STATE_NAME", cls.__name__)


def to_plain(value: Any, schema: Schema) -> Any:
    """Objects of the classes of ``schema`` (nested in lists, tuples and dicts) as ``{"$object":
    name, "fields": ...}``; anything else as it is (a named tuple as a plain tuple)."""
    known = {state_name(cls): cls for cls in schema}
    return _to_plain(value, known)


def _to_plain(value: Any, known: dict[str, type]) -> Any:
    name = state_name(type(value))
    if name in known and type(value) is known[name]:
        return {"$object": name, "fields": _to_plain(dict(vars(value)), known)}
    if isinstance(value, dict):
        return {key: _to_plain(item, known) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return (list if isinstance(value, list) else tuple)(_to_plain(item, known) for item in value)
    return value.copy() if isinstance(value, np.ndarray) else value  # a state, not a view of live arrays


def from_plain(value: Any, schema: Schema) -> Any:
    """The inverse of ``to_plain``: each object made without calling its constructor, its fields
    set from the plain values once they match the class's entry in ``schema`` (the same names,
    each of its kind). A class not in ``schema``, or fields that do not match, is a ValueError."""
    known = {state_name(cls): cls for cls in schema}
    return _from_plain(value, known, schema)


def _from_plain(value: Any, known: dict[str, type], schema: Schema) -> Any:
    if isinstance(value, dict):
        if "$object" in value:
            cls = known.get(value["$object"])
            if cls is None:
                raise ValueError(f"an object of a class this state may not hold: {value['$object']!r}")
            fields = _from_plain(value["fields"], known, schema)
            kinds = schema[cls]
            if not isinstance(fields, dict) or set(fields) != set(kinds):
                raise ValueError(f"the fields of {cls.__name__} do not match this version's")
            wrong = [name for name, kind in kinds.items() if not holds(fields[name], kind)]
            if wrong:
                raise ValueError(f"{cls.__name__}.{wrong[0]} holds a {type(fields[wrong[0]]).__name__}")
            made = object.__new__(cls)
            made.__dict__.update(fields)  # frozen dataclasses too: no __setattr__ runs
            return made
        return {key: _from_plain(item, known, schema) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_from_plain(item, known, schema) for item in value)
    return value.copy() if isinstance(value, np.ndarray) else value

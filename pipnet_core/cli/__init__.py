"""The `pipnet` command: one sub-command per job, every user error as a one-line message."""

from __future__ import annotations

import argparse
import sys

from pipnet_core.base.errors import PipnetError
from pipnet_core.cli import annotate, bench, data, evaluate, live, train

# Installed by requirements/dev.txt only: the runtime (app, detect, annotate, bench) never needs them.
TRAINING_MODULES = {"torch", "onnx"}


def version_text() -> str:
    """The package version and the shipped model's description (name, version, sha256, licence)."""
    from pipnet_core.base.version import __version__

    lines = [f"pipnet-live {__version__}"]
    try:
        from pipnet_core.model.interface import describe_model
        from pipnet_core.model.onnx import OnnxLandmarkModel

        described = describe_model(OnnxLandmarkModel(threads=1))
        lines.append(
            f"model {described['model']} {described['model_version']} {described['model_precision']} "
            f"({described['backbone']}, input "
            f"{described['input_size']}, {described['landmarks']}), exported {described['created'] or '?'}"
        )
        lines.append(f"  file {described['model_file']}\n  sha256 {described['model_sha256']}")
        lines.append(f"  trained on {described['training_data'] or '?'}; licence: {described['licence'] or '?'}")
    except PipnetError as exc:
        lines.append(f"model: {exc}")
    return "\n".join(lines)


class _VersionAction(argparse.Action):
    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="show the version and the shipped model, then exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipnet", description="68-point facial landmarks with PIPNet.")
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for commands in (train, data, evaluate, annotate, live, bench):
        commands.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except PipnetError as exc:
        print(f"pipnet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if exc.name not in TRAINING_MODULES:
            raise
        print(
            f"pipnet {args.command}: error: this command needs {exc.name}, a training dependency: "
            "run `make install-dev` (or pip install -r requirements/dev.txt)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"pipnet {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0

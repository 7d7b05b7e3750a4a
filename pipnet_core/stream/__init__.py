"""Live results into other programs: one message per processed frame (``message``), sent by OSC
and VMC over UDP (``osc``), Lab Streaming Layer (``lsl``) and WebSocket with a browser view
(``websocket``). Each sink is a ``runner.Sink``: sending never waits for a receiver.

The protocols' libraries are the ``stream`` extra (pip install 'pipnet-live[stream]'); a sink
whose library is missing says so in one line when it is made.
"""

from __future__ import annotations

import importlib
import os

from pipnet_core.base.errors import PipnetError
from pipnet_core.io.resources import asset


def optional_module(name: str, package: str):
    """A protocol library, or a one-line PipnetError naming what to install."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise PipnetError(f"streaming over this protocol needs {package}: pip install 'pipnet-live[stream]'") from None


def import_pylsl():
    """pylsl, with liblsl's log at warnings (assets/lsl_api.cfg, unless the user set LSLAPICFG):
    liblsl reads its settings when it loads."""
    os.environ.setdefault("LSLAPICFG", str(asset("lsl_api.cfg")))
    return optional_module("pylsl", "pylsl")


def host_port(
    text: str, default_host: str = "127.0.0.1", default_port: int | None = None, any_port: bool = False
) -> tuple[str, int]:
    """ "HOST:PORT", "PORT" or "HOST" (with ``default_port``) as (host, port); a one-line error
    otherwise. ``any_port``: a server's port may be 0, any free one."""
    host, _, port = text.rpartition(":") if ":" in text else (("", "", text) if text.isdigit() else (text, "", ""))
    host = host.strip("[]") or default_host
    if not port and default_port is not None:
        return host, default_port
    lowest = 0 if any_port else 1
    if not port.isdigit() or not lowest <= int(port) < 65536:
        raise PipnetError(f"{text!r}: give HOST:PORT or PORT, with a port from {lowest} to 65535")
    return host, int(port)

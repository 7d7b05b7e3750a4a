"""Open Sound Control over UDP: one bundle per frame, for TouchDesigner, Max/MSP, Pure Data,
Processing, Unity or Godot; and VMC, the OSC profile VTuber apps read.

UDP never waits for a receiver: a bundle nobody reads is simply gone. Times go as 64-bit doubles
(OSC's float is 32-bit: a monotonic clock in seconds would lose milliseconds); everything else as
int32 and float32. Addresses (docs/streaming.md):

    /pipnet/frame          frame, source_frame, faces, width, height, capture_time, send_time (d)
    /pipnet/face/ID/box    success, confidence, x, y, w, h
    /pipnet/face/ID/points 68 x, y pairs normalised to the frame (0..1); .../points_px in pixels
    /pipnet/face/ID/point_confidence, /pose (yaw, pitch, roll, tx, ty, tz), /eyes (right, left),
    /pipnet/face/ID/mouth, /blink (1, only in the frame a blink begins)
    /pipnet/event          "found" | "lost" | "blink", face id
"""

from __future__ import annotations

import math
import socket
import time

import numpy as np

from pipnet_core.base.errors import PipnetError
from pipnet_core.stream import optional_module
from pipnet_core.stream.runner import LiveResult, RateMeter

VMC_PORT = 39540  # what VMC receivers listen on unless told
# Eye aspect ratios of an open and a closed eye (measures.py), for VMC's 0..1 blink weights.
EAR_OPEN, EAR_CLOSED = 0.30, 0.15
MAR_WIDE = 0.5  # a mouth aspect ratio this large is VMC's "A" at 1


def udp_address(host: str, port: int) -> tuple[str, int]:
    """The address datagrams go to, resolved now: a host that does not resolve is a one-line error.
    IPv4 first: "localhost" often resolves to ::1 first, where a receiver bound to 127.0.0.1 (as
    most patches are) would never hear a thing."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise PipnetError(f"{host}:{port}: unreachable ({exc.strerror})") from None
    return sorted(found, key=lambda entry: entry[0] != socket.AF_INET)[0][4][:2]


class _UdpBundles:
    """A UDP socket sending python-osc bundles; failures are counted, never raised."""

    def __init__(self, host: str, port: int):
        self.osc = optional_module("pythonosc.osc_bundle_builder", "python-osc")
        self.message_builder = optional_module("pythonosc.osc_message_builder", "python-osc")
        self.address = udp_address(host, port)
        self.socket = socket.socket(socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.setblocking(False)
        self.sent = self.failed = 0
        self.meter = RateMeter()

    def message(self, address: str, *args):
        """An OSC message; a float marked "d" goes as a double."""
        builder = self.message_builder.OscMessageBuilder(address=address)
        for arg in args:
            if isinstance(arg, tuple):  # (type, value)
                builder.add_arg(arg[1], arg[0])
            elif isinstance(arg, (bool, np.bool_)):
                builder.add_arg(int(arg), "i")
            elif isinstance(arg, (int, np.integer)):
                builder.add_arg(int(arg), "i")
            elif isinstance(arg, str):
                builder.add_arg(arg, "s")
            else:
                builder.add_arg(float(arg), "f")
        return builder.build()

    def frame_message(self, m: dict):
        """``/pipnet/frame``: the frame's numbers, its face count and size, capture and send times."""
        return self.message(
            "/pipnet/frame",
            m["frame"],
            m["source_frame"],
            len(m["faces"]),
            m["width"],
            m["height"],
            ("d", m["capture_time"]),
            ("d", time.monotonic()),
        )

    def send(self, messages) -> None:
        bundle = self.osc.OscBundleBuilder(self.osc.IMMEDIATELY)
        for message in messages:
            bundle.add_content(message)
        try:
            self.socket.sendto(bundle.build().dgram, self.address)
            self.sent += 1
            self.meter.tick()
        except OSError:  # no route, a full buffer, a refused port: the next frame tries again
            self.failed += 1

    def status(self, name: str) -> str:
        return f"{name} {self.address[0]}:{self.address[1]} {self.meter.rate:.0f} msg/s" + (
            f", {self.failed} failed" if self.failed else ""
        )

    def close(self) -> None:
        self.socket.close()


class OscSink:
    """``/pipnet/...`` bundles to HOST:PORT."""

    name = "OSC"

    def __init__(self, host: str, port: int):
        self._udp = _UdpBundles(host, port)

    def send(self, result: LiveResult) -> None:
        m, udp = result.message, self._udp
        messages = [udp.frame_message(m)]
        for face in m["faces"]:
            base = f"/pipnet/face/{face['id']}"
            pose = face["pose"]
            messages += [
                udp.message(f"{base}/box", face["success"], face["confidence"], *face["box"]),
                udp.message(f"{base}/points", *np.ravel(face["points_normalized"])),
                udp.message(f"{base}/points_px", *np.ravel(face["points"])),
                udp.message(f"{base}/point_confidence", *face["point_confidence"]),
                udp.message(f"{base}/eyes", face["eye_aspect_ratio"]["right"], face["eye_aspect_ratio"]["left"]),
                udp.message(f"{base}/mouth", face["mouth_aspect_ratio"]),
            ]
            if pose is not None:
                messages.append(
                    udp.message(f"{base}/pose", pose["yaw"], pose["pitch"], pose["roll"], *pose["translation"])
                )
            if face["blink"]:
                messages.append(udp.message(f"{base}/blink", 1))
        messages += [udp.message("/pipnet/event", event["type"], event["face"]) for event in m["events"]]
        udp.send(messages)

    def status(self) -> str:
        return self._udp.status("OSC")

    def close(self) -> None:
        self._udp.close()


def head_quaternion(yaw: float, pitch: float, roll: float) -> tuple[float, float, float, float]:
    """Our pose (degrees: +yaw towards the image's right, +pitch up, +roll clockwise on screen) as
    the head bone's rotation in VMC's Unity frame (left-handed, y up, z forward, the avatar facing
    the camera like a mirror): x, y, z, w, yaw about y, then pitch about x, then roll about z."""
    half = [math.radians(a) / 2 for a in (-pitch, -yaw, roll)]
    (cx, sx), (cy, sy), (cz, sz) = [(math.cos(a), math.sin(a)) for a in half]
    # Unity's order: z, then x, then y (q = qy * qx * qz).
    return (
        cy * sx * cz + sy * cx * sz,
        sy * cx * cz - cy * sx * sz,
        cy * cx * sz - sy * sx * cz,
        cy * cx * cz + sy * sx * sz,
    )


class VmcSink:
    """The first face as VMC: the head bone's rotation from our pose, blinks and mouth as blend
    shapes. The bone's position is left at 0 (a bone's position is its offset from its parent, the
    avatar's own; receivers take the rotation). ``/VMC/Ext/T`` is VMC's float: seconds since this
    stream began. The bundle also carries ``/pipnet/frame`` with the capture and send times, which
    VMC receivers route past."""

    name = "VMC"

    def __init__(self, host: str, port: int = VMC_PORT):
        self._udp = _UdpBundles(host, port)
        self._started = time.monotonic()

    def send(self, result: LiveResult) -> None:
        m, udp = result.message, self._udp
        messages = [
            udp.message("/VMC/Ext/OK", 1 if m["faces"] else 0),
            udp.message("/VMC/Ext/T", m["capture_time"] - self._started),
            udp.frame_message(m),
        ]
        face = next((f for f in m["faces"] if f["success"]), None)
        if face is not None:
            if face["pose"] is not None:
                pose = face["pose"]
                messages.append(
                    udp.message(
                        "/VMC/Ext/Bone/Pos",
                        "Head",
                        0.0,
                        0.0,
                        0.0,
                        *head_quaternion(pose["yaw"], pose["pitch"], pose["roll"]),
                    )
                )
            closed = [
                min(max((EAR_OPEN - face["eye_aspect_ratio"][eye]) / (EAR_OPEN - EAR_CLOSED), 0.0), 1.0)
                for eye in ("right", "left")
            ]
            # The person's right eye is the avatar's right: VMC names blend shapes from the avatar's side.
            messages += [
                udp.message("/VMC/Ext/Blend/Val", "Blink_R", closed[0]),
                udp.message("/VMC/Ext/Blend/Val", "Blink_L", closed[1]),
                udp.message("/VMC/Ext/Blend/Val", "A", min(face["mouth_aspect_ratio"] / MAR_WIDE, 1.0)),
            ]
        messages.append(udp.message("/VMC/Ext/Blend/Apply"))
        udp.send(messages)

    def status(self) -> str:
        return self._udp.status("VMC")

    def close(self) -> None:
        self._udp.close()

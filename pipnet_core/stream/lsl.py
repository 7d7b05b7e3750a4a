"""Lab Streaming Layer: the landmarks as a regular stream beside EEG, eye trackers and stimulus
markers, on LSL's clock, for LabRecorder to keep in one XDF file.

One outlet of type ``Landmarks``: the frame number and the send time (on LSL's clock), then a
fixed number of face slots (a sample's channel count cannot change), at the source's nominal rate,
each sample stamped with its frame's capture time on LSL's clock; channel labels, units and types
are in the stream's XML description. A slot without a face is NaN. Doubles: a clock in seconds, or
frame numbers past 2^24, would lose digits as float32. A second, irregular-rate outlet of type ``Markers`` carries the events as strings:
``found 0``, ``lost 0``, ``blink 0``. LSL buffers for its inlets itself: pushing never waits.
"""

from __future__ import annotations

import numpy as np

from pipnet_core.base.scheme import NUM_POINTS
from pipnet_core.stream import import_pylsl
from pipnet_core.stream.message import lsl_clock_offset
from pipnet_core.stream.runner import LiveResult, RateMeter

# The channels before the face slots, once per sample.
FRAME_CHANNELS = [("frame", "count", "Frame"), ("send_time", "seconds", "Time")]


def channels() -> list[tuple[str, str, str]]:
    """(label, unit, type) of one face slot's channels, in sample order."""
    slot = [
        ("present", "bool", "Status"),
        ("id", "id", "Status"),
        ("success", "bool", "Status"),
        ("confidence", "fraction", "Confidence"),
    ]
    slot += [(f"box_{name}", "pixels", "Box") for name in ("x", "y", "w", "h")]
    slot += [(f"{axis}{i}", "pixels", f"Position{axis.upper()}") for i in range(NUM_POINTS) for axis in ("x", "y")]
    slot += [(f"confidence{i}", "fraction", "Confidence") for i in range(NUM_POINTS)]
    slot += [(name, "degrees", "Orientation") for name in ("yaw", "pitch", "roll")]
    slot += [(f"t{axis}", "millimeters", "Position") for axis in "xyz"]
    slot += [("ear_right", "ratio", "Eye"), ("ear_left", "ratio", "Eye"), ("mouth_aspect_ratio", "ratio", "Mouth")]
    return slot


class LslSink:
    """``NAME`` (type Landmarks) and ``NAME-events`` (type Markers) outlets."""

    name = "LSL"

    def __init__(self, stream_name: str = "pipnet-live", face_slots: int = 1, nominal_rate: float = 30.0):
        lsl = self._lsl = import_pylsl()
        self.stream_name, self.slots = stream_name, max(face_slots, 1)
        self.layout = channels()
        labelled = FRAME_CHANNELS + [
            (f"face{slot}_{label}", unit, kind) for slot in range(self.slots) for label, unit, kind in self.layout
        ]
        info = lsl.StreamInfo(
            stream_name, "Landmarks", len(labelled), nominal_rate, lsl.cf_double64, f"pipnet-live:{stream_name}"
        )
        described = info.desc()
        described.append_child_value("manufacturer", "pipnet-live")
        listed = described.append_child("channels")
        for label, unit, kind in labelled:
            channel = listed.append_child("channel")
            channel.append_child_value("label", label)
            channel.append_child_value("unit", unit)
            channel.append_child_value("type", kind)
        self.outlet = lsl.StreamOutlet(info)
        markers = lsl.StreamInfo(
            f"{stream_name}-events",
            "Markers",
            1,
            lsl.IRREGULAR_RATE,
            lsl.cf_string,
            f"pipnet-live:{stream_name}-events",
        )
        self.markers = lsl.StreamOutlet(markers)
        self.offset = lsl_clock_offset() or 0.0
        self.meter = RateMeter()

    def sample(self, message: dict, send_time: float) -> list[float]:
        per_slot, first = len(self.layout), len(FRAME_CHANNELS)
        sample = np.full(first + self.slots * per_slot, np.nan)
        sample[:first] = message["frame"], send_time
        for slot, face in enumerate(message["faces"][: self.slots]):
            pose = face["pose"] or {"yaw": np.nan, "pitch": np.nan, "roll": np.nan, "translation": [np.nan] * 3}
            values = [
                1.0,
                face["id"],
                float(face["success"]),
                face["confidence"],
                *face["box"],
                *np.ravel(face["points"]),
                *face["point_confidence"],
                pose["yaw"],
                pose["pitch"],
                pose["roll"],
                *pose["translation"],
                face["eye_aspect_ratio"]["right"],
                face["eye_aspect_ratio"]["left"],
                face["mouth_aspect_ratio"],
            ]
            sample[first + slot * per_slot : first + (slot + 1) * per_slot] = values
        return sample.tolist()

    def send(self, result: LiveResult) -> None:
        stamp = result.captured_at + self.offset
        self.outlet.push_sample(self.sample(result.message, self._lsl.local_clock()), stamp)
        for kind, face_id in result.events:
            self.markers.push_sample([f"{kind} {face_id}"], stamp)
        self.meter.tick()

    def status(self) -> str:
        return f"LSL {self.stream_name} {self.meter.rate:.0f} samples/s" + (
            ", consumer connected" if self.outlet.have_consumers() else ""
        )

    def close(self) -> None:
        del self.outlet, self.markers  # liblsl closes an outlet when its last reference goes

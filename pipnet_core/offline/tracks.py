"""A file's faces as whole tracks: offline smoothing and blink events.

A live filter sees only the past; a file is there whole, so each face's track can be smoothed
with the frames after each one too (no lag), and its blinks found against the eyes' own open
level. A track is one face id over consecutive processed frames in which it was found; the frame
where a face was lost (``success`` False) is left as measured.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from pipnet_core.base.records import FrameFaces, points_box
from pipnet_core.base.scheme import SMOOTHING_REGIONS
from pipnet_core.offline.measures import Blink, detect_blinks, eye_aspect_ratios
from pipnet_core.offline.smoothing import smooth_track
from pipnet_core.pipeline.pose import estimate_pose

# A video's processed frames, in order. Read by position, so that plain (index, timestamp, faces)
# tuples, as the API documented before FrameFaces, work too.
Frames = list[FrameFaces]


def tracks(frames: Frames) -> list[list[tuple[int, int]]]:
    """Each track as (position in ``frames``, position in that frame's faces) pairs."""
    done, current = [], {}
    for position, (_, _, faces) in enumerate(frames):
        present = {}
        for slot, face in enumerate(faces):
            if face.success:
                track = present[face.id] = current.pop(face.id, [])
                track.append((position, slot))
        done += current.values()  # absent from this frame: the track ended
        current = present
    return done + list(current.values())


def smooth_offline(frames: Frames, mean_face: np.ndarray, camera: np.ndarray) -> Frames:
    """Every track smoothed whole (``offline.smoothing.smooth_track``); box and pose (seen by a camera of
    these intrinsics) follow the new points, and every face has a pose. The frames' face lists
    are updated in place (a long video's faces are not held twice) and returned."""
    for track in tracks(frames):
        points = np.stack([frames[p][2][s].points for p, s in track])
        times = np.array([frames[p][1] for p, _ in track])
        for (p, s), smoothed in zip(track, smooth_track(points, times, mean_face, SMOOTHING_REGIONS)):
            frames[p][2][s] = replace(frames[p][2][s], points=smoothed, box=points_box(smoothed))
    for _, _, faces in frames:
        faces[:] = [replace(face, pose=estimate_pose(face.points, camera)) for face in faces]
    return frames


def blinks(frames: Frames) -> list[Blink]:
    """Every track's blinks, in order of their start."""
    found = []
    for track in tracks(frames):
        ratios = np.array([eye_aspect_ratios(frames[p][2][s].points) for p, s in track])
        found += detect_blinks(
            frames[track[0][0]][2][track[0][1]].id,
            np.array([frames[p][0] for p, _ in track]),
            np.array([frames[p][1] for p, _ in track]),
            ratios[:, 0],
            ratios[:, 1],
        )
    return sorted(found, key=lambda blink: (blink.start_frame, blink.face_id))

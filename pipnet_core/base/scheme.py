"""The iBUG 300-W 68-point scheme: point groups, the mirror table and the normalising points."""

from __future__ import annotations

import numpy as np

NUM_POINTS = 68

# One convention for every left and right here: the person's. "Right" is the person's right eye,
# on the left of an upright, unmirrored picture.

# Each eye's six points in the order the eye aspect ratio pairs them (corner, upper lid, upper lid,
# corner, lower lid, lower lid: measures.aspect_ratio); their centres give the face's roll
# (crop.face_roll).
RIGHT_EYE = (36, 37, 38, 39, 40, 41)
LEFT_EYE = (42, 43, 44, 45, 46, 47)

# The inner lip: its two corners, then its upper points left to right and the lower points facing
# them (measures.mouth_aspect_ratio pairs 61-67, 62-66, 63-65).
INNER_LIP_CORNERS = (60, 64)
INNER_LIP_UPPER = (61, 62, 63)
INNER_LIP_LOWER = (67, 66, 65)

# Outer eye corners: NME is divided by their distance (0-based indices).
RIGHT_EYE_OUTER = 36
LEFT_EYE_OUTER = 45

# Regions the offline smoother smooths apart, each free to change suddenly on its own (a blink, a
# mouth opening at once); expressive ones also follow fast movement of their own (a blink closes
# the eyelids in about 70 ms), rigid ones (on the skull) stay steadiest: (points, expressive).
SMOOTHING_REGIONS: tuple[tuple[tuple[int, ...], bool], ...] = (
    (tuple(range(0, 17)), True),  # jaw
    (tuple(range(17, 27)), True),  # brows
    (tuple(range(27, 36)), False),  # nose
    ((36, 39, 42, 45), False),  # eye corners
    ((37, 38, 40, 41), True),  # right eyelids
    ((43, 44, 46, 47), True),  # left eyelids
    (tuple(range(48, 68)), True),  # mouth
)

# Polylines drawn by the overlay: (name, indices, closed).
CONTOURS: tuple[tuple[str, tuple[int, ...], bool], ...] = (
    ("jaw", tuple(range(0, 17)), False),
    ("right_brow", tuple(range(17, 22)), False),
    ("left_brow", tuple(range(22, 27)), False),
    ("nose_bridge", tuple(range(27, 31)), False),
    ("nose_base", tuple(range(30, 36)) + (30,), False),
    ("right_eye", tuple(range(36, 42)), True),
    ("left_eye", tuple(range(42, 48)), True),
    ("outer_lips", tuple(range(48, 60)), True),
    ("inner_lips", tuple(range(60, 68)), True),
)

# Pairs of points that swap under a horizontal flip; every other point maps to itself.
_MIRROR_PAIRS = (
    *((i, 16 - i) for i in range(8)),  # jaw
    *((17 + i, 26 - i) for i in range(5)),  # brows
    (31, 35),
    (32, 34),  # nostrils
    (36, 45),
    (37, 44),
    (38, 43),
    (39, 42),
    (40, 47),
    (41, 46),  # eyes
    (48, 54),
    (49, 53),
    (50, 52),
    (55, 59),
    (56, 58),  # outer lips
    (60, 64),
    (61, 63),
    (65, 67),  # inner lips
)


def _flip_table() -> np.ndarray:
    table = np.arange(NUM_POINTS)
    for a, b in _MIRROR_PAIRS:
        table[a], table[b] = b, a
    table.setflags(write=False)
    return table


# After mirroring an image, new point i is old point FLIP_INDEX[i].
FLIP_INDEX = _flip_table()

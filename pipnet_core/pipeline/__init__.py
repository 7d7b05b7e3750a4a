"""A frame in, faces out: tracking, alignment, live smoothing, plausibility and head pose, joined by
``Landmarker``."""

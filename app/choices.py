"""What the window offers, with the words it shows: overlay layers and their keys, detectors,
camera resolutions and frame rates."""

from __future__ import annotations

OVERLAY_LABELS = {
    "points": "Points",
    "contours": "Contours",
    "indices": "Point indices",
    "box": "Face box",
    "face_id": "Face id",
    "pose_axes": "Head pose axes",
}
# BlazeFace short range is the fastest and made for a webcam; full range finds small, far faces.
DETECTOR_LABELS = {
    "blazeface": "Near (webcam, fastest)",
    "blazeface-full": "Far (small faces)",
    "blazeface-both": "Near and far",
}
OVERLAY_KEYS = {"points": "P", "contours": "C", "indices": "N", "box": "B", "face_id": "I", "pose_axes": "H"}
RESOLUTIONS = {
    "Default resolution": (0, 0),
    "640 x 480": (640, 480),
    "1280 x 720": (1280, 720),
    "1920 x 1080": (1920, 1080),
}
FRAME_RATES = {"Default frame rate": 0.0, "15 FPS": 15.0, "30 FPS": 30.0, "60 FPS": 60.0}

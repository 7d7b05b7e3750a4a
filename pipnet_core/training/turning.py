"""Turned faces made from labelled ones: the "face profiling" of 300W-LP (Zhu et al., CVPR 2016).

A face is lifted to 3D with the depth of MediaPipe Face Mesh's 468 points (used here, when data is
prepared, never at run time), or, where Face Mesh finds no face, with the generic 3D face of
assets/face_model_3d.txt scaled to its labels (a frontal face's depths: Face Mesh lifted every
HELEN test face). It is turned (yaw, and a little pitch) about the depth of its outline, where the
neck's axis lies, and drawn again triangle by triangle, farthest first, so the near cheek covers the
far one. A ring of points just outside the head moves with the head's edge; a ring further out and the
image border stay, so the background stretches over what the turn uncovers. The 68 labels turn with
the face, except that the jaw points on the far side, which the turn hides behind the cheek, move
out to the visible outline on their row, where 300-W puts the jaw of a turned face.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipnet_core.base.scheme import LEFT_EYE_OUTER, RIGHT_EYE_OUTER
from pipnet_core.pipeline.pose import camera_matrix, estimate_pose, face_model_3d

JAW = np.arange(17)
CHIN = 8
NOSE_TIP = 30
HEAD_RING = 1.25  # the ring that moves with the head's edge, as a multiple of the head's radius
STILL_RING = 2.2  # the ring that stays: between the two, the background stretches
# What the head turns about, behind the generic face's nose tip: about the depth of its outline.
GENERIC_CENTRE_MM = 90.0
SMOOTHING_NEIGHBOURS = 12  # Face Mesh points whose depths each point's depth is averaged over
BACKGROUND = 1e9  # added to a background point's depth: farther than any of the head's


@dataclass(frozen=True)
class Lifted:
    """A labelled face in 3D, in the image's pixels (x right, y down, z away from the camera)."""

    image: np.ndarray
    points: np.ndarray  # (68, 3) the labels with their depth
    surface: np.ndarray  # (M, 3) points of the face's surface that the warp follows
    centre: np.ndarray  # (3,) what the head turns about
    yaw: float  # the face's own yaw before turning, degrees (+: towards the image's right)
    lifted_by: str  # "face mesh" or "generic face"

    @property
    def eye_distance(self) -> float:
        """The outer eye corners' distance in 3D: the same at any turn, unlike the picture's."""
        return float(np.linalg.norm(self.points[RIGHT_EYE_OUTER] - self.points[LEFT_EYE_OUTER]))


def lift(image: np.ndarray, points: np.ndarray, mesh: np.ndarray | None) -> Lifted:
    """``points``: the 68 labels (pixels); ``mesh``: Face Mesh's (468, 3) points in pixels (its depth
    in the scale of x, from the head's centre), or None for the generic face."""
    height, width = image.shape[:2]
    pose = estimate_pose(points.astype(np.float64), camera_matrix(width, height))
    yaw = 0.0 if pose is None else pose.yaw
    if mesh is not None:
        surface = mesh.astype(np.float64)
        # Face Mesh's depth is noisy from point to point along the outline; unsmoothed, a turn
        # folds the strip there into a saw of triangles.
        surface[:, 2] = _depth_at(surface[:, :2], surface, k=SMOOTHING_NEIGHBOURS)
        depth = _depth_at(points, surface)
        # A head turns about its neck, which lies about as deep as the face's outline (the ears):
        # about that depth, the outline stays where it is and the face moves across it.
        outline = cv2.convexHull(surface[:, :2].astype(np.float32), returnPoints=False).ravel()
        centre = np.array([*surface[:, :2].mean(axis=0), float(np.median(surface[outline, 2]))])
        lifted_by = "face mesh"
    else:
        model = face_model_3d()
        depth = _scale(model[:, :2], points) * model[:, 2]
        surface = np.column_stack([points, depth])
        centre = np.array([*points.mean(axis=0), _scale(model[:, :2], points) * GENERIC_CENTRE_MM])
        lifted_by = "generic face"
    return Lifted(image, np.column_stack([points, depth]), surface, centre, yaw, lifted_by)


def turn(face: Lifted, yaw: float, pitch: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The face turned by ``yaw`` (+: towards the image's right) and ``pitch`` (+: up) degrees:
    the new image and its 68 labels."""
    rotate = _rotation(yaw, pitch, face.centre)
    height, width = face.image.shape[:2]
    src, dst, depth = _control_points(face, rotate, width, height)
    triangles = _triangles(src, width, height)
    image = _warp(face.image, src, dst, depth, triangles)
    labels = rotate(face.points)
    head = np.vstack([face.surface, face.points])
    return image, _jaw_on_outline(face.points[:, :2], head[:, :2], labels[:, :2], rotate(head)[:, :2])


def turning_clip(face: Lifted, max_yaw: float, frames: int, fps: float = 30.0):
    """A clip of ``face`` turning from frontal to ``max_yaw`` degrees one way, back, to the other
    side and back (yaw = max_yaw * sin of the clip's phase): (frame, timestamp, its 68 labels) each."""
    for index in range(frames):
        image, labels = turn(face, max_yaw * float(np.sin(2 * np.pi * index / frames)))
        yield image, index / fps, labels


def _depth_at(points: np.ndarray, surface: np.ndarray, k: int = 4) -> np.ndarray:
    """Each point's depth: the inverse-distance mean of its ``k`` nearest surface points (in the
    image), the distances softened by 1% of the face's size so that any face size weighs alike."""
    distance = np.linalg.norm(points[:, None, :2] - surface[None, :, :2], axis=-1)
    nearest = np.argsort(distance, axis=1)[:, :k]
    soften = 0.01 * float(np.ptp(surface[:, :2], axis=0).max())
    weight = 1.0 / (np.take_along_axis(distance, nearest, axis=1) + soften)
    return (surface[nearest, 2] * weight).sum(axis=1) / weight.sum(axis=1)


def _scale(source: np.ndarray, target: np.ndarray) -> float:
    """The scale of the least-squares similarity taking ``source`` points onto ``target``."""
    s, t = source - source.mean(axis=0), target - target.mean(axis=0)
    return float(np.linalg.svd(t.T @ s, compute_uv=False).sum() / (s**2).sum())


def _rotation(yaw: float, pitch: float, centre: np.ndarray):
    """Points (N, 3) -> the same points turned about ``centre``: pitch first, then yaw."""
    a, b = np.radians(yaw), np.radians(pitch)
    # +yaw takes the nose (nearer the camera than the centre) to the image's right; +pitch up.
    yaw_matrix = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])
    pitch_matrix = np.array([[1, 0, 0], [0, np.cos(b), np.sin(b)], [0, -np.sin(b), np.cos(b)]])
    matrix = yaw_matrix @ pitch_matrix

    def rotate(points: np.ndarray) -> np.ndarray:
        return (points - centre) @ matrix.T + centre

    return rotate


def _control_points(face: Lifted, rotate, width: int, height: int):
    """Where each control point is in the picture and goes in the turned one, and the depth that
    orders the drawing (background points behind every point of the head)."""
    head = face.surface
    turned = rotate(head)
    centre = head[:, :2].mean(axis=0)
    outline = cv2.convexHull(head[:, :2].astype(np.float32), returnPoints=False).ravel()
    angles = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    edge = _hull_radius(head[outline, :2] - centre, angles)
    directions = np.column_stack([np.cos(angles), np.sin(angles)])
    ring = centre + directions * edge[:, None] * HEAD_RING
    # The moving ring goes where the outline next to it goes (hair and ears move with the head).
    nearest = outline[np.argmin(np.linalg.norm(ring[:, None] - head[None, outline, :2], axis=-1), axis=1)]
    ring_to = ring + turned[nearest, :2] - head[nearest, :2]
    still = np.vstack(
        [
            centre + directions * edge[:, None] * STILL_RING,
            [
                (x, y)
                for x in (0, width / 2, width - 1)
                for y in (0, height / 2, height - 1)
                if (x, y) != (width / 2, height / 2)
            ],
        ]
    )
    src = np.vstack([head[:, :2], ring, still])
    dst = np.vstack([turned[:, :2], ring_to, still])
    # The order triangles are drawn in: the background first (the still ring, then the moving one),
    # then the head's surface, farthest first, so the head always covers the background.
    depth = np.concatenate([turned[:, 2], BACKGROUND + turned[nearest, 2], np.full(len(still), np.inf)])
    inside = (src[:, 0] >= 0) & (src[:, 0] <= width - 1) & (src[:, 1] >= 0) & (src[:, 1] <= height - 1)
    src, dst, depth = src[inside], dst[inside], depth[inside]
    _, first = np.unique(np.round(src, 1), axis=0, return_index=True)  # one point per place
    keep = np.sort(first)
    return src[keep], dst[keep], depth[keep]


def _hull_radius(hull: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """How far the (centred) convex hull reaches in each direction."""
    hull_angles = np.arctan2(hull[:, 1], hull[:, 0])
    radius = np.linalg.norm(hull, axis=1)
    order = np.argsort(hull_angles)
    return np.interp(angles, hull_angles[order], radius[order], period=2 * np.pi)


def _triangles(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """A Delaunay triangulation of the points, (T, 3) indices."""
    subdivision = cv2.Subdiv2D((0, 0, width, height))
    index = {}
    for i, (x, y) in enumerate(points.astype(np.float32)):  # Subdiv2D keeps float32: keys match exactly
        subdivision.insert((float(x), float(y)))
        index[(float(x), float(y))] = i
    triangles = []
    for triangle in subdivision.getTriangleList().reshape(-1, 3, 2):
        found = [index.get((float(x), float(y))) for x, y in triangle]
        if None not in found:
            triangles.append(found)
    return np.array(triangles, dtype=np.int64)


def _warp(image: np.ndarray, src: np.ndarray, dst: np.ndarray, depth: np.ndarray, triangles: np.ndarray):
    """Each triangle's pixels carried from ``src`` to ``dst``, farthest first, so that what turns
    towards the camera covers what turns away; a gap left between triangles is filled from around it."""
    height, width = image.shape[:2]
    owner = np.full((height, width), -1.0, np.float32)
    affines = np.zeros((len(triangles), 2, 3))
    order = np.argsort(-depth[triangles].mean(axis=1))
    for t in order:
        a, b = src[triangles[t]], dst[triangles[t]]
        (ux, uy), (vx, vy) = b[1] - b[0], b[2] - b[0]
        if abs(ux * vy - uy * vx) < 1e-3:
            continue  # flattened to a line: nothing of it shows
        affines[t] = cv2.getAffineTransform(b.astype(np.float32), a.astype(np.float32))
        cv2.fillConvexPoly(owner, np.round(b * 16).astype(np.int32), float(t), cv2.LINE_8, 4)
    ids = owner.astype(np.int64)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    chosen = affines[np.maximum(ids, 0)]
    map_x = (chosen[..., 0, 0] * xs + chosen[..., 0, 1] * ys + chosen[..., 0, 2]).astype(np.float32)
    map_y = (chosen[..., 1, 0] * xs + chosen[..., 1, 1] * ys + chosen[..., 1, 2]).astype(np.float32)
    turned = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    gaps = (ids < 0).astype(np.uint8)
    return cv2.inpaint(turned, gaps, 3, cv2.INPAINT_TELEA) if gaps.any() else turned


def _jaw_on_outline(before: np.ndarray, head_before: np.ndarray, after: np.ndarray, head_after: np.ndarray):
    """The 68 turned labels, the far side's jaw points moved out towards the head's outline on
    their row by as much as the turn hid them (300-W labels the visible contour of a turned face,
    not the hidden jaw). ``head_*``: the surface and the labels, before and after the turn."""
    points = after.copy()
    far = np.sign(after[NOSE_TIP, 0] - head_after[:, 0].mean())  # the side the nose turned towards
    if far == 0:
        return points
    band = 0.04 * np.ptp(after[:, 1])
    for j in JAW:
        if (before[j, 0] - before[CHIN, 0]) * far <= 0:
            continue  # the near side, or the chin: visible as it is (chosen before the turn, behind
            # which the far jaw may swing past the chin)
        hidden = _inset(after[j], head_after, far, band) - _inset(before[j], head_before, far, band)
        points[j, 0] += far * max(hidden, 0.0)
    return points


def _inset(point: np.ndarray, head: np.ndarray, far: float, band: float) -> float:
    """How far inside the head's outline (on the ``far`` side, in the point's row) a point lies."""
    row = head[np.abs(head[:, 1] - point[1]) <= band, 0]
    return max(float((far * row).max()) - far * float(point[0]), 0.0) if len(row) else 0.0

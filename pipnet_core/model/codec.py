"""PIPNet's target codec: landmarks in crop pixels <-> the network's grid outputs.

The network sees a square crop of ``input_size`` pixels and predicts on a grid of
``input_size // stride`` cells per side. For every landmark it outputs

* a score map (1 in the cell holding the landmark, 0 elsewhere),
* x/y offsets of the landmark inside that cell, in cell units (0..1),
* x/y offsets, from that same cell, of the landmark's ``C`` nearest neighbours in the mean face.

``encode`` turns ground-truth points into exactly those maps; ``decode`` turns maps back into points
(argmax cell + offset, averaged with the neighbours' votes). Training, evaluation, the torch and the
ONNX Runtime paths all go through this one class, so a round trip ``decode(encode(p)) == p`` is the
contract the tests pin down.

Coordinates: OpenCV's convention, pixel centres at integers. A point at crop pixel ``x`` lies at
grid position ``(x + 0.5) / stride`` and belongs to cell ``floor`` of that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GridOutputs:
    """Network outputs for a batch: score/offsets (B, N, G, G); neighbour offsets (B, N*C, G, G)."""

    score: np.ndarray
    offset_x: np.ndarray
    offset_y: np.ndarray
    neighbour_x: np.ndarray
    neighbour_y: np.ndarray


class PIPCodec:
    def __init__(self, mean_face: np.ndarray, neighbours: np.ndarray, input_size: int = 256, stride: int = 32):
        mean_face = np.asarray(mean_face, dtype=np.float32)
        neighbours = np.asarray(neighbours, dtype=np.int64)
        if input_size % stride:
            raise ValueError(f"input size {input_size} is not a multiple of stride {stride}")
        if neighbours.ndim != 2 or neighbours.shape[0] != mean_face.shape[0]:
            raise ValueError("neighbour table must have one row per landmark")
        self.mean_face = mean_face
        self.neighbours = neighbours
        self.input_size = input_size
        self.stride = stride
        self.grid = input_size // stride
        # Votes for point j come from every landmark that lists j as a neighbour. For each point,
        # the flat (landmark, neighbour) slots holding its votes, padded with a slot that is always
        # zero: decode then gathers and sums (no BLAS call, whose threads stall on a busy CPU).
        n, c = neighbours.shape
        voters = [np.flatnonzero(neighbours.reshape(-1) == j) for j in range(n)]
        width = max(len(v) for v in voters)
        self._voter_slots = np.full((n, max(width, 1)), n * c, dtype=np.int64)
        for j, v in enumerate(voters):
            self._voter_slots[j, : len(v)] = v
        # Each point is its own estimate averaged with its voters': how many estimates each averages.
        self.votes_per_point = np.array([1.0 + len(v) for v in voters], dtype=np.float32)

    @property
    def num_points(self) -> int:
        return self.mean_face.shape[0]

    @property
    def num_neighbours(self) -> int:
        return self.neighbours.shape[1]

    @classmethod
    def fit(
        cls, crop_points: np.ndarray, num_neighbours: int = 10, input_size: int = 256, stride: int = 32
    ) -> PIPCodec:
        """Mean face and nearest-neighbour table from training points, shape (S, N, 2), in crop pixels."""
        mean_face = np.asarray(crop_points, dtype=np.float64).mean(axis=0)
        dist = np.linalg.norm(mean_face[:, None, :] - mean_face[None, :, :], axis=-1)
        np.fill_diagonal(dist, np.inf)
        neighbours = np.argsort(dist, axis=1, kind="stable")[:, :num_neighbours]
        return cls(mean_face, neighbours, input_size, stride)

    # -- serialisation: the runtime rebuilds the codec from the model file's metadata --------------
    def to_dict(self) -> dict:
        return {
            "input_size": self.input_size,
            "stride": self.stride,
            "mean_face": np.round(self.mean_face, 4).tolist(),
            "neighbours": self.neighbours.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> PIPCodec:
        return cls(
            np.array(data["mean_face"]), np.array(data["neighbours"]), int(data["input_size"]), int(data["stride"])
        )

    # -- encode ------------------------------------------------------------------------------------
    def encode(self, points: np.ndarray) -> GridOutputs:
        """Targets for one face: points (N, 2) in crop pixels -> maps without the batch axis.

        Points outside the crop are clamped into the border cells, so their offsets stay in range.
        """
        g = self.grid
        pos = (np.asarray(points, dtype=np.float32) + 0.5) / self.stride
        pos = np.clip(pos, 0.0, g - 1e-4)
        cell = np.floor(pos).astype(np.int64)  # (N, 2) as (cx, cy)
        n, c = self.neighbours.shape
        rows = np.arange(n)
        score = np.zeros((n, g, g), np.float32)
        score[rows, cell[:, 1], cell[:, 0]] = 1.0
        offset = pos - cell
        offset_x = np.zeros_like(score)
        offset_y = np.zeros_like(score)
        offset_x[rows, cell[:, 1], cell[:, 0]] = offset[:, 0]
        offset_y[rows, cell[:, 1], cell[:, 0]] = offset[:, 1]
        # Neighbour j of landmark i, seen from i's cell.
        nb_offset = pos[self.neighbours] - cell[:, None, :]  # (N, C, 2)
        nb_rows = np.arange(n * c)
        nb_cells = np.repeat(cell, c, axis=0)
        neighbour_x = np.zeros((n * c, g, g), np.float32)
        neighbour_y = np.zeros((n * c, g, g), np.float32)
        neighbour_x[nb_rows, nb_cells[:, 1], nb_cells[:, 0]] = nb_offset[..., 0].reshape(-1)
        neighbour_y[nb_rows, nb_cells[:, 1], nb_cells[:, 0]] = nb_offset[..., 1].reshape(-1)
        return GridOutputs(score, offset_x, offset_y, neighbour_x, neighbour_y)

    # -- decode ------------------------------------------------------------------------------------
    def decode(self, out: GridOutputs) -> tuple[np.ndarray, np.ndarray]:
        """Batch outputs -> (points (B, N, 2) in crop pixels, confidence (B, N) in 0..1)."""
        b, n, g, _ = out.score.shape
        c = self.num_neighbours
        flat_score = out.score.reshape(b, n, g * g)
        best = flat_score.argmax(axis=2)  # (B, N)
        confidence = np.clip(np.take_along_axis(flat_score, best[..., None], axis=2)[..., 0], 0.0, 1.0)
        # float32 throughout: the maps are float32 and int64 cells would promote them.
        cell_y, cell_x = (c.astype(np.float32) for c in np.divmod(best, g))

        def at_best(maps: np.ndarray, per_point: int) -> np.ndarray:
            flat = maps.reshape(b, n, per_point, g * g)
            return np.take_along_axis(flat, best[:, :, None, None], axis=3)[..., 0]

        own_x = cell_x + at_best(out.offset_x, 1)[..., 0]
        own_y = cell_y + at_best(out.offset_y, 1)[..., 0]

        def vote_sums(cells: np.ndarray, maps: np.ndarray) -> np.ndarray:
            votes = (cells[..., None] + at_best(maps, c)).reshape(b, n * c)
            padded = np.concatenate([votes, np.zeros((b, 1), np.float32)], axis=1)
            return padded[:, self._voter_slots].sum(axis=2)

        x = (own_x + vote_sums(cell_x, out.neighbour_x)) / self.votes_per_point
        y = (own_y + vote_sums(cell_y, out.neighbour_y)) / self.votes_per_point
        points = np.stack([x, y], axis=-1) * self.stride - 0.5
        return points.astype(np.float32), confidence.astype(np.float32)

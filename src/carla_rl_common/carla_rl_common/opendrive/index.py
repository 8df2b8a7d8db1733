"""Vectorised point-to-lane queries over driving-lane centreline segments.

Candidate search runs on *simplified* centrelines (Douglas-Peucker, 1 cm): a straight lane is a
few segments instead of one every half metre. A uniform grid hash maps each cell to the
segments whose lane area, widened by ``margin``, overlaps it, so a point's cell lists every lane
that contains the point or lies within ``margin`` of it. Points further away fall back to a k-d
tree over the samples. The chosen lane's ``s``, ``t`` and heading are then refined by exact
projection on its full-resolution centreline.

The best lane is the one the point lies deepest inside (smallest ``distance - width / 2``),
which, unlike the nearest centreline, is right next to a wide lane; among overlapping lanes
(junctions) a small heading term prefers the lane the query yaw agrees with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ..geometry import wrap_angle
from .types import Lane

_CHUNK = 8192  # points per vectorised batch, bounds the size of the candidate-pair arrays
_FALLBACK_K = 8  # samples considered for points far from every lane


@dataclass
class Projection:
    """Per-point result of :meth:`LaneIndex.query`; ``lane`` is -1 where no lane is in range."""

    lane: np.ndarray
    s: np.ndarray
    t: np.ndarray
    heading: np.ndarray
    distance: np.ndarray
    on_road: np.ndarray


@dataclass
class _Pairs:
    """Candidate (point, segment) pairs with the exact projection of the point on the segment."""

    point: np.ndarray
    segment: np.ndarray
    s: np.ndarray
    t: np.ndarray
    heading: np.ndarray
    distance: np.ndarray
    excess: np.ndarray  # distance outside the lane's area; <= 0 inside

    def take(self, index: np.ndarray) -> _Pairs:
        return _Pairs(*(getattr(self, name)[index] for name in self.__dataclass_fields__))


class _Polylines:
    """Lane centrelines (rows ``kept`` of each lane) concatenated; segment ``i`` joins samples
    ``i`` and ``i + 1`` of one lane."""

    def __init__(self, lanes: list[Lane], kept: list[np.ndarray]) -> None:
        sizes = np.array([len(k) for k in kept], dtype=np.int64)
        self.lane_of = np.repeat(np.arange(len(lanes)), sizes)
        self.start = np.cumsum(sizes) - sizes  # first sample of each lane
        self.xy = _gather([lane.centerline for lane in lanes], kept, (0, 2))
        self.heading = _gather([lane.headings for lane in lanes], kept, (0,))
        self.s = _gather([lane.s for lane in lanes], kept, (0,))
        self.width = _gather([lane.widths for lane in lanes], kept, (0,))
        self.segments = np.flatnonzero(self.lane_of[:-1] == self.lane_of[1:])
        self.first_segment = np.zeros(len(self.xy), bool)
        self.first_segment[self.start[sizes > 1]] = True
        self.last_segment = np.zeros(len(self.xy), bool)
        self.last_segment[(self.start + sizes - 2)[sizes > 1]] = True

    def project(self, xy: np.ndarray, point: np.ndarray, segment: np.ndarray) -> _Pairs:
        """Exact projection of ``xy[point]`` on each ``segment``."""
        a, b = self.xy[segment], self.xy[segment + 1]
        v = b - a
        q = xy[point] - a
        length2 = np.einsum("ij,ij->i", v, v)
        length = np.sqrt(length2)
        raw = np.einsum("ij,ij->i", q, v) / np.maximum(length2, 1e-18)
        u = np.clip(raw, 0.0, 1.0)
        distance = np.hypot(*(q - u[:, None] * v).T)
        t = np.where(length > 0, (v[:, 0] * q[:, 1] - v[:, 1] * q[:, 0]) / np.maximum(length, 1e-12), distance)
        half = (self.width[segment] + u * (self.width[segment + 1] - self.width[segment])) / 2
        # Past a lane's first or last sample the point is beyond the lane's end, not beside it.
        overshoot = (
            np.maximum(
                np.where(self.first_segment[segment], -raw, 0.0), np.where(self.last_segment[segment], raw - 1.0, 0.0)
            )
            * length
        )
        excess = np.where(overshoot > 0, np.maximum(np.abs(t) - half, overshoot), distance - half)
        h0 = self.heading[segment]
        heading = wrap_angle(h0 + u * wrap_angle(self.heading[segment + 1] - h0))
        s = self.s[segment] + u * (self.s[segment + 1] - self.s[segment])
        return _Pairs(point, segment, s, t, heading, distance, excess)


class LaneIndex:
    """Spatial index over the centrelines of ``lanes`` (normally the driving lanes)."""

    def __init__(self, lanes: list[Lane], cell: float = 4.0, margin: float = 2.0, tolerance: float = 0.01) -> None:
        self.cell, self.margin = cell, margin
        self.dense = _Polylines(lanes, [np.arange(len(lane.s)) for lane in lanes])
        self.coarse = _Polylines(
            lanes, [_simplify(np.column_stack([lane.centerline, lane.widths / 2]), tolerance) for lane in lanes]
        )
        # Strictly ordered key over all dense samples: a lane's s, shifted past all earlier lanes.
        lengths = np.array([lane.length for lane in lanes])
        self._lane_base = np.cumsum(lengths + 1.0) - (lengths + 1.0)
        self._dense_key = self.dense.s + self._lane_base[self.dense.lane_of]
        self._build_grid()
        self._tree = cKDTree(self.coarse.xy) if len(self.coarse.xy) else None

    def _build_grid(self) -> None:
        """CSR table cell -> coarse segments whose widened lane area overlaps the cell."""
        polylines, segments = self.coarse, self.coarse.segments
        a, b = polylines.xy[segments], polylines.xy[segments + 1]
        reach = np.maximum(polylines.width[segments], polylines.width[segments + 1]) / 2 + self.margin
        low = np.minimum(a, b) - reach[:, None]
        high = np.maximum(a, b) + reach[:, None]
        self.origin = low.min(axis=0) if len(low) else np.zeros(2)
        first = np.floor((low - self.origin) / self.cell).astype(np.int64)
        last = np.floor((high - self.origin) / self.cell).astype(np.int64)
        self.shape = (last.max(axis=0) + 1) if len(last) else np.ones(2, np.int64)
        span = last - first + 1
        counts = span[:, 0] * span[:, 1]
        owner = np.repeat(np.arange(len(segments)), counts)
        local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        cells = (first[owner, 1] + local // span[owner, 0]) * self.shape[0] + first[owner, 0] + local % span[owner, 0]
        self.cell_segments = segments[owner[np.argsort(cells, kind="stable")]]
        self.cell_start = np.concatenate([[0], np.cumsum(np.bincount(cells, minlength=int(np.prod(self.shape))))])

    # -- queries ---------------------------------------------------------------------------------

    def query(
        self,
        xy: np.ndarray,
        yaw: np.ndarray | None = None,
        heading_weight: float = 1e-3,
        max_distance: float = 50.0,
    ) -> Projection:
        """Best lane for every point (see module doc); ``heading_weight`` is metres per unit of
        ``1 - cos(yaw - lane heading)`` and only decides between lanes of similar fit."""
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        yaw = None if yaw is None else np.broadcast_to(np.asarray(yaw, dtype=float), (len(xy),))
        parts = [
            self._query_chunk(
                xy[i : i + _CHUNK], None if yaw is None else yaw[i : i + _CHUNK], heading_weight, max_distance
            )
            for i in range(0, len(xy), _CHUNK)
        ]
        if not parts:
            return _empty_projection(0)
        return Projection(*(np.concatenate([getattr(p, f) for p in parts]) for f in Projection.__dataclass_fields__))

    def contains(self, xy: np.ndarray) -> np.ndarray:
        """Whether each point lies inside any indexed lane."""
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        inside = np.zeros(len(xy), bool)
        for i in range(0, len(xy), _CHUNK):
            chunk = xy[i : i + _CHUNK]
            pairs = self.coarse.project(chunk, *self._grid_candidates(chunk))
            inside[i + pairs.point[pairs.excess <= 0]] = True
        return inside

    def _query_chunk(self, xy: np.ndarray, yaw: np.ndarray | None, weight: float, max_distance: float) -> Projection:
        result = _empty_projection(len(xy))
        grid = self.coarse.project(xy, *self._grid_candidates(xy))
        points, best, inside = _best(grid, yaw, weight)
        _store(result, points, best, inside, self.coarse.lane_of)
        # Only lanes within `margin` of a point are guaranteed to be in its cell: search wider.
        far = np.ones(len(xy), bool)
        far[points[best.excess <= self.margin]] = False
        if far.any() and self._tree is not None:
            nearest = self.coarse.project(xy, *self._nearest_candidates(xy, np.flatnonzero(far), max_distance))
            pairs = _concat(grid.take(np.flatnonzero(far[grid.point])), nearest)
            _store(result, *_best(pairs, yaw, weight), self.coarse.lane_of)
        self._refine(xy, result)
        too_far = ~(result.distance <= max_distance)
        result.lane[too_far] = -1
        result.distance[too_far] = np.inf
        for values in (result.s, result.t, result.heading):
            values[too_far] = np.nan
        return result

    def _grid_candidates(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(point, coarse segment) pairs from each point's grid cell, grouped by point."""
        cell_xy = np.floor((xy - self.origin) / self.cell).astype(np.int64)
        valid = np.all((cell_xy >= 0) & (cell_xy < self.shape), axis=1)
        cells = np.where(valid, cell_xy[:, 1] * self.shape[0] + cell_xy[:, 0], 0)
        begin = self.cell_start[cells]
        counts = np.where(valid, self.cell_start[cells + 1] - begin, 0)
        point = np.repeat(np.arange(len(xy)), counts)
        local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        return point, self.cell_segments[np.repeat(begin, counts) + local]

    def _nearest_candidates(
        self, xy: np.ndarray, points: np.ndarray, max_distance: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(point, coarse segment) pairs around the nearest samples of ``points``."""
        samples = self.coarse.xy
        k = min(_FALLBACK_K, len(samples))
        _, nearest = self._tree.query(xy[points], k=k, distance_upper_bound=max_distance)  # type: ignore[union-attr]
        segment = np.repeat(nearest.reshape(len(points), k), 2, axis=1)
        segment[:, 0::2] -= 1  # the segments before and after each sample
        segment = segment.ravel()
        point = np.repeat(points, 2 * k)
        usable = (segment >= 0) & (segment < len(samples) - 1)  # missing neighbours are index len
        usable[usable] &= self.coarse.lane_of[segment[usable]] == self.coarse.lane_of[segment[usable] + 1]
        return point[usable], segment[usable]

    def _refine(self, xy: np.ndarray, result: Projection) -> None:
        """Re-project each located point on the full-resolution centreline of its lane, around
        the coarse ``s`` (the dense segment there and its two neighbours)."""
        located = np.flatnonzero(result.lane >= 0)
        lane = result.lane[located]
        first = self.dense.start[lane]
        last = np.append(self.dense.start[1:], len(self.dense.xy))[lane] - 2
        i = np.searchsorted(self._dense_key, result.s[located] + self._lane_base[lane], side="right") - 1
        segment = np.clip(i[:, None] + np.array([-1, 0, 1]), first[:, None], np.maximum(last, first)[:, None])
        pairs = self.dense.project(xy, np.repeat(located, 3), segment.ravel())
        best = pairs.take(np.arange(len(located)) * 3 + np.argmin(pairs.distance.reshape(-1, 3), axis=1))
        result.s[located], result.t[located], result.heading[located] = best.s, best.t, best.heading
        result.distance[located] = best.distance


def _simplify(points: np.ndarray, tolerance: float, max_step: float = 8.0) -> np.ndarray:
    """Indices of the samples to keep so that every dropped sample is within ``tolerance`` of
    the chord between kept ones (Douglas-Peucker on ``x, y, half width``), chords <= ``max_step``.
    """
    keep = np.zeros(len(points), bool)
    keep[[0, -1]] = True
    stack = [(0, len(points) - 1)]
    while stack:
        i, j = stack.pop()
        if j <= i + 1:
            continue
        a, v = points[i], points[j] - points[i]
        q = points[i + 1 : j] - a
        u = np.clip(q @ v / max(float(v @ v), 1e-18), 0.0, 1.0)
        error = np.linalg.norm(q - u[:, None] * v, axis=1)
        worst = int(np.argmax(error))
        if error[worst] > tolerance:
            split = i + 1 + worst
        elif np.hypot(v[0], v[1]) > max_step:
            split = (i + j) // 2
        else:
            continue
        keep[split] = True
        stack += [(i, split), (split, j)]
    return np.flatnonzero(keep)


def _gather(arrays: list[np.ndarray], kept: list[np.ndarray], empty_shape: tuple[int, ...]) -> np.ndarray:
    """Concatenate the kept rows of every lane's array."""
    if not arrays:
        return np.zeros(empty_shape)
    return np.concatenate([array[k] for array, k in zip(arrays, kept, strict=True)])


def _empty_projection(n: int) -> Projection:
    nan = np.full(n, np.nan)
    return Projection(np.full(n, -1, np.int64), nan, nan.copy(), nan.copy(), np.full(n, np.inf), np.zeros(n, bool))


def _concat(first: _Pairs, second: _Pairs) -> _Pairs:
    """Both pair sets, regrouped by point."""
    merged = _Pairs(*(np.concatenate([getattr(first, f), getattr(second, f)]) for f in _Pairs.__dataclass_fields__))
    return merged.take(np.argsort(merged.point, kind="stable"))


def _best(pairs: _Pairs, yaw: np.ndarray | None, weight: float) -> tuple[np.ndarray, _Pairs, np.ndarray]:
    """Per point (pairs grouped by point): the point ids, their best pair, and whether any lane
    contains the point. Primary key: distance outside the lane (0 inside); then heading, then
    distance to the centreline, both weighted so they only separate lanes of (almost) equal fit."""
    if len(pairs.point) == 0:
        return np.zeros(0, np.int64), pairs, np.zeros(0, bool)
    score = np.maximum(pairs.excess, 0.0) + 1e-4 * np.minimum(pairs.distance, 10.0)
    if yaw is not None:
        score = score + weight * (1.0 - np.cos(yaw[pairs.point] - pairs.heading))
    starts = np.flatnonzero(np.concatenate([[True], pairs.point[1:] != pairs.point[:-1]]))
    counts = np.diff(np.concatenate([starts, [len(score)]]))
    is_min = score == np.repeat(np.minimum.reduceat(score, starts), counts)
    chosen = np.minimum.reduceat(np.where(is_min, np.arange(len(score)), len(score)), starts)
    inside = np.logical_or.reduceat(pairs.excess <= 0, starts)
    return pairs.point[starts], pairs.take(chosen), inside


def _store(result: Projection, points: np.ndarray, best: _Pairs, inside: np.ndarray, lane_of: np.ndarray) -> None:
    result.lane[points] = lane_of[best.segment]
    result.s[points] = best.s
    result.t[points] = best.t
    result.heading[points] = best.heading
    result.distance[points] = best.distance
    result.on_road[points] = inside

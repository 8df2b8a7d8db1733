"""Plan-view geometry of an OpenDRIVE road: reference-line primitives and cubic polynomials.

Every primitive evaluates vectorised at local arc lengths ``ds`` in ``[0, length]`` and returns
``(x, y, heading, curvature)`` arrays in the map frame. Curvature is returned so that offset
curves (lane centres and borders) get exact tangents instead of finite differences.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import CubicHermiteSpline
from scipy.special import fresnel

Curve = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

# Gauss-Legendre nodes on [0, 1] for arc-length integration of polynomial curves.
_GL_X, _GL_W = np.polynomial.legendre.leggauss(8)
_GL_X = (_GL_X + 1.0) / 2.0
_GL_W = _GL_W / 2.0


@dataclass
class Geometry(ABC):
    """One ``<geometry>`` record: start pose and length along the reference line."""

    s: float
    x: float
    y: float
    hdg: float
    length: float

    def evaluate(self, ds: np.ndarray) -> Curve:
        """Map-frame ``x, y, heading, curvature`` at local arc lengths ``ds``."""
        u, v, dh, k = self._local(np.clip(np.asarray(ds, dtype=float), 0.0, self.length))
        c, s = np.cos(self.hdg), np.sin(self.hdg)
        return self.x + c * u - s * v, self.y + s * u + c * v, self.hdg + dh, k

    @abstractmethod
    def _local(self, ds: np.ndarray) -> Curve:
        """Position ``u, v``, heading change and curvature in the frame of the start pose."""


@dataclass
class Line(Geometry):
    def _local(self, ds: np.ndarray) -> Curve:
        zero = np.zeros_like(ds)
        return ds, zero, zero, zero


@dataclass
class Arc(Geometry):
    curvature: float

    def _local(self, ds: np.ndarray) -> Curve:
        k = self.curvature
        theta = k * ds
        if abs(k) < 1e-12:
            return ds, 0.5 * k * ds**2, theta, np.full_like(ds, k)
        return np.sin(theta) / k, (1.0 - np.cos(theta)) / k, theta, np.full_like(ds, k)


@dataclass
class Spiral(Geometry):
    """Clothoid: curvature changes linearly from ``curv_start`` to ``curv_end``.

    With ``c = dk/ds`` the heading is ``k0 s + c s^2 / 2``; completing the square turns the
    position integral into Fresnel integrals of ``u = s + k0 / c``, evaluated in closed form.
    """

    curv_start: float
    curv_end: float

    def _local(self, ds: np.ndarray) -> Curve:
        k0 = self.curv_start
        c = (self.curv_end - k0) / self.length if self.length > 0 else 0.0
        theta = k0 * ds + 0.5 * c * ds**2
        curvature = k0 + c * ds
        if abs(c) * self.length**3 < 1e-9:  # deviates from an arc by under a nanometre
            u, v, _, _ = Arc(0.0, 0.0, 0.0, 0.0, self.length, k0)._local(ds)
            return u, v, theta, curvature
        scale = np.sqrt(np.pi / abs(c))
        sign = np.sign(c)
        phi = -0.5 * k0**2 / c  # heading at u = 0, relative to the start heading
        fs, fc = fresnel((ds + k0 / c) / scale)
        fs0, fc0 = fresnel((k0 / c) / scale)
        dfc, dfs = fc - fc0, sign * (fs - fs0)
        u = scale * (dfc * np.cos(phi) - dfs * np.sin(phi))
        v = scale * (dfs * np.cos(phi) + dfc * np.sin(phi))
        return u, v, theta, curvature


@dataclass
class ParametricCubic(Geometry):
    """``paramPoly3`` (and ``poly3`` as ``u = p``): cubic ``u(p), v(p)`` in the start frame.

    Positions are placed by true arc length: an arc-length table ``s(p)`` from Gauss-Legendre
    quadrature is inverted with a Hermite spline (``dp/ds = 1/|r'(p)|``), accurate far below 1 mm.
    ``p_end`` is the parameter at which the curve ends; ``None`` means "where the arc length
    reaches ``length``" (``poly3``, whose ``u = p`` never outruns the arc length). Otherwise the
    table is scaled so that ``s = length`` maps exactly onto ``p_end``, which keeps consecutive
    geometries joined even when the stated length is slightly off.
    """

    u_coeffs: tuple[float, float, float, float]
    v_coeffs: tuple[float, float, float, float]
    p_end: float | None
    _s_to_p: CubicHermiteSpline = field(init=False, repr=False)

    def __post_init__(self) -> None:
        p_max = self.length if self.p_end is None else self.p_end
        p = np.linspace(0.0, p_max, max(16, int(np.ceil(self.length / 0.25))) + 1)
        s = np.concatenate([[0.0], np.cumsum(self._segment_lengths(p))])
        scale = 1.0 if self.p_end is None or s[-1] <= 0 else self.length / s[-1]
        self._s_to_p = CubicHermiteSpline(s * scale, p, 1.0 / (np.maximum(self._speed(p), 1e-12) * scale))

    def _local(self, ds: np.ndarray) -> Curve:
        p = self._s_to_p(ds)
        u, du, ddu = _poly_and_derivatives(self.u_coeffs, p)
        v, dv, ddv = _poly_and_derivatives(self.v_coeffs, p)
        speed2 = np.maximum(du**2 + dv**2, 1e-300)
        curvature = (du * ddv - dv * ddu) / speed2**1.5
        return u, v, np.arctan2(dv, du), curvature

    def _speed(self, p: np.ndarray) -> np.ndarray:
        _, du, _ = _poly_and_derivatives(self.u_coeffs, p)
        _, dv, _ = _poly_and_derivatives(self.v_coeffs, p)
        return np.hypot(du, dv)

    def _segment_lengths(self, p: np.ndarray) -> np.ndarray:
        """Arc length of each interval ``[p_i, p_i+1]`` by 8-point Gauss-Legendre quadrature."""
        h = np.diff(p)
        nodes = p[:-1, None] + h[:, None] * _GL_X[None, :]
        return (self._speed(nodes) * _GL_W[None, :]).sum(axis=1) * h


def _poly_and_derivatives(coeffs: tuple[float, float, float, float], p: np.ndarray) -> tuple[np.ndarray, ...]:
    a, b, c, d = coeffs
    return a + p * (b + p * (c + p * d)), b + p * (2 * c + 3 * d * p), 2 * c + 6 * d * p


class CubicSeries:
    """Piecewise cubic ``a + b ds + c ds^2 + d ds^3`` with ``ds`` measured from each record's start.

    Used for ``<laneOffset>`` (starts in road ``s``) and lane ``<width>`` (starts in ``sOffset``).
    Before the first record the first polynomial is extrapolated, as in CARLA.
    """

    def __init__(self, starts: list[float], coeffs: list[tuple[float, float, float, float]]) -> None:
        order = np.argsort(starts, kind="stable")
        self.starts = np.asarray(starts, dtype=float)[order]
        self.coeffs = np.asarray(coeffs, dtype=float).reshape(-1, 4)[order]

    @classmethod
    def zero(cls) -> CubicSeries:
        return cls([0.0], [(0.0, 0.0, 0.0, 0.0)])

    def __call__(self, s: np.ndarray, closing: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Values and first derivatives at ``s``.

        At a record boundary the next record applies, unless ``closing``: then the previous one,
        as needed at the end of a lane section whose successor section starts a new record.
        """
        s = np.asarray(s, dtype=float)
        side = "left" if closing else "right"
        i = np.clip(np.searchsorted(self.starts, s, side=side) - 1, 0, len(self.starts) - 1)
        x = s - self.starts[i]
        a, b, c, d = self.coeffs[i].T
        return a + x * (b + x * (c + x * d)), b + x * (2 * c + 3 * d * x)


class PlanView:
    """The reference line: a sequence of geometries, evaluated at arbitrary road ``s``."""

    def __init__(self, geometries: list[Geometry]) -> None:
        self.geometries = sorted(geometries, key=lambda g: g.s)
        self.starts = np.array([g.s for g in self.geometries], dtype=float)

    def evaluate(self, s: np.ndarray, closing: bool = False) -> Curve:
        """``x, y, heading, curvature`` of the reference line at road arc lengths ``s``.

        At a geometry boundary the next geometry applies, unless ``closing`` (see CubicSeries).
        """
        s = np.asarray(s, dtype=float)
        out = [np.empty_like(s) for _ in range(4)]
        side = "left" if closing else "right"
        index = np.clip(np.searchsorted(self.starts, s, side=side) - 1, 0, len(self.geometries) - 1)
        for i in np.unique(index):
            mask = index == i
            geometry = self.geometries[i]
            for target, values in zip(out, geometry.evaluate(s[mask] - geometry.s), strict=True):
                target[mask] = values
        return out[0], out[1], out[2], out[3]

    @property
    def breakpoints(self) -> np.ndarray:
        """Start and end of every geometry, so that sampling hits exact geometry endpoints."""
        ends = [g.s + g.length for g in self.geometries]
        return np.concatenate([self.starts, ends])

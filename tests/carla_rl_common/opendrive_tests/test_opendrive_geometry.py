"""Plan-view geometries of hand-written snippets against closed-form (or quadrature) positions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.optimize import brentq

from carla_rl_common.opendrive.parser import parse_opendrive

X0, Y0, HDG = 10.0, -5.0, 0.3


def plan_view(xodr, shape: str, length: float):
    text = xodr.document(xodr.road("7", xodr.geometry(shape, X0, Y0, HDG, length), length))
    return parse_opendrive(text, "snippet.xodr").roads["7"].plan_view


def to_map(u: float, v: float) -> tuple[float, float]:
    """A point of the geometry's local frame (start pose X0, Y0, HDG) in the map frame."""
    return X0 + u * math.cos(HDG) - v * math.sin(HDG), Y0 + u * math.sin(HDG) + v * math.cos(HDG)


def position(view, s: float) -> tuple[float, float, float]:
    x, y, hdg, _ = view.evaluate(np.array([s]))
    return float(x[0]), float(y[0]), float(hdg[0])


def test_line(xodr) -> None:
    view = plan_view(xodr, "<line/>", 42.0)
    for s in (0.0, 13.7, 42.0):
        assert position(view, s) == pytest.approx((*to_map(s, 0.0), HDG), abs=1e-9)


@pytest.mark.parametrize("curvature", [0.05, -0.02])
def test_arc_end_point_and_midpoint(xodr, curvature: float) -> None:
    length = 30.0
    view = plan_view(xodr, f'<arc curvature="{curvature}"/>', length)
    for s in (length / 2, length):
        expected = to_map(math.sin(curvature * s) / curvature, (1 - math.cos(curvature * s)) / curvature)
        assert position(view, s) == pytest.approx((*expected, HDG + curvature * s), abs=1e-9)


@pytest.mark.parametrize("k0, k1", [(0.0, 0.04), (0.01, -0.03), (-0.02, -0.05), (0.03, 0.03)])
def test_spiral_matches_numeric_clothoid(xodr, k0: float, k1: float) -> None:
    length = 40.0
    view = plan_view(xodr, f'<spiral curvStart="{k0}" curvEnd="{k1}"/>', length)
    c = (k1 - k0) / length

    def theta(s: float) -> float:
        return k0 * s + c * s * s / 2

    for s in (7.5, 25.0, length):
        u = quad(lambda q: math.cos(theta(q)), 0, s, epsabs=1e-12)[0]
        v = quad(lambda q: math.sin(theta(q)), 0, s, epsabs=1e-12)[0]
        assert position(view, s) == pytest.approx((*to_map(u, v), HDG + theta(s)), abs=1e-6)


def test_poly3_straight_slope_closed_form(xodr) -> None:
    a, b = 0.5, 0.75  # v = a + b u: a line, so arc length s = u * sqrt(1 + b^2)
    length = 25.0
    view = plan_view(xodr, f'<poly3 a="{a}" b="{b}" c="0" d="0"/>', length)
    for s in (0.0, 10.0, length):
        u = s / math.hypot(1.0, b)
        assert position(view, s) == pytest.approx((*to_map(u, a + b * u), HDG + math.atan(b)), abs=1e-6)


def test_poly3_cubic_by_arc_length(xodr) -> None:
    c, d = 0.01, -0.0004
    length = 20.0
    view = plan_view(xodr, f'<poly3 a="0" b="0" c="{c}" d="{d}"/>', length)

    def arc(u: float) -> float:
        return quad(lambda q: math.hypot(1.0, 2 * c * q + 3 * d * q * q), 0, u, epsabs=1e-12)[0]

    for s in (5.0, length):
        u = brentq(lambda q, s=s: arc(q) - s, 0.0, s)
        expected = (*to_map(u, c * u**2 + d * u**3), HDG + math.atan(2 * c * u + 3 * d * u**2))
        assert position(view, s) == pytest.approx(expected, abs=1e-6)


def parabola_arc(k: float, x: float) -> float:
    """Closed-form arc length of v = k u^2 from u = 0 to u = x."""
    return x / 2 * math.sqrt(1 + 4 * k * k * x * x) + math.asinh(2 * k * x) / (4 * k)


@pytest.mark.parametrize("p_range", ["arcLength", "normalized"])
def test_param_poly3_parabola(xodr, p_range: str) -> None:
    k, span = 0.02, 20.0  # u = p-scaled, v = k u^2 up to u = span
    length = parabola_arc(k, span)
    if p_range == "arcLength":  # p in [0, length]: u = (span / length) p
        coefficients = dict(bU=span / length, cV=k * (span / length) ** 2)
    else:  # p in [0, 1]: u = span p
        coefficients = dict(bU=span, cV=k * span**2)
    attributes = " ".join(f'{name}="{value!r}"' for name, value in coefficients.items())
    view = plan_view(
        xodr, f'<paramPoly3 aU="0" aV="0" bV="0" cU="0" dU="0" dV="0" {attributes} pRange="{p_range}"/>', length
    )
    for s in (length / 3, length):
        u = brentq(lambda q, s=s: parabola_arc(k, q) - s, 1e-9, span + 1e-9)
        expected = (*to_map(u, k * u * u), HDG + math.atan(2 * k * u))
        assert position(view, s) == pytest.approx(expected, abs=1e-6)


def test_geometry_sequence_is_continuous(xodr) -> None:
    """A line then an arc then a spiral: each starts where the previous one ends."""
    radius = 20.0
    geometries = "\n".join(
        [
            xodr.geometry("<line/>", 0.0, 0.0, 0.0, 10.0),
            xodr.geometry(f'<arc curvature="{1 / radius}"/>', 10.0, 0.0, 0.0, radius * math.pi / 2, s=10.0),
            xodr.geometry(
                '<spiral curvStart="0.05" curvEnd="0.0"/>',
                10.0 + radius,
                radius,
                math.pi / 2,
                15.0,
                s=10.0 + radius * math.pi / 2,
            ),
        ]
    )
    length = 10.0 + radius * math.pi / 2 + 15.0
    view = parse_opendrive(xodr.document(xodr.road("1", geometries, length)), "t.xodr").roads["1"].plan_view
    arc_end = 10.0 + radius * math.pi / 2
    before = position(view, arc_end - 1e-7)
    after = position(view, arc_end)
    assert after == pytest.approx((10.0 + radius, radius, math.pi / 2), abs=1e-6)
    assert before == pytest.approx(after, abs=1e-5)

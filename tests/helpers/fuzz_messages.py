"""Hypothesis strategies for ROS 2 messages of any type, built from the message classes' own type description
(``SLOT_TYPES``): every field gets random values of its wire type, NaN, inf and extremes included, sequences
(images' data, arrays of markers) are empty or short, strings arbitrary. Plus malformed images (wrong sizes,
steps, encodings, data lengths) and header stamps that jump back and forth."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
from hypothesis import strategies as st
from rosidl_parser import definition as d

_INT_RANGES = {"int8": 8, "int16": 16, "int32": 32, "int64": 64}
ENCODINGS = [
    "rgb8",
    "bgr8",
    "bgra8",
    "rgba8",
    "mono8",
    "mono16",
    "16UC1",
    "32FC1",
    "8UC3",
    "",
    "jpeg",
    "bgr8\x00",
    "yuv422",
]


def _basic(typename: str) -> st.SearchStrategy:
    if typename == "boolean":
        return st.booleans()
    if typename in ("float", "double", "long double"):
        return st.floats(allow_nan=True, allow_infinity=True, width=32 if typename == "float" else 64)
    if typename in ("octet", "char", "uint8"):
        return st.integers(0, 255)
    if typename in _INT_RANGES:
        bits = _INT_RANGES[typename]
        return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    if typename.startswith("uint"):
        return st.integers(0, 2 ** int(typename[4:]) - 1)
    raise NotImplementedError(typename)


def _class(t: d.NamespacedType) -> type:
    return getattr(importlib.import_module(".".join(t.namespaces)), t.name)


def _field(t: Any, depth: int) -> st.SearchStrategy:
    if isinstance(t, d.BasicType):
        return _basic(t.typename)
    if isinstance(t, d.AbstractString):
        return st.text(max_size=12)
    if isinstance(t, d.NamespacedType):
        return message(_class(t), depth + 1)
    if isinstance(t, d.Array):
        return st.lists(_field(t.value_type, depth), min_size=t.size, max_size=t.size)
    if isinstance(t, d.AbstractSequence):
        if isinstance(t.value_type, d.BasicType) and t.value_type.typename in ("uint8", "octet"):
            return st.binary(max_size=64)
        size = getattr(t, "maximum_size", 4)
        return st.lists(_field(t.value_type, depth), max_size=min(size, 4 if depth < 3 else 0))
    raise NotImplementedError(repr(t))


def message(cls: type, depth: int = 0) -> st.SearchStrategy:
    """Messages of ``cls`` with every field random."""
    names = list(cls.get_fields_and_field_types())
    fields = {name: _field(t, depth) for name, t in zip(names, cls.SLOT_TYPES)}
    return st.builds(lambda **kw: cls(**kw), **fields)


def stamp() -> st.SearchStrategy:
    """Header stamps: near each other (frames), far in the future, zero; seconds of either sign."""
    return st.tuples(st.one_of(st.integers(0, 5), st.integers(-(2**31), 2**31 - 1)), st.integers(0, 999_999_999))


def image(cls: type) -> st.SearchStrategy:
    """``sensor_msgs/Image`` that may lie about its size, step or encoding, or carry the wrong amount of data."""

    def build(width, height, encoding, channels, step_delta, data_delta, sec_nsec):
        msg = cls(width=width, height=height, encoding=encoding, step=max(width * channels + step_delta, 0))
        size = max(msg.step * height + data_delta, 0)
        msg.data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
        msg.header.stamp.sec, msg.header.stamp.nanosec = sec_nsec
        return msg

    return st.builds(
        build,
        st.sampled_from([0, 1, 31, 32, 33, 640]),
        st.sampled_from([0, 1, 32, 480]),
        st.sampled_from(ENCODINGS),
        st.sampled_from([1, 2, 3, 4]),
        st.sampled_from([0, 0, -1, 1, 7]),
        st.sampled_from([0, 0, -1, 1, -100, 1000]),
        stamp(),
    )

"""rosbag2 bags of the stack: record, replay, inspect and score them offline.

* :mod:`.recorder` -- ``record()``: an rclpy node that writes the bridge, env and agent topics (serialized,
  never decoded) to a rosbag2 bag (MCAP by default) that ``ros2 bag``, Foxglove and ``rosbags`` open.
* :mod:`.player` -- ``play()``: republishes a bag with its recorded timing and a ``/clock``.
* :mod:`.info` -- ``bag_info()`` / ``format_info()``: topics, counts, rates and gaps.
* :mod:`.offline` -- ``evaluate_bag()``: observations and rewards rebuilt from the raw bridge topics with the
  current env config, no simulator needed; optionally a policy's actions against the recorded ones. Its parts:
  :mod:`.recording` (the recording's index), :mod:`.episodes` (episode plans), :mod:`.runner` (the rebuild)
  and :mod:`.report` (results, Markdown, plots).
* :mod:`.reader` -- ``open_bag()``: reading, checked (CRCs, indexes, counts), including what can still be read
  of a damaged bag.
* :mod:`.repair` -- ``repair_bag()``: a killed recorder's or a damaged bag rewritten with its index and
  ``metadata.yaml`` (``carla-rl bag repair``).
* :mod:`.typestore` -- message definitions (embedded in every bag) and the rclpy message classes.

The public names are importable from this package; each loads its module (and rclpy) only when first used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any


class BagError(ValueError):
    """A bag (or an input to one of these tools) is unusable: the message names the file and what is wrong."""


_EXPORTS = {
    "record": "recorder",
    "play": "player",
    "bag_info": "info",
    "format_info": "info",
    "evaluate_bag": "offline",
    "open_bag": "reader",
    "repair_bag": "repair",
}

__all__ = ["BagError", "bag_info", "evaluate_bag", "format_info", "open_bag", "play", "record", "repair_bag"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

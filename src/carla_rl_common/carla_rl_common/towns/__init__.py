"""The project's own towns: OpenDRIVE maps generated at build time by ``tools/towns/generate.py``.

``RLTown01`` (the default everywhere) is a small urban grid in the style of CARLA's Town01;
``RLTown02`` adds multi-lane roads for lane changes. Use :func:`town_path` to turn a town
name, or the path of any ``.xodr`` file, into a file path. Here, below the simulator and the env,
because both name towns: the simulator loads them, the env's suites and scenarios default to them.
"""

from __future__ import annotations

import os
from pathlib import Path

TOWNS_DIR = Path(__file__).resolve().parent
"""Where the shipped ``.xodr`` files live (next to this module, installed as package data)."""

TOWNS: dict[str, Path] = {
    "RLTown01": TOWNS_DIR / "RLTown01.xodr",
    "RLTown02": TOWNS_DIR / "RLTown02.xodr",
}
"""Shipped town name -> ``.xodr`` path."""

DEFAULT_TOWN = "RLTown01"


class UnknownTownError(ValueError):
    """Raised by :func:`town_path` for something that is neither a shipped town nor an ``.xodr`` file."""


def town_path(name_or_path: str | os.PathLike[str]) -> Path:
    """Resolve a shipped town name (case-insensitive, e.g. ``"RLTown01"``) or an ``.xodr`` path.

    Raises :class:`UnknownTownError` (a ``ValueError``) naming the known towns otherwise, so a
    typo in a config or launch argument fails with a useful message.
    """
    text = os.fspath(name_or_path)
    for name, path in TOWNS.items():
        if text.lower() == name.lower():
            return path
    path = Path(text).expanduser()
    if path.suffix.lower() == ".xodr" and path.is_file():
        return path
    known = ", ".join(TOWNS)
    if path.suffix.lower() == ".xodr":
        raise UnknownTownError(f"OpenDRIVE file not found: {path} (shipped towns: {known})")
    raise UnknownTownError(f"unknown town {text!r}: give one of {known} or the path of an .xodr file")


__all__ = ["DEFAULT_TOWN", "TOWNS", "TOWNS_DIR", "UnknownTownError", "town_path"]

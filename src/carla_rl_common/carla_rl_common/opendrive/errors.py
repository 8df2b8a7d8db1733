"""Exceptions of the OpenDRIVE road network."""

from __future__ import annotations


class OpenDriveError(ValueError):
    """Malformed or unsupported OpenDRIVE input; the message names file, line and element."""


class NoRouteError(ValueError):
    """No sequence of lanes (and allowed lane changes) connects the start to the goal."""

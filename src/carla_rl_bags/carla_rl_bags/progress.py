"""Progress bars of the bag tools that can take long (checking, repairing and evaluating big bags).

tqdm on stderr, on a terminal only (tqdm's ``disable=None``): redrawn in place and cleared when done, so a
pipe or a log file gets nothing, and stdout (what scripts read) is never touched.
"""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress_bar(desc: str, total: int | None = None, unit: str = "msg", enabled: bool = True) -> tqdm:
    """A bar of ``total`` ``unit`` (None: a counter with a rate), shown only when ``enabled`` and on a terminal."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=True,
        file=sys.stderr,
        leave=False,
        disable=None if enabled else True,
        mininterval=0.2,
    )

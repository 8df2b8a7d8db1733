"""Rewrite the build machine's Python paths baked into the ROS wheels' CMake exports (idempotent).

The PyPI ROS 2 message wheels were built on manylinux images whose interpreter lives under
/opt/python/cp311-cp311; CMake's generate step fails on those non-existent paths unless they point at
this venv's interpreter (see ../shared/notes/ros2-from-pypi.md).
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

_BAKED = re.compile(r"/opt/python/cp3\d+-cp3\d+/(include/python3\.\d+|lib/python3\.\d+/site-packages)")


def fix(prefix: Path) -> int:
    include = sysconfig.get_path("include")
    purelib = str(prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages")

    def replace(match: re.Match[str]) -> str:
        return include if match.group(1).startswith("include") else purelib

    changed = 0
    for path in (prefix / "share").glob("*/cmake/*.cmake"):
        text = path.read_text()
        new = _BAKED.sub(replace, text)
        if new != text:
            path.write_text(new)
            changed += 1
    return changed


if __name__ == "__main__":
    n = fix(Path(sys.argv[1]).resolve())
    if n:
        print(f"[setup] fixed Python paths in {n} CMake export files")

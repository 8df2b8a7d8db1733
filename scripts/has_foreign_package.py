"""Exit 0 when an ament package is registered by a prefix other than ours (e.g. a sourced ROS with the bridge)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

name, own_prefix = sys.argv[1], Path(sys.argv[2]).resolve()
for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
    if Path(prefix).resolve() == own_prefix:
        continue
    if (Path(prefix) / "share" / "ament_index" / "resource_index" / "packages" / name).exists():
        sys.exit(0)
sys.exit(1)

"""Regenerate requirements.txt, the full pinned lock, from the current .venv.

Dropped from ``pip freeze``: our own packages (editable or built by colcon) and the Python packages that
the ``ros-*`` wheels carry inside them (``rclpy`` inside ``ros-rclpy``, ...), which are not on PyPI on
their own. torch is pinned as ``torch==2.13.0`` so pip takes the CPU wheel from local disk.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OWN = {
    "carla-msgs",
    "carla-rl-msgs",
    "carla-rl-common",
    "carla-rl-sim",
    "carla-rl-env",
    "carla-rl-agents",
    "carla-rl-viz",
    "tf2-msgs",  # ours when the environment has none (scripts/setup.sh)
}
NOT_LOCKED = {"torch"}  # pinned as torch==2.13.0 below (the freeze says +cpu)


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main() -> int:
    freeze = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    pins = {norm(line.split("==")[0]): line for line in freeze if "==" in line}
    keep = [
        line
        for name, line in sorted(pins.items())
        if name not in OWN | NOT_LOCKED and not (not name.startswith("ros-") and f"ros-{name}" in pins)
    ]
    header = [
        "# Every dependency of carla-rl, pinned: a full lock written by scripts/lock_requirements.py.",
        "# ROS 2 Jazzy (LTS) comes from PyPI wheels; torch is the CPU wheel on local disk (plain 'torch' pulls CUDA).",
    ]
    (ROOT / "requirements.txt").write_text("\n".join(header + keep + ["torch==2.13.0"]) + "\n")
    print(f"requirements.txt: {len(keep) + 1} pins")
    return 0


if __name__ == "__main__":
    sys.exit(main())

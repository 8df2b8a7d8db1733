"""A stand-in node process for the launcher's restart tests: exits with ``--exit CODE`` after ``--after`` s."""

from __future__ import annotations

import argparse
import sys
import time

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--exit", type=int, default=0)
    parser.add_argument("--after", type=float, default=0.0)
    args, _ = parser.parse_known_args()  # --ros-args ... from the launcher are ignored
    time.sleep(args.after)
    sys.exit(args.exit)

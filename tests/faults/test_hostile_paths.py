"""Path arguments of more subcommands with hostile names: read as plain paths, refused with a clear error
naming them; nothing is run by a shell (test_security.py covers ``drive --config``)."""

from __future__ import annotations

import subprocess
import sys

import pytest

NAME = "$(touch pwned); `touch pwned` x"


@pytest.mark.parametrize(
    "args, expected",
    [
        (["train", "--resume", "{path}"], "config.yaml"),
        (["evaluate", "--checkpoint", "{path}", "--suite", "straight"], "corrupt checkpoint"),
        (["bag", "info", "{path}"], ""),
        (["map", "export", "{path}", "--format", "geojson", "-o", "out.json"], ""),
    ],
)
def test_subcommands_with_hostile_paths(tmp_path, args, expected):
    path = tmp_path / NAME
    path.mkdir() if args[0] in ("train", "bag") else path.write_text("not what it should be\n")
    proc = subprocess.run(
        [sys.executable, "-m", "carla_rl_bringup.cli", *[a.format(path=path) for a in args]],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert NAME in proc.stderr and expected in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "pwned").exists()

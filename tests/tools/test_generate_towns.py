"""The town generator (``tools/towns/generate.py``): deterministic, and the shipped ``.xodr`` files are its output.

The files themselves (links, junctions, connectivity) are checked in ``tests/carla_rl_common/towns``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from carla_rl_common.towns import TOWNS

REPO = Path(__file__).resolve().parents[2]
GENERATOR = REPO / "tools" / "towns" / "generate.py"


@pytest.fixture(scope="module")
def generate():
    """The generator script as a module (it is a build-time tool, not an installed package)."""
    spec = importlib.util.spec_from_file_location("towns_generate", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


@pytest.mark.parametrize("name", sorted(TOWNS))
def test_file_is_deterministic_and_current(generate, name: str) -> None:
    fresh = generate.generate_town(name).encode("utf-8")
    assert fresh == generate.generate_town(name).encode("utf-8")
    assert TOWNS[name].read_bytes() == fresh, "stale file: run python tools/towns/generate.py"


def test_cli_writes_identical_files(generate, tmp_path: Path) -> None:
    assert generate.main(["--out", str(tmp_path)]) == 0
    for name, path in TOWNS.items():
        assert (tmp_path / f"{name}.xodr").read_bytes() == path.read_bytes()
    assert generate.main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "RLTown01.xodr").write_text("stale")
    assert generate.main(["--check", "--out", str(tmp_path)]) == 1


def test_runs_as_a_script_from_the_repository_root() -> None:
    """What ``make towns`` runs (here with ``--check``, so nothing is written)."""
    result = subprocess.run(
        [sys.executable, str(GENERATOR.relative_to(REPO)), "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr

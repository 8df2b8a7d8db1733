"""Hypothesis profiles of the fuzz tests: ``ci`` (default, small) and ``large`` (``CARLA_RL_FUZZ=large``).

CARLA_RL_FUZZ=large .venv/bin/python -m pytest -q tests/faults -k fuzz -s   # prints the cases run
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = dict(
    deadline=None, derandomize=False, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
settings.register_profile("ci", max_examples=60, **_COMMON)
settings.register_profile("large", max_examples=1000, **_COMMON)
settings.load_profile(os.environ.get("CARLA_RL_FUZZ", "ci"))

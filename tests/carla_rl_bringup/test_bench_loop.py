"""`carla-rl bench`'s lockstep loop runs on the shipped objects file's sensors (the simulator publishes only what
an objects file spawns, as the bridge does): a short ROS run of simulator + env node, with and without a camera,
steps every step it was asked for."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from carla_rl_bringup import bench_loop

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("camera", [0, 84])
def test_the_bench_loop_steps_over_ros(camera, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DOMAIN_ID", os.environ["ROS_DOMAIN_ID"])  # this test run's own domain
    actions = np.tile(np.array([[0.0, 0.3]], np.float32), (100, 1))
    rate, latency = bench_loop.run_ros(40, camera, tmp_path, actions)
    assert rate > 0 and len(latency) == 40
    sensors = {
        s["type"] for o in json.loads((tmp_path / "objects.json").read_text())["objects"] for s in o.get("sensors", [])
    }
    assert ("sensor.camera.rgb" in sensors) == bool(camera) and "sensor.pseudo.odom" in sensors

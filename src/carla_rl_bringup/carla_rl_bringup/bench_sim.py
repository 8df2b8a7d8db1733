"""Embedded simulator core speed on one core: steps/s without and with cameras, BEV renders/s, memory
(``carla-rl bench`` runs it; ``benchmarks/bench_sim.py`` too).

Each figure is the median of three timed runs after a warm-up; rendering figures include the tick.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time

import numpy as np

from carla_rl_common.bridge import Control
from carla_rl_common.objects import parse_objects
from carla_rl_common.opendrive import RoadNetwork
from carla_rl_common.towns import town_path
from carla_rl_sim.core import Simulator


def objects(camera: tuple[int, int] | None, bev: int | None) -> dict:
    sensors = []
    if camera:
        sensors.append(
            {
                "type": "sensor.camera.rgb",
                "id": "cam",
                "image_size_x": camera[0],
                "image_size_y": camera[1],
                "fov": 90.0,
                "spawn_point": {"x": 2.0, "y": 0.0, "z": 2.0, "roll": 0, "pitch": 0, "yaw": 0},
            }
        )
    if bev:
        sensors.append({"type": "sensor.pseudo.bev", "id": "bev", "size": bev, "pixels_per_meter": 5.0})
    return {"objects": [{"type": "vehicle.tesla.model3", "id": "ego_vehicle", "sensors": sensors}]}


def rate(sim: Simulator, sensor: str | None, seconds: float) -> float:
    """Ticks (plus one render of ``sensor`` each) per second, driving gently so the car stays on the road."""
    rng = np.random.default_rng(0)
    runs = []
    for _ in range(3):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            sim.apply_control("ego_vehicle", Control(throttle=0.3, steer=float(rng.uniform(-0.05, 0.05))))
            sim.tick()
            if sensor:
                sim.render("ego_vehicle", sensor)
            n += 1
        runs.append(n / (time.perf_counter() - start))
    return statistics.median(runs)


CASES = (
    ("core step, no camera", None, None, None),
    ("84x84 RGB camera", (84, 84), None, "cam"),
    ("800x600 RGB camera", (800, 600), None, "cam"),
    ("BEV 192x192", None, 192, "bev"),
)


def measure(town: str = "RLTown01", traffic: int = 20, seconds: float = 3.0) -> dict:
    """Steps/s of each case (median of three), the map load time and the process's peak memory."""
    t = time.perf_counter()
    network = RoadNetwork.from_file(town_path(town))
    load_s = time.perf_counter() - t
    results = {"town": network.name, "traffic": traffic, "map_load_s": load_s}
    for name, camera, bev, sensor in CASES:
        sim = Simulator(network, parse_objects(objects(camera, bev), embedded=True), 0.05, traffic, seed=0)
        if sensor:
            sim.render("ego_vehicle", sensor)  # builds the map raster once
        results[name] = rate(sim, sensor, seconds)
    results["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--town", default="RLTown01")
    parser.add_argument("--traffic", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = measure(args.town, args.traffic, args.seconds)
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"town {results['town']}, {args.traffic} traffic vehicles, map load {results['map_load_s']:.2f} s")
    print(f"{'case':<26}{'steps/s':>10}")
    for name, *_ in CASES:
        print(f"{name:<26}{results[name]:>10.0f}")
    print(f"{'max RSS (MB)':<26}{results['max_rss_mb']:>10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

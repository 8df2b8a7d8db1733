"""Why episodes end in a collision: drive a checkpoint over a suite in-process and classify each collision.

    python benchmarks/junction_collisions.py --checkpoint models/ppo_rltown01.ckpt \
        --town ../shared/data/maps/carla/Town01.xodr --suite config/suites/Town01/navigation.yaml

For every episode that ends in a collision it prints where: a vehicle, or a static contact (the car left the
drivable area), and for a static contact whether it happened in a junction, the road of the nearest driving
lane, the car's lateral offset from that lane's centre, and where the corners that left the driving lanes
were: on a kerb (sidewalk, median, ...), on a paved lane (shoulder, parking, ...), on the junction's paved
surface between its lanes (CARLA drives on both; our simulator called them kerbs before issue 18), or off the
map. The last line is one JSON object of counts.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import cv2
import numpy as np


def _inside(polygon: np.ndarray, point: np.ndarray) -> bool:
    return cv2.pointPolygonTest(polygon.astype(np.float32), (float(point[0]), float(point[1])), False) >= 0


def classify(sim, role: str) -> dict:
    """Where the ego's collision of this tick happened (see the module docstring)."""
    from carla_rl_common.geometry import box_corners
    from carla_rl_common.opendrive.types import KERB_LANE_TYPES, PAVED_LANE_TYPES

    ego = sim.egos[role]
    network = sim.network
    others = [other for other, _ in ego.collisions]
    if any(other != 0 for other in others):
        return {"cause": "vehicle"}
    s = ego.state
    corners = box_corners(np.array((s.x, s.y, s.yaw, *ego.extent)))
    location = network.locate(s.x, s.y, s.yaw)
    lane = network.lanes[location.key] if location.key is not None else None
    off = [c for c, ok in zip(corners, network.on_road_mask(corners)) if not ok]
    where = []
    for corner in off:
        lane_types = [
            other.type for other in network.lanes.values() if not other.is_driving and _inside(other.polygon, corner)
        ]
        kerb = next((t for t in lane_types if t in KERB_LANE_TYPES), None)
        paved = next((t for t in lane_types if t in PAVED_LANE_TYPES), None)
        surface = any(_inside(poly, corner) for poly in network.junction_surfaces.values())
        where.append(
            f"kerb:{kerb}" if kerb else f"paved:{paved}" if paved else "junction_surface" if surface else "off_map"
        )
    return {
        "cause": "static",
        "in_junction": bool(lane is not None and lane.junction >= 0),
        "road": lane.key.road if lane is not None else None,
        "offset_m": round(abs(location.t), 2),
        "corners": where,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--town", required=True, help="shipped town name or .xodr path")
    parser.add_argument("--suite", required=True, help="suite .yaml")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from carla_rl_agents.checkpoints import load_policy, read_meta
    from carla_rl_bringup.inprocess import inprocess_env
    from carla_rl_env.scenarios import load_suite

    config = read_meta(args.checkpoint)["config"]
    config["sim"]["town"] = args.town
    config["env"]["scenario"]["suite"] = str(Path(args.suite).resolve())
    env = inprocess_env(config, args.seed)
    model = load_policy(args.checkpoint, env)
    _, scenarios = load_suite(args.suite)
    counts: collections.Counter = collections.Counter()
    for scenario in scenarios:
        obs, _ = env.reset(options={"scenario": scenario})
        while True:
            action, _ = model.predict(obs, deterministic=True)
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        reason = info["termination_reason"]
        counts[reason] += 1
        if reason != "collision":
            continue
        found = classify(env.sim, env.role)
        counts[found["cause"]] += 1
        if found["cause"] == "static":
            counts["static_in_junction" if found["in_junction"] else "static_on_road"] += 1
            for where in found["corners"]:
                counts[f"corner_{where}"] += 1
        print(f"{scenario.id}: {json.dumps(found)}", file=sys.stderr)
    print(json.dumps({"town": Path(args.town).stem, "suite": Path(args.suite).stem, **dict(sorted(counts.items()))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

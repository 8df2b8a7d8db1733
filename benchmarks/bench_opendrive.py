"""Benchmark of the OpenDRIVE road network on CARLA's towns.

Prints one row per town: load time, lane-link continuity, locate queries/s (one call per point
and one vectorised batch), on-road mask queries/s and route queries/s.

    .venv/bin/python benchmarks/bench_opendrive.py [--maps DIR] [--batch 20000] [--routes 100]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from carla_rl_common.opendrive import RoadNetwork

DEFAULT_MAPS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "maps" / "carla"
COLUMNS = ("town", "load s", "lanes", "continuity", "locate 1/call q/s", "locate batch q/s", "mask q/s", "route q/s")


def query_points(net: RoadNetwork, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Poses near driving lanes (up to 3 m off the centre line, any heading): what a car sees."""
    lanes = net.driving_lanes()
    xy, yaw = np.empty((n, 2)), rng.uniform(-np.pi, np.pi, n)
    for i, lane_index in enumerate(rng.integers(len(lanes), size=n)):
        lane = lanes[lane_index]
        x, y, heading = net.lane_point(lane.key, rng.uniform(0.0, lane.length))
        offset = rng.uniform(-3.0, 3.0)
        xy[i] = x - offset * np.sin(heading), y + offset * np.cos(heading)
    return xy, yaw


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}"


def bench_town(path: Path, batch: int, routes: int, rng: np.random.Generator) -> tuple[str, ...]:
    start = time.perf_counter()
    net = RoadNetwork.from_file(path)
    load = time.perf_counter() - start
    continuous, links, _ = net.continuity_report()
    xy, yaw = query_points(net, batch, rng)

    singles = min(batch, 2000)
    start = time.perf_counter()
    for (x, y), heading in zip(xy[:singles], yaw[:singles], strict=True):
        net.locate(x, y, heading)
    single_rate = rate(singles, time.perf_counter() - start)

    start = time.perf_counter()
    net.locate_many(xy, yaw)
    batch_rate = rate(batch, time.perf_counter() - start)

    start = time.perf_counter()
    net.on_road_mask(xy)
    mask_rate = rate(batch, time.perf_counter() - start)

    spawns = net.spawn_points()
    pairs = rng.integers(len(spawns), size=(routes, 2))
    start = time.perf_counter()
    for a, b in pairs:
        net.route(spawns[a][:3], spawns[b][:2])
    route_rate = rate(routes, time.perf_counter() - start)

    return (
        path.stem,
        f"{load:.2f}",
        str(len(net.driving_lanes())),
        f"{continuous}/{links} ({100 * continuous / links:.1f}%)",
        single_rate,
        batch_rate,
        mask_rate,
        route_rate,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=Path, default=DEFAULT_MAPS, help="folder of .xodr files")
    parser.add_argument("--batch", type=int, default=20000, help="points per locate_many batch")
    parser.add_argument("--routes", type=int, default=100, help="random spawn-to-spawn routes per town")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    paths = sorted(args.maps.glob("*.xodr"))
    if not paths:
        raise SystemExit(f"no .xodr files in {args.maps}")
    rng = np.random.default_rng(args.seed)
    rows = [COLUMNS, *(bench_town(path, args.batch, args.routes, rng) for path in paths)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    for k, row in enumerate(rows):
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
        if k == 0:
            print("  ".join("-" * width for width in widths))


if __name__ == "__main__":
    main()

"""The conformance suite's fixtures: the simulator node in its own process, probed over DDS.

Each test of this directory encodes one fact of ``shared/notes/carla-bridge-contract.md`` ("Behaviour beyond
names"), read from ros-bridge master e9063d9 (``carla_ros_bridge/src/carla_ros_bridge/...``) or CARLA's
sources, and names that file in its docstring. The simulator gets an objects file and parameters per test
(``start_sim``); this process's ``probe`` subscribes, publishes and calls services as a bridge client would.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from carla_rl_bringup.launcher import NodeSpec, ProcessGroup
from carla_rl_common.opendrive import RoadNetwork
from carla_rl_common.towns import town_path

sys.path.insert(0, str(Path(__file__).parent))
from conformance_support import TOWN, Probe


@pytest.fixture(scope="session")
def network() -> RoadNetwork:
    return RoadNetwork.from_file(town_path(TOWN))


@pytest.fixture
def probe(ros_node) -> Probe:
    return Probe(ros_node)


@pytest.fixture
def start_sim(tmp_path):
    """``start_sim(objects_dict, **parameters)``: the simulator node in its own process (stopped after the test).
    Defaults: RLTown01, synchronous mode waiting for a command from every ego, no traffic."""
    groups: list[ProcessGroup] = []

    def start(objects_data: dict, **params) -> ProcessGroup:
        path = tmp_path / f"objects_{len(groups)}.json"
        path.write_text(json.dumps(objects_data))
        group = ProcessGroup(dict(os.environ), log=open(tmp_path / f"sim_{len(groups)}.log", "w"))
        parameters = {
            "town": TOWN,
            "objects_file": str(path),
            "synchronous_mode_wait_for_vehicle_control_command": True,
            "preview_hz": 0.0,
            **params,
        }
        group.start(NodeSpec("sim", "carla_rl_sim.node", "", parameters))
        groups.append(group)
        return group

    yield start
    for group in groups:
        group.stop()

"""A bag recorded from a live ``carla-rl drive``: read back independently, decoded alone, scored offline.

The recorder runs as its own node process (ProcessGroup + NodeSpec, as ``--record`` will start it) beside a
``carla-rl drive`` of the random agent on the embedded simulator, while a raw observer in this process keeps
the bytes it receives. Both may join a moment after the stack starts (DDS discovery on a loaded machine):
messages are compared where both were listening, and episodes are judged where they were recorded whole.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from io import StringIO
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from carla_msgs.msg import CarlaEgoVehicleStatus, CarlaStatus
from carla_rl_msgs.msg import EpisodeSummary, Step
from nav_msgs.msg import Odometry
from rclpy.serialization import deserialize_message
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from sensor_msgs.msg import Image

from carla_rl_bags.info import bag_info, format_info
from carla_rl_bags.offline import evaluate_bag
from carla_rl_bags.typestore import typestore_from_definitions
from carla_rl_bringup.launcher import NodeSpec, ProcessGroup
from carla_rl_common import bridge, codec
from carla_rl_common.bridge import BridgeTopics
from carla_rl_common.dds import ros_environment
from carla_rl_env.actions import ActionMapper
from carla_rl_env.settings import load_env_config

pytestmark = pytest.mark.slow

STEPS = 30
EPISODES = 3
CONFIG = {
    "env": {
        "episode": {
            "max_episode_steps": STEPS,
            "terminate_on_collision": False,
            "terminate_on_off_road": False,
            "max_route_deviation": 1.0e4,
            "wrong_way_angle_deg": 180.0,  # never: a heading error is at most 180 degrees
            "stuck_seconds": 8.64e4,
            "min_average_speed": 0.01,
        },
        "observation": {"cameras": [{"id": "rgb_front", "width": 64, "height": 48}], "bev": True, "bev_size": 64},
    }
}
T = BridgeTopics()
OBSERVED = {
    "/" + topic: msg_type
    for topic, msg_type in (
        (T.step, Step),
        (T.episode, EpisodeSummary),
        (T.status, CarlaStatus),
        (T.odometry, Odometry),
        (T.vehicle_status, CarlaEgoVehicleStatus),
        (T.image("rgb_front"), Image),
    )
}


def record_drive(tmp, graph, wait_for) -> SimpleNamespace:
    """One ``carla-rl drive`` with the recorder beside it and the observer listening."""
    config = tmp / "short.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    bag = tmp / "bag"
    for topic in OBSERVED:
        graph.got[topic] = []
    with ProcessGroup(ros_environment(), log=StringIO()) as group:
        group.start(
            NodeSpec(
                "rec", "carla_rl_bags.recorder", parameters={"output": str(bag), "compression": "zstd"}, required=False
            )
        )
        wait_for(bag.exists, 30, "the recorder to open its bag")
        drive = subprocess.run(
            [
                sys.executable,
                "-m",
                "carla_rl_bringup.cli",
                "drive",
                "--agent",
                "random",
                "--episodes",
                str(EPISODES),
                "--config",
                str(config),
                "--seed",
                "4",
                "--traffic",
                "2",
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
        graph.settle(quiet=0.5)
    assert drive.returncode == 0, drive.stderr[-3000:]
    episodes = [json.loads(line) for line in drive.stdout.splitlines() if line.startswith("{")]
    assert len(episodes) == EPISODES
    observed = {t: [m for _, m in graph.got[t]] for t in OBSERVED}
    evaluation = evaluate_bag(bag, [str(config)], None, tmp / "eval")
    return SimpleNamespace(bag=bag, config=config, episodes=episodes, observed=observed, tmp=tmp, evaluation=evaluation)


@pytest.fixture(scope="module")
def live(tmp_path_factory, module_graph, wait_for):
    """The recorded drive; run a second time if DDS discovery (a loaded machine) left no episode recorded whole."""
    for topic, msg_type in OBSERVED.items():
        module_graph.listen(msg_type, topic, bridge.qos_default(1000), raw=True)
    for _attempt in range(2):
        run = record_drive(tmp_path_factory.mktemp("live"), module_graph, wait_for)
        whole = any(e["mode"] == "rebuilt" for e in run.evaluation["episodes"])
        if whole and len(run.observed["/" + T.step]) >= 2 * STEPS:
            break
    return run


def read_back(bag) -> dict[str, list[bytes]]:
    """Every message per topic, read with rosbags alone."""
    with Reader(bag) as reader:
        out: dict[str, list[bytes]] = {c.topic: [] for c in reader.connections}
        for connection, _, data in reader.messages():
            out[connection.topic].append(bytes(data))
        counts = {c.topic: c.msgcount for c in reader.connections}
        types = {c.topic: c.msgtype for c in reader.connections}
    assert counts == {t: len(m) for t, m in out.items()}
    return out, types


def by_key(payloads: list[bytes], msg_type, key) -> dict:
    return {key(deserialize_message(p, msg_type)): p for p in payloads}


def stamp(msg) -> int:
    return bridge.stamp_to_ns(msg.header.stamp)


def episode_step(msg) -> tuple[int, int]:
    return int(msg.episode), int(msg.step)


def test_bag_holds_what_an_observer_received_bit_for_bit(live):
    recorded, types = read_back(live.bag)
    for topic, msg_type in OBSERVED.items():
        assert types[topic] == f"{msg_type.__module__.split('.')[0]}/msg/{msg_type.__name__}"
    # from when the recorder joined on, no step is missing: each episode's steps run without a hole to its last
    # (an episode has up to STEPS steps: a frame the simulator ticked without a command is folded into the next)
    steps = [deserialize_message(p, Step) for p in recorded["/" + T.step]]
    episodes = sorted({s.episode for s in steps})
    for e in episodes:
        numbers = [s.step for s in steps if s.episode == e]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), e
        assert e == episodes[0] or numbers[0] == 1
        assert e > EPISODES or [s.truncated for s in steps if s.episode == e][-1]
    # where both listened, the bag has every message the observer got, byte for byte (the observer, in this
    # busy process, may itself miss one: the publishers keep only their last 10 unacknowledged messages)
    for topic, key in (
        (T.step, episode_step),
        (T.odometry, stamp),
        (T.vehicle_status, stamp),
        (T.image("rgb_front"), stamp),
    ):
        msg_type = OBSERVED["/" + topic]
        mine, theirs = by_key(recorded["/" + topic], msg_type, key), by_key(live.observed["/" + topic], msg_type, key)
        lo, hi = max(min(mine), min(theirs)), min(max(mine), max(theirs))
        common = {k for k in theirs if lo <= k <= hi}
        assert common <= mine.keys() and len(common) >= STEPS, topic
        assert all(mine[k] == theirs[k] for k in common), topic
    assert len(recorded["/" + T.world_info]) == 1  # latched, recorded although published before we subscribed


def test_types_decode_from_the_embedded_definitions_alone(live):
    with Reader(live.bag) as reader:
        store = typestore_from_definitions((c.msgtype, "ros2msg", c.msgdef.data) for c in reader.connections)
        first = {}
        for connection, _, data in reader.messages():
            first.setdefault(connection.topic, (connection.msgtype, bytes(data)))
    for msgtype, data in first.values():
        store.deserialize_cdr(data, msgtype)  # every recorded type decodes without our packages
    msgtype, data = first["/" + T.step]
    mine, ros = store.deserialize_cdr(data, msgtype), deserialize_message(data, Step)
    assert (mine.env_id, mine.episode, mine.step, mine.frame) == (ros.env_id, ros.episode, ros.step, ros.frame)
    assert mine.reward == pytest.approx(ros.reward) and list(mine.reward_term_names) == list(ros.reward_term_names)
    assert bytes(mine.images[0].data) == bytes(ros.images[0].data) and mine.control.steer == ros.control.steer


def whole_episodes(live) -> set[int]:
    """Episodes whose every step message the recorder has (from step 1 to the final one)."""
    recorded, _ = read_back(live.bag)
    steps = [deserialize_message(p, Step) for p in recorded["/" + T.step]]
    return {
        e
        for e in range(1, EPISODES + 1)
        if (mine := [s for s in steps if s.episode == e]) and mine[0].step == 1 and mine[-1].truncated
    }


def test_offline_evaluation_reproduces_the_live_returns(live):
    rebuilt = [e for e in live.evaluation["episodes"] if e["mode"] == "rebuilt"]
    assert rebuilt, live.evaluation  # an episode whose reset the recorder missed is reported from its steps
    for e in live.evaluation["episodes"]:
        assert e["mode"] == "rebuilt" or "started before the recording" in e["notes"][0]
    by_episode = {e["episode"]: e for e in live.episodes}
    for e in rebuilt:
        live_e = by_episode[e["episode"]]
        assert e["route_source"] == "waypoints" and e["length"] == live_e["length"] == STEPS
        assert e["return"] == pytest.approx(e["recorded"]["return"], abs=1e-4)
        assert e["return"] == pytest.approx(live_e["return"], abs=1e-4)
        for name, value in live_e["reward_terms"].items():
            assert e["reward_terms"][name] == pytest.approx(value, abs=1e-4), name
        assert e["collisions"] == live_e["collisions"] and e["termination_reason"] == live_e["termination_reason"]
        assert e["route_completion"] == pytest.approx(live_e["route_completion"], abs=1e-5)
    out = live.tmp / "eval"
    assert len(json.loads((out / "report.json").read_text())["episodes"]) == len(live.evaluation["episodes"])
    report = (out / "report.md").read_text()
    assert f"| env_0 #{rebuilt[0]['episode']} | rebuilt |" in report and "returns.png" in report
    assert (out / "returns.png").stat().st_size > 0 and (out / "reward_curves.png").stat().st_size > 0


class ReplayPolicy:
    """Answers each observation with the action the recording took next (then zeros), keeps the observations."""

    def __init__(self, actions: list) -> None:
        self.actions, self.observations = list(actions), []

    def predict(self, observation, deterministic=True):
        self.observations.append({k: v[0] for k, v in observation.items()})
        return np.array([self.actions.pop(0) if self.actions else np.zeros(2)]), None


def test_policy_comparison_and_rebuilt_observations(live):
    """A policy repeating the recorded actions agrees 100%; the observations it gets are the recorded ones."""
    rebuilt = [e["episode"] for e in live.evaluation["episodes"] if e["mode"] == "rebuilt"]
    whole = whole_episodes(live) & set(rebuilt)
    assert whole
    mapper = ActionMapper(load_env_config([str(live.config)])["env"]["action"])
    recorded, _ = read_back(live.bag)
    steps = [deserialize_message(p, Step) for p in recorded["/" + T.step]]
    by_episode = {e: [s for s in steps if s.episode == e] for e in rebuilt}
    # one prediction per observation the agent acted on: the reset one and each step's but the last (an episode
    # cut by the end of the recording, the agent's final reset, comes last: it gets the zeros)
    actions = [
        mapper.from_control(bridge.msg_to_control(s.control)) if e in whole else np.zeros(2)
        for e in rebuilt
        for s in by_episode[e]
    ]
    policy = ReplayPolicy(actions)
    report = evaluate_bag(live.bag, [str(live.config)], None, live.tmp / "policy", policy=policy)
    assert report["policy"]["samples"] >= len(actions) - 1 and not policy.actions
    for e in report["episodes"]:
        if e["episode"] in whole:
            assert e["policy"]["samples"] == len(by_episode[e["episode"]]) and e["policy"]["agreement_rate"] == 1.0
            assert e["policy"]["steer_mae"] < 1e-6 and e["policy"]["throttle_mae"] < 1e-6
    assert (live.tmp / "policy" / "action_errors.png").stat().st_size > 0
    # the observation after step k is what the live step k carried: images, BEV, measurements, goal
    first = 0
    for episode in rebuilt:
        for k, step in enumerate(by_episode[episode][:-1] if episode in whole else [], start=1):
            mine, theirs = policy.observations[first + k], codec.step_observation(step)
            assert mine.keys() == theirs.keys() == {"rgb_front", "bev", "measurements", "goal"}
            for key in mine:
                np.testing.assert_array_equal(mine[key], theirs[key], err_msg=f"episode {episode} step {k} {key}")
        first += len(by_episode[episode])


def copy_without(bag, out, dropped: set[str], lost: tuple[int, int] | None = None) -> None:
    """A copy of ``bag`` without the topics in ``dropped`` (rosbags only), and without every message but
    carla_rl's received inside ``lost`` (receive ns: a recorder that fell behind the simulator's publishers)."""
    shutil.rmtree(out, ignore_errors=True)
    with Reader(bag) as reader, Writer(out, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        keep = {
            c.id: writer.add_connection(c.topic, c.msgtype, msgdef=c.msgdef.data, rihs01=c.digest)
            for c in reader.connections
            if c.topic not in dropped
        }
        for connection, timestamp, data in reader.messages():
            if lost and lost[0] < timestamp < lost[1] and not connection.topic.startswith("/carla_rl/"):
                continue
            if connection.id in keep:
                writer.write(keep[connection.id], timestamp, data)


def test_frames_the_recorder_lost_are_reported_not_rebuilt_from_the_wrong_frames(live):
    """Frames lost mid-episode (all their simulator messages, the steps kept): that episode is reported from its
    recorded steps with a note; a rebuild would start from a frame of the previous episode."""
    victim = next(e["episode"] for e in live.evaluation["episodes"] if e["mode"] == "rebuilt")
    with Reader(live.bag) as reader:
        received = [
            t
            for c, t, data in reader.messages()
            if c.topic == "/" + T.step and deserialize_message(data, Step).episode == victim
        ]
    copy_without(live.bag, live.tmp / "lost", set(), lost=(received[10], received[13]))
    report = evaluate_bag(live.tmp / "lost", [str(live.config)], None, live.tmp / "lost_eval")
    by_episode = {e["episode"]: e for e in report["episodes"]}
    assert by_episode[victim]["mode"] == "recorded steps only", by_episode[victim]
    # which of the two notes depends on whether the lost window took the episode's last frame too (the window is
    # cut by receive times, which a loaded machine spreads): either says its frames are not all recorded
    assert any(
        "missing from the recording" in n or "not all in the recording" in n for n in by_episode[victim]["notes"]
    ), by_episode[victim]["notes"]
    others = {e["episode"] for e in live.evaluation["episodes"] if e["mode"] == "rebuilt"} - {victim}
    assert all(by_episode[e]["mode"] == "rebuilt" for e in others)


def test_without_a_map_the_recorded_steps_are_reported(live):
    """A bag missing world_info: no rebuild, the recorded steps alone, and the report says so."""
    copy_without(live.bag, live.tmp / "no_map", {"/" + T.world_info})
    report = evaluate_bag(live.tmp / "no_map", [str(live.config)], None, live.tmp / "no_map_eval")
    assert any("world_info" in n for n in report["notes"])
    by_episode = {e["episode"]: e for e in live.episodes}
    assert {e["mode"] for e in report["episodes"]} == {"recorded steps only"}
    for e in report["episodes"]:
        if e["episode"] in whole_episodes(live):
            assert e["length"] == STEPS and e["return"] == pytest.approx(by_episode[e["episode"]]["return"], abs=1e-4)


def test_without_env_topics_episodes_start_at_each_route(live):
    """Bridge topics and waypoints only (a real bridge's recording): an episode per recorded Path."""
    copy_without(live.bag, live.tmp / "bridge_only", {"/" + T.step, "/" + T.episode})
    report = evaluate_bag(live.tmp / "bridge_only", [str(live.config)], None, live.tmp / "bridge_only_eval")
    live_returns = sorted(round(e["return"], 6) for e in live.episodes)
    rebuilt = [e for e in report["episodes"] if e["mode"] == "rebuilt"]
    assert rebuilt and all(e["route_source"] == "waypoints" and e["recorded"] is None for e in rebuilt)
    for e in rebuilt:
        if e["termination_reason"] == "max_episode_steps":  # routes recorded whole end like the live episodes
            assert e["length"] == STEPS and round(e["return"], 6) in live_returns


def test_info_of_the_recording(live):
    info = bag_info(live.bag)
    recorded, _ = read_back(live.bag)
    counts = {t["name"]: t["count"] for t in info["topics"]}
    assert counts == {t: len(m) for t, m in recorded.items()}
    assert info["compression"] == "zstd (mcap chunks)" and not info["problems"]
    assert {t["name"]: t for t in info["topics"]}["/" + T.world_info]["latched"]
    assert "/" + T.step in format_info(info)


def test_a_damaged_recording_is_still_scored_and_replayed_but_the_tools_exit_non_zero(live):
    """A recording cut at 60 % (a copy interrupted): evaluate-bag scores and reports the episodes it can still
    read, replay publishes them, bag info lists them; each says the bag is damaged and exits 1 (before: 0)."""
    damaged = live.tmp / "cut"
    shutil.copytree(live.bag, damaged)
    (storage,) = damaged.glob("*.mcap")
    data = storage.read_bytes()
    storage.write_bytes(data[: int(len(data) * 0.6)])

    def cli(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "carla_rl_bringup.cli", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    evaluation = cli("evaluate-bag", str(damaged), "--config", str(live.config), "--out", str(live.tmp / "cut_eval"))
    assert evaluation.returncode == 1 and "Traceback" not in evaluation.stderr, evaluation.stderr[-2000:]
    assert "cut short" in evaluation.stderr and json.loads(evaluation.stdout.splitlines()[-1])
    assert json.loads((live.tmp / "cut_eval" / "report.json").read_text())["episodes"]  # what was recovered
    info = cli("bag", "info", str(damaged))
    assert info.returncode == 1 and "cut short" in info.stdout and "Messages:" in info.stdout
    replay = cli("replay", str(damaged), "--rate", "0")
    assert replay.returncode == 1 and "published" in replay.stderr, replay.stderr[-2000:]

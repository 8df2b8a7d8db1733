"""``carla-rl viz foxglove`` as a process: the Foxglove WebSocket protocol spoken back by a probe client.

This test's node publishes an env's Step, EpisodeSummary, world_info and camera over real DDS; the probe
subscribes to every advertised channel like the Foxglove app and checks: Foxglove schemas on each channel, the
reward messages carry exactly the Step's numbers, the camera is a JPEG, episode summaries arrive one each, the
map and scene come as SceneUpdates, and the committed layout file is what the code generates and names only
advertised topics. The server listens on 127.0.0.1 unless --host says otherwise.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from carla_msgs.msg import CarlaWorldInfo
from carla_rl_msgs.msg import EpisodeSummary, Step
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import Image

from carla_rl_common import bridge
from carla_rl_common.bridge import BridgeTopics
from carla_rl_common.towns import town_path
from carla_rl_viz.foxglove_stream import foxglove_layout, topics_for
from carla_rl_viz.probe import FoxgloveProbe, start_viewer, stop_viewer, viewer_log, wait_until

REPO = Path(__file__).resolve().parents[2]
T = BridgeTopics()
TOPICS = topics_for("env_0")


@pytest.fixture(scope="module")
def publisher():
    rclpy.init()
    node = rclpy.create_node("viz_foxglove_test_publisher")
    qos = bridge.qos_default()
    pubs = {
        "step": node.create_publisher(Step, "/" + T.step, qos),
        "episode": node.create_publisher(EpisodeSummary, "/" + T.episode, bridge.qos_default(100)),
        "camera": node.create_publisher(Image, "/" + T.image("rgb_front"), qos),
    }
    node.create_publisher(CarlaWorldInfo, "/" + T.world_info, bridge.qos_latched()).publish(
        CarlaWorldInfo(map_name="RLTown01", opendrive=town_path("RLTown01").read_text())
    )
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    stop = threading.Event()
    thread = threading.Thread(
        target=lambda: [executor.spin_once(timeout_sec=0.05) for _ in iter(stop.is_set, True)], daemon=True
    )
    thread.start()
    yield node, pubs
    stop.set()
    thread.join(timeout=5)
    node.destroy_node()
    rclpy.shutdown()


@pytest.fixture(scope="module")
def server(publisher):
    proc, url = start_viewer("foxglove", ["--port", "0", "--max-rate", "50"])  # the root namespace: env_0
    yield url
    assert stop_viewer(proc) == 0, viewer_log(proc)


def step_msg(step: int) -> Step:
    msg = Step(env_id="env_0", episode=2, step=step, frame=step + 10)
    msg.header.stamp = bridge.sim_time_msg(step * 0.05)
    msg.reward = float(np.float32(step / 7.0))
    msg.reward_term_names, msg.reward_terms = ["route_progress", "collision"], [step / 7.0, 0.0]
    msg.control.throttle, msg.control.steer, msg.control.brake = 0.5, 0.25, 0.0
    msg.ego_pose = bridge.pose_msg(10.0 + step, -4.0, 0.5)
    msg.speed = 3.0
    return msg


def test_streams_the_env_with_foxglove_schemas(publisher, server):
    _, pubs = publisher
    assert server.startswith("ws://127.0.0.1:")
    port = int(server.rstrip("/").rsplit(":", 1)[1])
    rows = [line.split() for line in open("/proc/net/tcp").read().splitlines()[1:]]
    listening = {row[1] for row in rows if row[3] == "0A"}  # state 0A: LISTEN
    assert f"0100007F:{port:04X}" in listening and f"00000000:{port:04X}" not in listening
    probe = FoxgloveProbe(server)
    try:
        image = np.full((32, 48, 4), (40, 90, 200, 255), np.uint8)
        sent: dict[int, Step] = {}
        step = 0

        def everything_arrived() -> bool:
            nonlocal step
            step += 1
            pubs["camera"].publish(bridge.numpy_to_image(image, "bgra8"))
            sent[step] = step_msg(step)
            pubs["step"].publish(sent[step])
            if step % 20 == 0:
                pubs["episode"].publish(
                    EpisodeSummary(
                        env_id="env_0",
                        episode=step // 20,
                        episode_return=step / 3.0,
                        success=step % 40 == 0,
                        length=20,
                        termination_reason="x",
                    )
                )
            time.sleep(0.02)
            return (
                all(probe.counts.get(TOPICS[k], 0) >= 2 for k in ("map", "scene", "camera", "reward"))
                and probe.counts.get("/tf", 0) >= 2
                and probe.counts.get(TOPICS["episodes"], 0) >= 2
            )

        wait_until(everything_arrived, 60, "every channel to carry messages")
    finally:
        probe.close()
    schemas = {c["topic"]: c.get("schemaName") for c in probe.channels.values()}
    assert schemas[TOPICS["map"]] == schemas[TOPICS["scene"]] == "foxglove.SceneUpdate"
    assert schemas[TOPICS["camera"]] == "foxglove.CompressedImage" and schemas["/tf"] == "foxglove.FrameTransforms"
    assert schemas[TOPICS["reward"]] == "carla_rl.Reward" and schemas[TOPICS["episodes"]] == "carla_rl.Episode"
    for reward in probe.json[TOPICS["reward"]]:
        msg = sent[reward["step"]]
        assert reward["reward"] == msg.reward and reward["episode"] == 2 and reward["env_id"] == "env_0"
        assert reward["terms"] == {"route_progress": float(np.float32(msg.step / 7.0)), "collision": 0.0}
        assert (reward["throttle"], reward["steer"], reward["brake"], reward["speed"]) == (0.5, 0.25, 0.0, 3.0)
    assert b"\xff\xd8\xff" in probe.last_payload[TOPICS["camera"]]  # the JPEG inside the CompressedImage
    assert b"env_0/ego_vehicle" in probe.last_payload["/tf"] and b"env_0/map" in probe.last_payload["/tf"]
    episodes = probe.json[TOPICS["episodes"]]
    assert [e["episode"] for e in episodes] == list(range(episodes[0]["episode"], episodes[-1]["episode"] + 1))
    assert all(e["return"] == pytest.approx(e["episode"] * 20 / 3.0) for e in episodes)


def test_layout_file_is_generated_and_names_advertised_topics(server):
    committed = json.loads((REPO / "config" / "foxglove_layout.json").read_text())
    assert committed == foxglove_layout(), (
        "regenerate: python -m carla_rl_viz.foxglove_stream > config/foxglove_layout.json"
    )
    probe = FoxgloveProbe(server, topics=set())  # advertisements only
    try:
        wait_until(lambda: len(probe.channels) >= 6, 15, "the advertisements")
    finally:
        probe.close()
    advertised = {c["topic"] for c in probe.channels.values()}
    text = json.dumps(committed)
    named = {t for t in advertised if f'"{t}' in text}
    assert named >= set(TOPICS.values())  # every stream of env_0 has a panel
    for value in _values(committed, "value") + _values(committed, "imageTopic"):
        assert value.split(".")[0] in advertised, value


def _values(node, key: str) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == key and isinstance(v, str)] + [
            x for v in node.values() for x in _values(v, key)
        ]
    if isinstance(node, list):
        return [x for v in node for x in _values(v, key)]
    return []


def upgrade(url: str, host: str | None, origin: str | None) -> bytes:
    """The status line a WebSocket upgrade with these Host and Origin headers gets (a browser's request)."""
    import socket

    port = int(url.rstrip("/").rsplit(":", 1)[1])
    lines = ["GET / HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13"]
    lines += ["Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol: foxglove.sdk.v1"]
    lines += [f"Host: {host}"] if host is not None else []
    lines += [f"Origin: {origin}"] if origin is not None else []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0]


@pytest.mark.parametrize(
    "host,origin,admitted",
    [
        ("127.0.0.1:{port}", None, True),  # a native client
        ("localhost:{port}", "https://app.foxglove.dev", True),  # the Foxglove app in a browser
        ("127.0.0.1:{port}", "http://127.0.0.1:{port}", True),  # the server's own origin (websocket-client)
        ("evil.com", None, False),  # DNS rebinding: evil.com resolved to 127.0.0.1
        ("evil.com:{port}", "http://evil.com:{port}", False),
        ("127.0.0.1.evil.com:{port}", "https://app.foxglove.dev", False),
        ("127.0.0.1:{port}", "http://evil.com", False),  # a cross-site page on the real address
        ("127.0.0.1:{port}", "https://app.foxglove.dev.evil.com", False),
        ("127.0.0.1:{port}", "null", False),  # a sandboxed frame or a file:// page
        (None, None, False),
    ],
)
def test_hostile_host_and_origin_are_refused_before_any_data(server, host, origin, admitted):
    """foxglove-sdk's server accepted any Host and Origin (1.5 MB of map, scene and camera to evil.com in 4 s):
    the gate in front answers 403 unless the Host is this machine and the Origin absent or allowed."""
    port = server.rstrip("/").rsplit(":", 1)[1]
    fill = {"port": port}
    status = upgrade(server, host and host.format(**fill), origin and origin.format(**fill))
    assert status.startswith(b"HTTP/1.1 101" if admitted else b"HTTP/1.1 403"), status


def test_allow_origin_replaces_the_default(publisher):
    proc, url = start_viewer("foxglove", ["--port", "0", "--allow-origin", "https://tools.example/"])
    try:
        host = url.split("//", 1)[1].rstrip("/")
        assert upgrade(url, host, "https://tools.example").startswith(b"HTTP/1.1 101")
        assert upgrade(url, host, "https://app.foxglove.dev").startswith(b"HTTP/1.1 403")
        probe = FoxgloveProbe(url, topics=set())  # a native client still streams through the gate
        try:
            wait_until(lambda: len(probe.channels) >= 6, 15, "the advertisements through the gate")
        finally:
            probe.close()
    finally:
        assert stop_viewer(proc) == 0, viewer_log(proc)

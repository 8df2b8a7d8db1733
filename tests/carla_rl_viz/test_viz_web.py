"""``carla-rl viz web`` as a process, fed over real DDS by this test's own publisher node.

The test publishes what an env node and a bridge would (Step, EpisodeSummary, world_info, waypoints, markers,
vehicle_info, a camera image) with known numbers and reads the server back over HTTP as the page does: every
number must come back exactly, the ego must be left out of the traffic, the camera must decode to the image
sent, a burst of steps must be thinned to the newest (latest wins), and the costly subscriptions (markers,
camera) must exist only while a browser is connected. Also: 127.0.0.1 by default, foreign Host headers and
paths outside static/ refused, bad arguments named.
"""

from __future__ import annotations

import http.client
import threading
import time

import cv2
import numpy as np
import pytest
import rclpy
from carla_msgs.msg import CarlaEgoVehicleInfo, CarlaWorldInfo
from carla_rl_msgs.msg import EpisodeSummary, Step
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Path
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import Image
from visualization_msgs.msg import Marker, MarkerArray

from carla_rl_common import bridge
from carla_rl_common.bridge import BridgeTopics
from carla_rl_common.towns import town_path
from carla_rl_viz.probe import BrowserProbe, start_viewer, stop_viewer, viewer_log, wait_until

T = BridgeTopics()
ENV = "env_1"  # the second of two envs: the namespace must be honoured, not just the root
EGO_ID, TRAFFIC = 7, [(21, 100.0, 2.0, 0.5, 4.5, 2.0), (22, 150.0, -3.0, -1.0, 3.9, 1.8)]
TERMS = {"route_progress": 0.25, "speed_tracking": 0.03125, "collision": -1.0}
MAX_RATE = 10.0


class FakeStack:
    """Publishes one env's Step and bridge topics under /env_1, as the env node and the bridge do."""

    def __init__(self) -> None:
        rclpy.init()
        self.node = rclpy.create_node("viz_web_test_publisher")
        qos, latched = bridge.qos_default(), bridge.qos_latched()
        ns = f"/{ENV}/"
        p = self.node.create_publisher
        self.step = p(Step, ns + T.step, qos)
        self.episode = p(EpisodeSummary, ns + T.episode, bridge.qos_default(100))
        self.world_info = p(CarlaWorldInfo, ns + T.world_info, latched)
        self.route = p(Path, ns + T.waypoints, latched)
        self.info = p(CarlaEgoVehicleInfo, ns + T.vehicle_info, latched)
        self.markers = p(MarkerArray, ns + T.markers, qos)
        self.camera = p(Image, ns + T.image("rgb_front"), qos)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        self.world_info.publish(CarlaWorldInfo(map_name="RLTown01", opendrive=town_path("RLTown01").read_text()))
        self.info.publish(CarlaEgoVehicleInfo(id=EGO_ID, rolename="ego_vehicle"))
        path = Path()
        path.header.frame_id = bridge.MAP_FRAME
        for x in np.arange(100.0, 140.5, 0.5):  # 0.5 m apart: the view keeps one point a metre
            path.poses.append(PoseStamped(pose=bridge.pose_msg(float(x), 2.0, 0.0)))
        self.route.publish(path)
        yy, xx = np.mgrid[0:48, 0:64]  # smooth ramps and 16-px blocks: JPEG keeps them close, and no two alike
        self.image = np.stack([xx * 4, yy * 5, ((xx // 16 + yy // 16) % 2) * 200], axis=2).astype(np.uint8)

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def step_msg(self, step: int, episode: int = 3) -> Step:
        msg = Step(env_id=ENV, episode=episode, step=step, frame=1000 + step)
        msg.header.stamp = bridge.sim_time_msg(50.0 + step * 0.05)
        msg.header.frame_id = bridge.MAP_FRAME
        msg.reward = float(np.float32(0.1 + step * 1e-3))
        msg.reward_term_names = list(TERMS)
        msg.reward_terms = list(TERMS.values())
        msg.control.throttle, msg.control.steer, msg.control.brake = 0.625, -0.3, 0.0
        msg.ego_pose = bridge.pose_msg(120.0 + step * 0.1, 2.0, 0.1)
        msg.speed = float(np.float32(5.5))
        return msg

    def publish_frame(self, step: int) -> Step:
        """Markers and camera first, then the step, as the simulator and env node order one frame."""
        markers = MarkerArray()
        for actor_id, x, y, yaw, length, width in [(EGO_ID, 120.0 + step * 0.1, 2.0, 0.1, 4.8, 2.1), *TRAFFIC]:
            m = Marker(id=actor_id, type=Marker.CUBE, action=Marker.ADD, ns="vehicles")
            m.pose = bridge.pose_msg(x, y, yaw)
            m.scale.x, m.scale.y, m.scale.z = length, width, 1.5
            markers.markers.append(m)
        self.markers.publish(markers)
        self.camera.publish(bridge.numpy_to_image(self.image, "bgr8", frame_id="ego_vehicle/rgb_front"))
        msg = self.step_msg(step)
        self.step.publish(msg)
        return msg

    def subscribers(self, topic: str) -> int:
        return self.node.count_subscribers(f"/{ENV}/{topic}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.node.destroy_node()
        rclpy.shutdown()


@pytest.fixture(scope="module")
def stack():
    fake = FakeStack()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def viewer(stack):
    proc, url = start_viewer("web", ["--port", "0", "--num-envs", "2", "--max-rate", str(MAX_RATE)])
    yield url
    assert stop_viewer(proc) == 0, viewer_log(proc)


def get(url: str, path: str, host: str | None = None) -> tuple[int, bytes]:
    parts = url.split("//", 1)[1].strip("/").split(":")
    conn = http.client.HTTPConnection(parts[0], int(parts[1]), timeout=10)
    conn.request("GET", path, headers={"Host": host} if host else {})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def test_binds_localhost_and_refuses_what_it_should(viewer):
    assert viewer.startswith("http://127.0.0.1:")
    port = int(viewer.rstrip("/").rsplit(":", 1)[1])
    listening = [line.split() for line in open("/proc/net/tcp").read().splitlines()[1:]]
    local = {row[1] for row in listening if row[3] == "0A"}  # state 0A: LISTEN
    assert f"0100007F:{port:04X}" in local and f"00000000:{port:04X}" not in local
    assert get(viewer, "/")[0] == 200 and b"/static/app.js" in get(viewer, "/")[1]
    assert get(viewer, "/", host="attacker.example:80")[0] == 403  # DNS rebinding
    assert get(viewer, "/static/../live.py")[0] == 404
    assert get(viewer, "/static/%2e%2e/server.py")[0] == 404
    status, body = get(viewer, "/api/stream?env=env_9")
    assert status == 404 and b"env_0, env_1" in body
    status, body = get(viewer, "/api/envs")
    assert status == 200 and b'"env_1"' in body


def test_page_assets_need_no_internet(viewer):
    for name in ("/", "/static/app.js", "/static/style.css"):
        status, body = get(viewer, name)
        assert status == 200
        assert b"http://" not in body and b"https://" not in body and b"//cdn" not in body


def test_stream_shows_exactly_what_was_published(stack, viewer):
    probe = BrowserProbe(viewer, ENV)
    try:
        sent: dict[int, Step] = {}
        step = 0

        def got_full_state() -> bool:
            nonlocal step
            step += 1
            sent[step] = stack.publish_frame(step)
            time.sleep(0.02)
            # the latched route and vehicle_info (the ego's id) may come after the first traffic
            return (
                any(len(s["traffic"]) == len(TRAFFIC) for s in probe.states)
                and probe.images > 0
                and "map" in probe.events
                and "route" in probe.events
            )

        wait_until(got_full_state, 45, "a state with the traffic but the ego, a camera image, the map and route")
        state = [s for s in probe.states if s["traffic"]][-1]
        msg = sent[state["step"]]
        assert state["env"] == ENV and state["env_id"] == msg.env_id and state["episode"] == msg.episode
        assert state["frame"] == msg.frame and state["stamp"] == pytest.approx(50.0 + msg.step * 0.05)
        assert state["reward"] == msg.reward and state["speed"] == msg.speed  # exact: the message's own floats
        assert state["terms"] == {k: float(np.float32(v)) for k, v in TERMS.items()}
        assert state["action"] == {
            "throttle": 0.625,
            "steer": float(np.float32(-0.3)),
            "brake": 0.0,
            "reverse": False,
            "hand_brake": False,
        }
        assert state["ego"]["x"] == pytest.approx(msg.ego_pose.position.x) and state["ego"]["yaw"] == pytest.approx(0.1)
        assert sorted(t[:2] for t in state["traffic"]) == [[100.0, 2.0], [150.0, -3.0]]  # the ego is not traffic
        assert [t[3:] for t in sorted(state["traffic"])] == [[4.5, 2.0], [3.9, 1.8]]
        assert probe.events.get("map") == 1 and probe.events.get("route") == 1
    finally:
        probe.close()


def test_camera_is_the_published_image(stack, viewer):
    stack.publish_frame(500)
    status, body = get(viewer, f"/api/camera?env={ENV}")
    assert status == 200 and body[:2] == b"\xff\xd8"
    decoded = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == stack.image.shape
    error = np.abs(decoded.astype(int) - stack.image.astype(int)).mean()
    assert error < 6, error  # JPEG: close, not equal; a mirrored image is far off:
    assert np.abs(decoded.astype(int) - stack.image[:, ::-1].astype(int)).mean() > 8 * error
    assert get(viewer, "/api/camera?env=env_0")[0] == 204  # env_0 has sent nothing


def test_map_and_route_events(stack, viewer):
    import json

    conn_host, port = viewer.split("//")[1].strip("/").split(":")
    conn = http.client.HTTPConnection(conn_host, int(port), timeout=10)
    conn.request("GET", f"/api/stream?env={ENV}")
    response = conn.getresponse()
    events: dict[str, dict] = {}
    kind = ""
    while len(events) < 2:
        line = response.readline().decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            events[kind] = json.loads(line[6:])
    conn.close()
    town = events["map"]
    assert town["name"] == "RLTown01" and len(town["lanes"]) > 100
    xmin, ymin, xmax, ymax = town["bounds"]
    for lane in town["lanes"]:
        xs, ys = lane["points"][0::2], lane["points"][1::2]
        assert xmin - 0.1 <= min(xs) and max(xs) <= xmax + 0.1 and ymin - 0.1 <= min(ys) and max(ys) <= ymax + 0.1
    points = events["route"]["points"]
    assert points[:2] == [100.0, 2.0] and points[-2:] == [140.0, 2.0]  # start, and the goal kept
    assert len(points) // 2 == 41  # one point a metre


def test_burst_is_thinned_to_the_newest(stack, viewer):
    probe = BrowserProbe(viewer, ENV, camera=False)
    try:
        wait_until(lambda: stack.publish_frame(1) and any(s["step"] == 1 for s in probe.states), 30, "the first state")
        first = len(probe.states)  # before: the newest step of an earlier test
        start, last = time.monotonic(), 2000
        for step in range(2, last + 1):
            stack.step.publish(stack.step_msg(step))  # as fast as DDS takes them
        burst = time.monotonic() - start
        # the view reads best effort: a burst may lose its tail in transit, so the newest is sent again (as the
        # next frame would be) until shown
        wait_until(
            lambda: stack.step.publish(stack.step_msg(last)) or probe.states[-1]["step"] == last,
            10,
            "the newest step to be shown",
        )
        time.sleep(0.5)
        shown = [s["step"] for s in probe.states[first:] if s["step"] > 1]
        assert shown == sorted(shown) and shown[-1] == last
        assert len(shown) <= MAX_RATE * (burst + 1.0) + 2, f"{len(shown)} updates for a {burst:.2f} s burst"
    finally:
        probe.close()


def test_costly_subscriptions_only_while_watched(stack, viewer):
    markers, camera = T.markers, T.image("rgb_front")
    wait_until(
        lambda: stack.subscribers(markers) == 0 and stack.subscribers(camera) == 0,
        15,
        "no markers/camera subscription while nobody watches",
    )
    probe = BrowserProbe(viewer, ENV, camera=False)
    try:
        wait_until(
            lambda: stack.subscribers(markers) == 1 and stack.subscribers(camera) == 1,
            15,
            "markers and camera subscriptions once a browser connects",
        )
    finally:
        probe.close()
    wait_until(lambda: stack.subscribers(markers) == 0, 15, "the subscriptions to go with the last browser")


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--num-envs", "0"], "--num-envs must be at least 1"),
        (["--namespaces", "env_0,env_0"], "names an env twice"),
        (["--port", "70000"], "--port must be in 0..65535"),
    ],
)
def test_bad_arguments_are_named(arguments, message, capsys):
    from carla_rl_bringup.cli import main

    assert main(["viz", "web", *arguments]) == 2  # refused before any ROS or socket is touched
    assert message in capsys.readouterr().err


def test_defaults_listen_on_localhost_only():
    from carla_rl_bringup.cli import build_parser

    for kind in ("web", "foxglove"):
        args = build_parser().parse_args(["viz", kind])
        assert args.host == "127.0.0.1" and not args.network


@pytest.mark.parametrize("host", ["evil.com", "evil.com:8080", "127.0.0.1.evil.com", "localhost.evil.com:80", ""])
def test_hostile_host_headers_are_refused(viewer, host):
    """DNS rebinding: a page on evil.com whose name resolves to 127.0.0.1 reads nothing (same check as Foxglove's)."""
    import socket

    port = int(viewer.rstrip("/").rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET /api/envs HTTP/1.1\r\nHost: {host}\r\nOrigin: http://evil.com\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 403"), host


def test_a_burst_of_browsers_is_served_at_once_and_a_stalled_one_is_dropped(viewer):
    """A listen queue of 5 made a burst of 30 connections wait up to 1 s (SYN retries); handlers had no timeout,
    so a client that never finished its request held a thread for good."""
    import socket
    from concurrent.futures import ThreadPoolExecutor

    from carla_rl_viz.web.server import REQUEST_TIMEOUT_S

    def timed_get(_: int) -> float:
        started = time.monotonic()
        assert get(viewer, "/api/envs")[0] == 200
        return time.monotonic() - started

    port = int(viewer.rstrip("/").rsplit(":", 1)[1])
    stalled = socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT_S + 10)
    stalled.sendall(b"GET /api/envs HTTP/1.1\r\n")  # and never the rest
    with ThreadPoolExecutor(max_workers=40) as pool:
        slowest = max(pool.map(timed_get, range(40)))
    assert slowest < 0.9, f"slowest of 40 simultaneous requests took {slowest:.2f} s"
    try:
        assert stalled.recv(4096) == b""  # closed by the server (a TimeoutError here: it never was)
    finally:
        stalled.close()

"""``carla-rl viz foxglove``: the running envs over the Foxglove WebSocket protocol (foxglove-sdk).

Per env (label ``env_0``, ``env_1``, ...; the root namespace is ``env_0``) the server offers, with Foxglove's
own schemas so the app's panels understand them without our message definitions:

==========================  ======================  =========================================================
topic                       schema                  content
==========================  ======================  =========================================================
``/<env>/map``              foxglove.SceneUpdate    lane outlines of the town (from world_info), re-sent every
                                                    few seconds for late subscribers
``/<env>/scene``            foxglove.SceneUpdate    ego and traffic boxes, the route and the goal
``/tf``                     foxglove.FrameTransforms ``<env>/map`` -> ``<env>/ego_vehicle``
``/<env>/camera``           foxglove.CompressedImage the camera (JPEG): the Step's first image, else the topic
``/<env>/reward``           JSON                    reward, its terms, action, speed, episode and step
``/<env>/episodes``         JSON                    one message per finished episode (return, success, ...)
==========================  ======================  =========================================================

``config/foxglove_layout.json`` arranges them for env_0 (3D, image, reward and return plots). Frames are
prefixed with the env label so several envs never share a frame. Nothing is encoded for a channel no client
subscribes to (``has_sinks``), and updates are throttled to ``max_rate`` per env, latest wins.

Who may connect: foxglove-sdk's server (0.30) checks neither the ``Host`` nor the ``Origin`` of a WebSocket
upgrade, so any web page open in the user's browser could read the run (cross-site WebSocket, DNS rebinding).
:class:`OriginGate` therefore listens on the public address and hands a connection to the SDK's server (on
127.0.0.1, a free port) only when its ``Host`` names this machine's address and its ``Origin`` is absent (a
native client), the Foxglove app's (:data:`FOXGLOVE_ORIGINS`, or ``--allow-origin``) or the server's own
address; anything else gets ``403 Forbidden`` before a byte of the run is sent.

Which clients: foxglove-sdk's server accepts only the WebSocket subprotocol ``foxglove.sdk.v1`` and answers
``400`` to anything else, while Lichtblick, older Foxglove app versions and ws-protocol clients
(``@foxglove/ws-protocol``, roslibjs-foxglove) offer only ``foxglove.websocket.v1``: the same protocol under its
first name (foxglove-sdk took it over and renamed it). The gate admits both (:data:`SUBPROTOCOLS`): it asks
the SDK's server for ``foxglove.sdk.v1`` and answers the client with the name the client offered.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import foxglove
from foxglove.channels import CompressedImageChannel, FrameTransformsChannel, SceneUpdateChannel
from foxglove.messages import (
    Color,
    CompressedImage,
    CubePrimitive,
    FrameTransform,
    FrameTransforms,
    LinePrimitive,
    LinePrimitiveLineType,
    Point3,
    Pose,
    Quaternion,
    SceneEntity,
    SceneUpdate,
    SpherePrimitive,
    Timestamp,
    Vector3,
)
from foxglove.websocket import Capability, ChannelView, Client

from carla_rl_common import bridge
from carla_rl_viz.live import EnvView, LiveNode

MAP_RESEND_S = 3.0  # a client that subscribes later gets the town within this long
FOXGLOVE_ORIGINS = ("https://app.foxglove.dev",)
"""Origins a browser sends for the Foxglove app (the default of ``--allow-origin``)."""
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
HEAD_LIMIT = 16 * 1024  # bytes: an upgrade request's head is a few hundred
HEAD_TIMEOUT_S = 5.0  # a client that sends no complete head within this long is dropped
SDK_SUBPROTOCOL = "foxglove.sdk.v1"  # the only one foxglove-sdk's server accepts
SUBPROTOCOLS = (SDK_SUBPROTOCOL, "foxglove.websocket.v1")
"""The WebSocket subprotocols the gate admits, in order of preference: one protocol, its current and first name."""
REWARD_SCHEMA = {
    "title": "carla_rl.Reward",
    "type": "object",
    "properties": {
        "env_id": {"type": "string"},
        "episode": {"type": "integer"},
        "step": {"type": "integer"},
        "reward": {"type": "number"},
        "terms": {"type": "object", "additionalProperties": {"type": "number"}},
        "throttle": {"type": "number"},
        "steer": {"type": "number"},
        "brake": {"type": "number"},
        "speed": {"type": "number"},
    },
}
EPISODE_SCHEMA = {
    "title": "carla_rl.Episode",
    "type": "object",
    "properties": {
        "episode": {"type": "integer"},
        "return": {"type": "number"},
        "success": {"type": "boolean"},
        "length": {"type": "integer"},
        "route_completion": {"type": "number"},
        "reason": {"type": "string"},
    },
}
EGO_COLOR, TRAFFIC_COLOR = Color(r=0.16, g=0.71, b=0.96, a=0.9), Color(r=1.0, g=0.6, b=0.0, a=0.9)
ROUTE_COLOR, GOAL_COLOR, LANE_COLOR = (
    Color(r=1.0, g=0.93, b=0.35, a=0.9),
    Color(r=0.94, g=0.33, b=0.31, a=1.0),
    Color(r=0.75, g=0.75, b=0.75, a=1.0),
)


def topics_for(label: str) -> dict[str, str]:
    """The Foxglove topic of each stream of one env (the layout file names these for env_0)."""
    return {name: f"/{label}/{name}" for name in ("map", "scene", "camera", "reward", "episodes")}


def frames_for(label: str) -> tuple[str, str]:
    """(map frame, ego frame) of one env in the Foxglove scene."""
    return f"{label}/{bridge.MAP_FRAME}", f"{label}/{bridge.ego_frame()}"


def _stamp(seconds: float) -> Timestamp:
    sec = int(seconds)
    return Timestamp(sec, int(round((seconds - sec) * 1e9)) % 1_000_000_000)


def _pose(x: float, y: float, yaw: float, z: float = 0.0) -> Pose:
    qx, qy, qz, qw = bridge.yaw_to_quaternion(yaw)
    return Pose(position=Vector3(x=x, y=y, z=z), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw))


def map_scene(geometry: dict[str, Any], frame: str) -> SceneUpdate:
    """Lane outlines as one line list (segment pairs): a single primitive draws a whole town fast."""
    points: list[Point3] = []
    for lane in geometry["lanes"]:
        p = lane["points"]
        ring = [Point3(x=p[i], y=p[i + 1], z=0.0) for i in range(0, len(p), 2)]
        for a, b in zip(ring, ring[1:] + ring[:1]):
            points += (a, b)
    line = LinePrimitive(
        type=LinePrimitiveLineType.LineList,
        thickness=1.0,
        scale_invariant=True,
        points=points,
        color=LANE_COLOR,
        pose=_pose(0.0, 0.0, 0.0),
    )
    return SceneUpdate(entities=[SceneEntity(frame_id=frame, id="map", lines=[line])])


def vehicle_scene(state: dict[str, Any], route: list[float], frame: str) -> SceneUpdate:
    """Ego, traffic, route and goal of one step."""
    stamp = _stamp(state["stamp"])
    ego = state["ego"]
    cubes = [
        CubePrimitive(
            pose=_pose(ego["x"], ego["y"], ego["yaw"], 0.8), size=Vector3(x=4.8, y=2.1, z=1.6), color=EGO_COLOR
        )
    ]
    cubes += [
        CubePrimitive(pose=_pose(x, y, yaw, 0.8), size=Vector3(x=length, y=width, z=1.6), color=TRAFFIC_COLOR)
        for x, y, yaw, length, width in state["traffic"]
    ]
    entities = [SceneEntity(timestamp=stamp, frame_id=frame, id="vehicles", cubes=cubes)]
    if len(route) >= 4:
        line = LinePrimitive(
            type=LinePrimitiveLineType.LineStrip,
            thickness=0.6,
            pose=_pose(0.0, 0.0, 0.0),
            points=[Point3(x=route[i], y=route[i + 1], z=0.1) for i in range(0, len(route), 2)],
            color=ROUTE_COLOR,
        )
        goal = SpherePrimitive(
            pose=_pose(route[-2], route[-1], 0.0, 1.0), size=Vector3(x=3.0, y=3.0, z=3.0), color=GOAL_COLOR
        )
        entities.append(SceneEntity(timestamp=stamp, frame_id=frame, id="route", lines=[line], spheres=[goal]))
    return SceneUpdate(entities=entities)


def reward_message(state: dict[str, Any]) -> dict[str, Any]:
    a = state["action"]
    return {
        "env_id": state["env_id"],
        "episode": state["episode"],
        "step": state["step"],
        "reward": state["reward"],
        "terms": state["terms"],
        "throttle": a["throttle"],
        "steer": a["steer"],
        "brake": a["brake"],
        "speed": state["speed"],
    }


class _EnvChannels:
    """The channels of one env and what was last sent on them."""

    def __init__(self, env: EnvView, context: foxglove.Context):
        self.env = env
        self.topics = topics_for(env.label)
        self.map_frame, self.ego_frame = frames_for(env.label)
        self.map = SceneUpdateChannel(self.topics["map"], context=context)
        self.scene = SceneUpdateChannel(self.topics["scene"], context=context)
        self.camera = CompressedImageChannel(self.topics["camera"], context=context)
        self.reward = foxglove.Channel(self.topics["reward"], schema=REWARD_SCHEMA, context=context)
        self.episodes = foxglove.Channel(self.topics["episodes"], schema=EPISODE_SCHEMA, context=context)
        self.sent_step = self.sent_camera = self.sent_episodes = self.sent_map = 0
        self.map_scene: SceneUpdate | None = None
        self.map_sent_at = 0.0


class OriginGate:
    """A TCP front for a WebSocket server that checks the upgrade's ``Host`` and ``Origin`` (see module doc).

    One thread accepts; each admitted connection is relayed byte for byte to ``upstream_port`` on 127.0.0.1
    by two threads (one per direction), so the WebSocket protocol itself passes untouched.
    """

    def __init__(self, host: str, port: int, upstream_port: int, allowed_origins: Iterable[str]):
        self.upstream_port = upstream_port
        self.allowed_origins = {o.rstrip("/") for o in allowed_origins}
        self.listener = socket.create_server((host, port), backlog=64)
        bound_host, self.port = self.listener.getsockname()[:2]
        self.allowed_hosts = {*LOOPBACK_HOSTS, host, str(bound_host)}
        self._stop = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="foxglove-gate", daemon=True)
        self._thread.start()

    def refusal(self, headers: dict[str, str]) -> str:
        """Why an upgrade request with these (lower-cased) headers is refused; "" when it is admitted."""
        host = headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name not in self.allowed_hosts:
            return f"unknown Host header {host!r}"
        origin = headers.get("origin")
        if origin is None or "*" in self.allowed_origins or origin.rstrip("/") in self.allowed_origins:
            return ""
        parts = urlsplit(origin)
        if parts.scheme in ("http", "https") and parts.netloc == host:  # the server's own address (native clients)
            return ""
        return f"Origin {origin!r} is not allowed (allowed: {', '.join(sorted(self.allowed_origins))}; --allow-origin)"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed by stop()
            threading.Thread(target=self._serve, args=(client,), name="foxglove-gate-conn", daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        self._track(client)
        upstream: socket.socket | None = None
        try:
            head = self._read_head(client)
            why = "unreadable" if head is None else self.refusal(_headers(head))
            if why:
                if head is not None:
                    body = f"{why}\n".encode()
                    client.sendall(
                        b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                        + f"Content-Length: {len(body)}\r\n\r\n".encode()
                        + body
                    )
                self._close(client)
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=HEAD_TIMEOUT_S)
            self._track(upstream)
            offered = next((name for name in SUBPROTOCOLS if name in _offered_subprotocols(head)), SDK_SUBPROTOCOL)
            if offered == SDK_SUBPROTOCOL:  # or none of ours: the SDK's server answers (400 for none)
                upstream.sendall(head)
            else:  # the first name: the SDK's server gets its own, the client the one it offered
                upstream.sendall(_with_subprotocol(head, SDK_SUBPROTOCOL))
                reply = self._read_head(upstream)
                if reply is None:
                    self._close(client, upstream)
                    return
                client.sendall(_with_subprotocol(reply, offered))
            client.settimeout(None)
            upstream.settimeout(None)
        except OSError:
            self._close(client, *([upstream] if upstream is not None else []))
            return
        threading.Thread(target=self._pump, args=(upstream, client), name="foxglove-gate-down", daemon=True).start()
        self._pump(client, upstream)

    def _read_head(self, peer: socket.socket) -> bytes | None:
        """An HTTP head from ``peer`` (and whatever followed it in the same reads); None when it never completes."""
        peer.settimeout(HEAD_TIMEOUT_S)
        data = b""
        while b"\r\n\r\n" not in data:
            if len(data) > HEAD_LIMIT:
                return None
            chunk = peer.recv(4096)
            if not chunk:
                return None
            data += chunk
        return data

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        self._close(source, sink)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _close(self, *socks: socket.socket) -> None:
        for sock in socks:
            with self._lock:
                self._sockets.discard(sock)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def stop(self) -> None:
        self._stop.set()
        self.listener.close()
        with self._lock:
            open_sockets = list(self._sockets)
        self._close(*open_sockets)
        self._thread.join(timeout=5.0)


def _headers(head: bytes) -> dict[str, str]:
    """The header fields of an HTTP request head, names lower-cased (the last of a repeated one wins)."""
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, sep, v in (line.partition(":") for line in lines) if sep}


def _is_subprotocol_line(line: bytes) -> bool:
    name, sep, _ = line.partition(b":")
    return bool(sep) and name.strip().lower() == b"sec-websocket-protocol"


def _offered_subprotocols(head: bytes) -> list[str]:
    """The subprotocols a WebSocket upgrade request offers, over all its ``Sec-WebSocket-Protocol`` fields."""
    lines = head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    values = (line.partition(b":")[2].decode("latin-1") for line in lines if _is_subprotocol_line(line))
    return [name.strip() for value in values for name in value.split(",")]


def _with_subprotocol(head: bytes, name: str) -> bytes:
    """``head`` (with what followed it) whose ``Sec-WebSocket-Protocol`` fields are one field naming ``name``;
    a head without such a field (a refusal) is returned as it is."""
    top, sep, rest = head.partition(b"\r\n\r\n")
    lines, replaced = [], False
    for line in top.split(b"\r\n"):
        if not _is_subprotocol_line(line):
            lines.append(line)
        elif not replaced:
            lines.append(b"Sec-WebSocket-Protocol: " + name.encode())
            replaced = True
    return b"\r\n".join(lines) + sep + rest


class FoxgloveStream:
    """A Foxglove WebSocket server fed from a :class:`LiveNode` by one publishing thread, behind an
    :class:`OriginGate` on ``host:port`` that admits ``allowed_origins`` (default :data:`FOXGLOVE_ORIGINS`)."""

    def __init__(
        self,
        live: LiveNode,
        host: str = "127.0.0.1",
        port: int = 8765,
        max_rate: float = 30.0,
        allowed_origins: Iterable[str] = FOXGLOVE_ORIGINS,
    ):
        self.live = live
        self.max_rate = max_rate
        self.context = foxglove.Context()
        self.envs = [_EnvChannels(env, self.context) for env in live.envs.values()]
        self.tf = FrameTransformsChannel("/tf", context=self.context)
        self._subscriptions: set[tuple[int, int]] = set()
        self._lock = threading.Lock()
        self.server = foxglove.start_server(
            name="carla-rl",
            host="127.0.0.1",
            port=0,
            context=self.context,
            capabilities=[Capability.Time],
            server_listener=self,
        )
        try:
            self.gate = OriginGate(host, port, self.server.port, allowed_origins)
        except OSError:
            self.server.stop()
            raise
        self.port = self.gate.port
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="foxglove", daemon=True)
        self._thread.start()

    # --- ServerListener: traffic and camera subscriptions only while a client watches ---------------------
    def on_subscribe(self, client: Client, channel: ChannelView) -> None:
        with self._lock:
            first = not self._subscriptions
            self._subscriptions.add((client.id, channel.id))
        if first:
            self.live.watch(+1)

    def on_unsubscribe(self, client: Client, channel: ChannelView) -> None:
        with self._lock:
            had = bool(self._subscriptions)
            self._subscriptions.discard((client.id, channel.id))
            last = had and not self._subscriptions
        if last:
            self.live.watch(-1)

    # --- the publishing thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        min_interval = 1.0 / self.max_rate if self.max_rate > 0 else 0.0
        while not self._stop.is_set():
            started = time.monotonic()
            if not self._subscriptions:  # nobody watches: no decoding, no encoding
                self._stop.wait(0.1)
                continue
            for channels in self.envs:
                self._publish(channels)
            with self.live.changed:  # wait for news, then keep to max_rate
                if not self._stop.is_set() and all(c.env.step_seq == c.sent_step for c in self.envs):
                    self.live.changed.wait(timeout=1.0)
            rest = min_interval - (time.monotonic() - started)
            if rest > 0:
                self._stop.wait(rest)

    def _publish(self, ch: _EnvChannels) -> None:
        parts = ch.env.read()
        now = time.monotonic()
        if parts["map"] is not None and ch.map.has_sinks():
            if ch.sent_map != parts["map_version"]:
                ch.map_scene, ch.sent_map = map_scene(parts["map"], ch.map_frame), parts["map_version"]
                ch.map_sent_at = 0.0
            if now - ch.map_sent_at > MAP_RESEND_S:
                ch.map.log(ch.map_scene)
                ch.map_sent_at = now
        if parts["episode_version"] != ch.sent_episodes:
            new = parts["episode_version"] - ch.sent_episodes
            for item in parts["episodes"][-new:] if ch.sent_episodes else parts["episodes"]:
                ch.episodes.log(item)
            ch.sent_episodes = parts["episode_version"]
        if parts["step_seq"] == ch.sent_step:
            return
        state = ch.env.snapshot()
        if state is None:
            return
        ch.sent_step = state["seq"]
        stamp = _stamp(state["stamp"])
        if self.tf.has_sinks():
            ego = state["ego"]
            qx, qy, qz, qw = bridge.yaw_to_quaternion(ego["yaw"])
            self.tf.log(
                FrameTransforms(
                    transforms=[
                        FrameTransform(
                            timestamp=stamp,
                            parent_frame_id=ch.map_frame,
                            child_frame_id=ch.ego_frame,
                            translation=Vector3(x=ego["x"], y=ego["y"], z=0.0),
                            rotation=Quaternion(x=qx, y=qy, z=qz, w=qw),
                        )
                    ]
                )
            )
        if ch.scene.has_sinks():
            ch.scene.log(vehicle_scene(state, parts["route"], ch.map_frame))
        if ch.reward.has_sinks():
            ch.reward.log(reward_message(state))
        if ch.camera.has_sinks() and state["camera_seq"] != ch.sent_camera:
            seq, jpeg = ch.env.camera_jpeg()
            if jpeg is not None:
                ch.camera.log(
                    CompressedImage(timestamp=stamp, frame_id=f"{ch.env.label}/camera", data=jpeg, format="jpeg")
                )
                ch.sent_camera = seq

    def stop(self) -> None:
        self._stop.set()
        with self.live.changed:
            self.live.changed.notify_all()
        self._thread.join(timeout=5.0)
        self.gate.stop()
        self.server.stop()


def foxglove_layout(label: str = "env_0") -> dict[str, Any]:
    """The Foxglove app layout for one env (``config/foxglove_layout.json`` is this for env_0).

    Built with foxglove-sdk's layout types so the file follows the app's current format: the 3D scene (map,
    vehicles, route, goal) following the ego, the camera, the reward and its terms, the action, and the
    episode returns against the episode number. ``python -m carla_rl_viz.foxglove_stream`` prints it.
    """
    import json

    import foxglove.layouts as fl

    from carla_rl_env.settings import load_env_config

    topics = topics_for(label)
    _, ego_frame = frames_for(label)
    terms = list(load_env_config([])["env"]["reward"]["terms"])  # the default config's reward terms
    scene = fl.ThreeDeePanel(
        title=f"{label}: map, vehicles, route",
        config=fl.ThreeDeeConfig(
            follow_tf=ego_frame,
            follow_mode="follow-position",
            topics={
                topics["map"]: fl.BaseRendererSceneUpdateTopicSettings(visible=True),
                topics["scene"]: fl.BaseRendererSceneUpdateTopicSettings(visible=True),
            },
        ),
    )
    camera = fl.ImagePanel(
        title=f"{label}: camera", config=fl.ImageConfig(image_mode=fl.ImageModeConfig(image_topic=topics["camera"]))
    )
    reward = fl.PlotPanel(
        title=f"{label}: reward and its terms",
        config=fl.PlotConfig(
            paths=[fl.PlotSeries(value=f"{topics['reward']}.reward", timestamp_method="receiveTime")]
            + [fl.PlotSeries(value=f"{topics['reward']}.terms.{t}", timestamp_method="receiveTime") for t in terms],
            show_legend=True,
        ),
    )
    action = fl.PlotPanel(
        title=f"{label}: action and speed",
        config=fl.PlotConfig(
            paths=[
                fl.PlotSeries(value=f"{topics['reward']}.{k}", timestamp_method="receiveTime")
                for k in ("throttle", "steer", "brake", "speed")
            ],
            show_legend=True,
        ),
    )
    returns = fl.PlotPanel(
        title=f"{label}: episode returns",
        config=fl.PlotConfig(
            paths=[fl.PlotSeries(value=f"{topics['episodes']}.return", x_value_path=f"{topics['episodes']}.episode")],
            x_axis_val="custom",
            show_legend=True,
        ),
    )
    column = fl.SplitContainer(
        direction="column", items=[fl.SplitItem(content=p) for p in (camera, reward, action, returns)]
    )
    layout = fl.Layout(
        content=fl.SplitContainer(
            direction="row",
            items=[fl.SplitItem(proportion=3, content=scene), fl.SplitItem(proportion=2, content=column)],
        )
    )
    return json.loads(layout.to_json())


if __name__ == "__main__":
    import json
    import sys

    json.dump(foxglove_layout(), sys.stdout, indent=2)
    sys.stdout.write("\n")

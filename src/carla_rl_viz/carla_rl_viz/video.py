"""Episode videos: one MP4 per episode, the ego camera and a colour BEV side by side with overlay text.

Two sources, one picture (:func:`carla_rl_viz.views.compose_frame`):

* :class:`InProcessVideo` wraps an in-process env (``carla-rl evaluate --inprocess --video``): after each
  step it renders the ego's camera of the objects file and the BEV straight from the simulator, before a
  VecEnv's automatic reset moves the car.
* :class:`RosVideoRecorder` listens, on the evaluating process's own node, to each env namespace's
  ``carla_rl/step`` (pose, speed, applied control, reward terms), the camera's ``image`` topic, the
  bridge's ``/carla/world_info``, ``/carla/markers`` and the route on ``waypoints``: it needs nothing from
  the simulator but the bridge's topics, so it works against a real CARLA bridge too.

Files are H.264 (x264, ``yuv420p``) in an MP4 whose index comes first (``movflags=faststart``), written with
PyAV, whose wheels carry FFmpeg and libx264: what every browser plays, and starts playing before it has the
whole file. Where PyAV's FFmpeg has no libx264 they are MPEG-4 Part 2 (``mp4v``) instead, with one info line
(VLC, ffmpeg, mpv and Firefox play those; Chrome and Safari do not). Episodes are numbered from 0 per env
(``env_0_episode_0.mp4``), as ``results.md`` numbers them.
"""

from __future__ import annotations

import bisect
import os
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import gymnasium
import numpy as np

from carla_rl_common import bridge, codec
from carla_rl_common.dds import use_default_profile
from carla_rl_viz.views import BevView, compose_frame, overlay_lines, to_bgr

H264, MPEG4 = "libx264", "mpeg4"  # FFmpeg's encoders: H.264 (browsers play it) and the MPEG-4 Part 2 fallback
X264_OPTIONS = {"preset": "veryfast", "crf": "23"}  # fast enough beside the loop on 2 cores; crisp overlay text
DEFAULT_FPS = 20.0  # the bridge's fixed_delta_seconds 0.05: real time
_codec: str | None = None


def video_codec() -> str:
    """The encoder of new videos: libx264 where PyAV's FFmpeg has it (its wheels do), else MPEG-4 Part 2,
    said once per process."""
    global _codec
    if _codec is None:
        _codec = H264 if H264 in av.codecs_available else MPEG4
        if _codec == MPEG4:
            print(
                "videos: this PyAV has no libx264; writing MPEG-4 Part 2 (mp4v), which Chrome and Safari do not play",
                file=sys.stderr,
            )
    return _codec


class Mp4Writer:
    """One MP4 file, opened at the first frame (its size fixes the video's; an odd width or height gets a
    black last column or row, as yuv420p needs even sizes). ``codec``: an FFmpeg encoder, default
    :func:`video_codec`."""

    def __init__(self, path: str | Path, fps: float = DEFAULT_FPS, codec: str | None = None):
        self.path, self.fps = Path(path), float(fps)
        self.codec = codec or video_codec()
        self.frames = 0
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None

    def write(self, frame_bgr: np.ndarray) -> None:
        h, w = frame_bgr.shape[:2]
        if self._container is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # faststart: the index (moov) moves before the frames on close, so a browser plays while it loads
            self._container = av.open(str(self.path), "w", format="mp4", options={"movflags": "+faststart"})
            self._stream = self._container.add_stream(self.codec, rate=Fraction(self.fps).limit_denominator(1001))
            self._stream.width, self._stream.height, self._stream.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
            if self.codec == H264:
                self._stream.options = dict(X264_OPTIONS)
        width, height = self._stream.width, self._stream.height
        if (w, h) != (width, height):
            padded = np.zeros((height, width, 3), np.uint8)
            padded[: min(h, height), : min(w, width)] = frame_bgr[:height, :width]
            frame_bgr = padded
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_bgr), format="bgr24")
        self._container.mux(self._stream.encode(frame))
        self.frames += 1

    def close(self) -> None:
        if self._container is not None:
            self._container.mux(self._stream.encode(None))  # the frames the encoder still holds
            self._container.close()
            self._container = self._stream = None


class EpisodeVideos:
    """The episode files of an evaluation: ``<out_dir>/<env>_episode_<k>.mp4``, one writer open per env.

    ``episode`` in :meth:`frame` is the env's own counter (1 for its first episode, as InProcessEnv and the env
    node count); files are numbered from 0 (``k = episode - 1``), as ``results.md`` numbers episodes. A file
    exists only once a frame was written, so the reset that a VecEnv does after the last episode leaves no
    empty video behind.
    """

    def __init__(self, out_dir: str | Path, fps: float = DEFAULT_FPS):
        self.out_dir, self.fps = Path(out_dir), fps
        self.open: dict[str, tuple[int, Mp4Writer]] = {}
        self.written: list[Path] = []

    def frame(self, env: str, episode: int, frame_bgr: np.ndarray) -> None:
        current = self.open.get(env)
        if current is not None and current[0] != episode:  # a new episode began without an end seen
            self.end(env)
            current = None
        if current is None:
            current = (episode, Mp4Writer(self.out_dir / f"{env}_episode_{episode - 1}.mp4", self.fps))
            self.open[env] = current
        current[1].write(frame_bgr)

    def end(self, env: str) -> None:
        current = self.open.pop(env, None)
        if current is not None and current[1].frames:
            current[1].close()
            self.written.append(current[1].path)

    def close(self) -> list[Path]:
        for env in list(self.open):
            self.end(env)
        return self.written


def read_frames(path: str | Path) -> tuple[int, tuple[int, int]]:
    """(frames decoded, (width, height)) of a video file: what a player sees, for checks and tests."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return frames, (stream.codec_context.width, stream.codec_context.height)


def first_camera(sensors) -> str | None:
    """The id of the first RGB camera among ``carla_rl_common.objects.SensorSpec`` entries."""
    return next((s.id for s in sensors if s.type == "sensor.camera.rgb"), None)


class InProcessVideo(gymnasium.Wrapper):
    """Writes the episodes of a :class:`carla_rl_env.inprocess.InProcessEnv` to ``videos`` under ``name``."""

    def __init__(self, env: gymnasium.Env, videos: EpisodeVideos, name: str):
        super().__init__(env)
        self.videos, self.name = videos, name
        inner = env.unwrapped
        self.sim, self.role = inner.sim, inner.role
        self.camera = first_camera(self.sim.egos[self.role].sensors)
        self.bev = BevView(self.sim.network.lanes)
        self.step_index = 0
        self._first: np.ndarray | None = None

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self.step_index = 0
        self._first = self._frame(0.0, {}, "")  # written with the episode's first step (see EpisodeVideos)
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.step_index += 1
        episode = self.env.unwrapped.episode
        if self._first is not None:
            self.videos.frame(self.name, episode, self._first)
            self._first = None
        reason = info.get("termination_reason", "") if terminated or truncated else ""
        self.videos.frame(self.name, episode, self._frame(float(reward), info.get("reward_terms", {}), reason))
        if terminated or truncated:
            self.videos.end(self.name)
        return obs, reward, terminated, truncated, info

    def _frame(self, reward: float, terms: dict, reason: str) -> np.ndarray:
        ego = self.sim.egos[self.role]
        s, c = ego.state, ego.applied_control
        camera = None
        if self.camera is not None:
            image, encoding, _ = self.sim.render(self.role, self.camera)
            camera = to_bgr(image, encoding)
        route = self.env.unwrapped.task.route
        bev = self.bev.render(
            (s.x, s.y, s.yaw),
            ego.extent,
            self.sim.traffic.boxes(),
            route.xy[route.index :] if route is not None else None,
        )
        lines = overlay_lines(
            self.env.unwrapped.episode - 1,  # from 0, as the file name and results.md
            self.step_index,
            float(ego.speed),
            (c.throttle, c.steer, c.brake),
            reward,
            terms,
            reason,
        )
        return compose_frame(camera, bev, lines)


class _EnvStream:
    """What one env namespace's recorder keeps between messages."""

    def __init__(self) -> None:
        self.bev: BevView | None = None
        self.map_name = ""
        self.route: np.ndarray | None = None
        self.ego_id = -1
        self.ego_size: tuple[float, float] = (4.79, 2.16)
        self.boxes = np.zeros((0, 6))
        self.stamps: list[int] = []  # camera image stamps, ascending
        self.images: dict[int, np.ndarray] = {}
        self.pending: list[Any] = []  # steps whose camera image has not arrived yet


class RosVideoRecorder:
    """Episode videos of env namespaces over ROS, on ``node`` (which the caller spins, e.g. RosVecEnv's).

    Each ``carla_rl/step`` becomes a frame; it waits for the camera image of the same stamp (the simulator
    publishes it before the env node's step, but DDS does not order different topics), and takes the
    newest earlier image when that one never comes (:meth:`finish`).
    """

    KEEP_IMAGES = 64

    def __init__(
        self,
        node,
        namespaces: list[str],
        videos: EpisodeVideos,
        camera_id: str | None,
        role_name: str = bridge.DEFAULT_ROLE_NAME,
    ):
        from carla_msgs.msg import CarlaEgoVehicleInfo, CarlaWorldInfo
        from carla_rl_msgs.msg import Step
        from nav_msgs.msg import Path as PathMsg
        from sensor_msgs.msg import Image
        from visualization_msgs.msg import MarkerArray

        self.node, self.videos, self.camera_id = node, videos, camera_id
        self.streams: dict[str, _EnvStream] = {}
        t, qos, latched = bridge.BridgeTopics(role_name), bridge.qos_default(100), bridge.qos_latched()
        for ns in namespaces:
            key = bridge.env_id(ns)
            self.streams[key] = st = _EnvStream()

            def name(topic: str, ns: str = ns) -> str:
                return bridge.namespaced(ns, topic)

            node.create_subscription(CarlaWorldInfo, name(t.world_info), lambda m, s=st: self._on_world(s, m), latched)
            node.create_subscription(PathMsg, name(t.waypoints), lambda m, s=st: self._on_route(s, m), latched)
            node.create_subscription(
                CarlaEgoVehicleInfo, name(t.vehicle_info), lambda m, s=st: setattr(s, "ego_id", int(m.id)), latched
            )
            node.create_subscription(MarkerArray, name(t.markers), lambda m, s=st: self._on_markers(s, m), qos)
            if camera_id:
                node.create_subscription(
                    Image, name(t.image(camera_id)), lambda m, s=st, k=key: self._on_image(k, s, m), qos
                )
            node.create_subscription(Step, name(t.step), lambda m, s=st, k=key: self._on_step(k, s, m), qos)

    # --- inputs ------------------------------------------------------------------------------------------
    def _on_world(self, st: _EnvStream, msg) -> None:
        if msg.map_name == st.map_name:
            return
        from carla_rl_common.opendrive import RoadNetwork

        try:
            st.bev = BevView(RoadNetwork.from_string(msg.opendrive, source=msg.map_name).lanes)
            st.map_name = msg.map_name
        except ValueError as exc:
            self.node.get_logger().warning(f"video: no BEV, the map of world_info does not parse: {exc}")

    @staticmethod
    def _on_route(st: _EnvStream, msg) -> None:
        st.route = np.array([(p.pose.position.x, p.pose.position.y) for p in msg.poses], float).reshape(-1, 2)

    @staticmethod
    def _on_markers(st: _EnvStream, msg) -> None:
        read = codec.marker_boxes(msg, st.ego_id)
        if read.ego is not None:
            st.ego_size = read.ego[3:5]
        st.boxes = read.boxes

    def _on_image(self, key: str, st: _EnvStream, msg) -> None:
        try:
            image = to_bgr(bridge.image_to_numpy(msg), msg.encoding)
        except ValueError:
            return
        stamp = bridge.stamp_to_ns(msg.header.stamp)
        bisect.insort(st.stamps, stamp)
        st.images[stamp] = image
        for old in st.stamps[: -self.KEEP_IMAGES]:
            st.images.pop(old, None)
        del st.stamps[: -self.KEEP_IMAGES]
        ready = [s for s in st.pending if bridge.stamp_to_ns(s.header.stamp) <= stamp]
        st.pending = [s for s in st.pending if bridge.stamp_to_ns(s.header.stamp) > stamp]
        for step in ready:
            self._write(key, st, step)

    def _on_step(self, key: str, st: _EnvStream, msg) -> None:
        if self.camera_id and bridge.stamp_to_ns(msg.header.stamp) not in st.images:
            st.pending.append(msg)
            return
        self._write(key, st, msg)

    # --- output ------------------------------------------------------------------------------------------
    def _camera_at(self, st: _EnvStream, stamp: int) -> np.ndarray | None:
        i = bisect.bisect_right(st.stamps, stamp)
        return st.images[st.stamps[i - 1]] if i else None

    def _write(self, key: str, st: _EnvStream, step) -> None:
        x, y, yaw = bridge.pose_to_xyyaw(step.ego_pose)
        bev = None
        if st.bev is not None:
            route = (
                st.route[np.argmin(np.hypot(*(st.route - (x, y)).T)) :]
                if st.route is not None and len(st.route)
                else None
            )
            bev = st.bev.render((x, y, yaw), st.ego_size, st.boxes, route)
        c = step.control
        lines = overlay_lines(
            step.episode - 1,  # from 0, as the file name and results.md
            step.step,
            step.speed,
            (c.throttle, c.steer, c.brake),
            step.reward,
            dict(zip(step.reward_term_names, step.reward_terms)),
            step.termination_reason if step.terminated or step.truncated else "",
        )
        camera = self._camera_at(st, bridge.stamp_to_ns(step.header.stamp)) if self.camera_id else None
        self.videos.frame(key, int(step.episode), compose_frame(camera, bev, lines))
        if step.terminated or step.truncated:
            self.videos.end(key)

    def finish(self, executor, timeout: float = 5.0) -> list[Path]:
        """Let in-flight messages arrive (an episode's last step), write what waits, close every file."""
        import time

        deadline = time.monotonic() + timeout
        while self.videos.open and time.monotonic() < deadline:  # an episode whose last step is in flight
            executor.spin_once(timeout_sec=0.05)
        for key, st in self.streams.items():
            for step in st.pending:
                self._write(key, st, step)
            st.pending = []
        return self.videos.close()


class RosEpisodeRecording:
    """``with RosEpisodeRecording(out_dir, namespaces, camera_id):`` records the episodes of env nodes that
    run elsewhere (another process, e.g. ``carla-rl evaluate``'s stack) for the duration of the block.

    It uses its own rclpy context and a thread spinning one node, so it neither needs nor disturbs the
    caller's ROS set-up; on exit it lets the last steps arrive and closes the files (:attr:`written`).
    """

    def __init__(
        self,
        out_dir: str | Path,
        namespaces: list[str],
        camera_id: str | None,
        role_name: str = bridge.DEFAULT_ROLE_NAME,
        fps: float = DEFAULT_FPS,
        environment: dict[str, str] | None = None,
    ):
        self.videos = EpisodeVideos(out_dir, fps)
        self.namespaces, self.camera_id, self.role_name = namespaces, camera_id, role_name
        self.environment = environment or {}  # ROS_DOMAIN_ID, discovery range: those of the stack recorded
        self.written: list[Path] = []

    def __enter__(self) -> RosEpisodeRecording:
        import threading

        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        os.environ.update(self.environment)  # read by rclpy.init
        self._context = Context()
        use_default_profile()
        rclpy.init(context=self._context)
        self._node = rclpy.create_node("carla_rl_video", context=self._context)
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self._node)
        self._recorder = RosVideoRecorder(self._node, self.namespaces, self.videos, self.camera_id, self.role_name)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="carla_rl_video", daemon=True)
        self._thread.start()
        return self

    def _spin(self) -> None:
        while not self._stop.is_set() and self._context.ok():
            self._executor.spin_once(timeout_sec=0.05)
        self.written = self._recorder.finish(self._executor, timeout=2.0)  # same thread as the callbacks

    def __exit__(self, *exc: Any) -> None:
        import rclpy

        self._stop.set()
        self._thread.join(timeout=30)
        self._node.destroy_node()
        rclpy.try_shutdown(context=self._context)


class EvaluationVideos:
    """The videos of ``carla-rl evaluate --video``: one MP4 per episode in ``out_dir`` (beside the results).

    In-process envs are wrapped (:func:`with_video`); over ROS the env namespaces are recorded while the
    evaluation runs (:func:`recording`). The camera is the ego's first RGB camera of the env's objects file.
    """

    def __init__(self, out_dir: str | Path, env_config: dict, num_envs: int):
        from carla_rl_common.objects import load_objects
        from carla_rl_common.paths import default_objects_file

        self.out_dir, self.num_envs = Path(out_dir), int(num_envs)
        self.role = env_config.get("role_name", bridge.DEFAULT_ROLE_NAME)
        objects = load_objects(env_config.get("objects_file") or default_objects_file())
        self.camera_id = first_camera(objects.vehicle(self.role).sensors)
        self.videos = EpisodeVideos(self.out_dir)
        self._ros: RosEpisodeRecording | None = None

    def close(self) -> list[Path]:
        written = self.videos.close()
        return sorted(set(written + (self._ros.written if self._ros else [])))


def with_video(videos: EvaluationVideos | None, env: gymnasium.Env, index: int) -> gymnasium.Env:
    """``env`` recording its episodes as ``env_<index>_episode_<k>.mp4``, k from 0 (unchanged without ``videos``)."""
    return env if videos is None else InProcessVideo(env, videos.videos, bridge.env_namespace(index))


def recording(videos: EvaluationVideos | None, environment: dict[str, str] | None = None):
    """A context that records the env nodes' episodes over ROS (does nothing without ``videos``);
    ``environment``: the ROS variables of the stack (``carla_rl_common.dds.ros_environment``)."""
    import contextlib

    if videos is None:
        return contextlib.nullcontext()
    namespaces = [""] if videos.num_envs == 1 else [bridge.env_namespace(i) for i in range(videos.num_envs)]
    videos._ros = RosEpisodeRecording(
        videos.out_dir, namespaces, videos.camera_id, videos.role, environment=environment
    )
    return videos._ros

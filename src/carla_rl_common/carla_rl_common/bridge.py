"""The CARLA ROS 2 bridge contract: topic names, frame ids, QoS, coordinates and message conversions.

This is the one place where the bridge's interface is spelled out (see ``shared/notes/carla-bridge-contract.md``).
The embedded simulator publishes exactly these topics and the env node subscribes to them, so the env node
cannot tell our simulator from a real CARLA server + carla_ros_bridge.

Topic names are *relative* (``carla/ego_vehicle/odometry``): a node in the root namespace resolves them to the
bridge's absolute names (``/carla/ego_vehicle/odometry``), and a node in namespace ``/env_3`` to
``/env_3/carla/ego_vehicle/odometry`` so that several simulator instances can share one ROS graph.
"""

from __future__ import annotations

import array as pyarray
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

try:  # the geometry/QoS helpers need ROS; the pure helpers below do not
    from builtin_interfaces.msg import Time
    from geometry_msgs.msg import Pose, Quaternion
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    HAVE_ROS = True
except ImportError:  # pragma: no cover - exercised only without the ROS wheels
    HAVE_ROS = False

MAP_FRAME = "map"
DEFAULT_ROLE_NAME = "ego_vehicle"
# Role names the bridge treats as ego vehicles (carla_ros_bridge.launch.py default).
EGO_ROLE_NAMES = ("hero", "ego_vehicle", *(f"hero{i}" for i in range(10)))
# Bridge defaults in synchronous mode.
DEFAULT_FIXED_DELTA_SECONDS = 0.05
CONTROL_WAIT_TIMEOUT_S = 1.0  # synchronous_mode_wait_for_vehicle_control_command waits this long per tick
# The embedded simulator's throttled copies of per-tick topics for live viewers (no bridge topic: a real
# bridge has none, and a viewer falls back to the contract topics then).
PREVIEW_PREFIX = "carla_rl/preview"

# CarlaControl commands and CarlaLaneInvasionEvent markings (mirrors carla_msgs constants).
CONTROL_PLAY, CONTROL_PAUSE, CONTROL_STEP_ONCE = 0, 1, 2
LANE_MARKING_OTHER, LANE_MARKING_BROKEN, LANE_MARKING_SOLID = 0, 1, 2
# The codes a real bridge puts in crossed_lane_markings: carla.LaneMarkingType values (CARLA's LibCarla
# road/element/LaneMarking.h; lane_invasion_sensor.py copies them as is), a superset of the three above.
LANE_MARKING_SOLID_SOLID, LANE_MARKING_SOLID_BROKEN, LANE_MARKING_BROKEN_SOLID = 3, 4, 5
LANE_MARKING_BROKEN_BROKEN, LANE_MARKING_BOTTS_DOTS, LANE_MARKING_GRASS = 6, 7, 8
LANE_MARKING_CURB, LANE_MARKING_NONE = 9, 10
LANE_MARKING_TYPES = {
    "other": LANE_MARKING_OTHER,
    "broken": LANE_MARKING_BROKEN,
    "solid": LANE_MARKING_SOLID,
    "solid_solid": LANE_MARKING_SOLID_SOLID,
    "solid_broken": LANE_MARKING_SOLID_BROKEN,
    "broken_solid": LANE_MARKING_BROKEN_SOLID,
    "broken_broken": LANE_MARKING_BROKEN_BROKEN,
    "botts_dots": LANE_MARKING_BOTTS_DOTS,
    "grass": LANE_MARKING_GRASS,
    "curb": LANE_MARKING_CURB,
    "none": LANE_MARKING_NONE,
}


@dataclass(frozen=True)
class BridgeTopics:
    """Every topic and service name of the bridge for one ego vehicle (relative names, see module doc)."""

    role_name: str = DEFAULT_ROLE_NAME

    # world-level topics and services
    clock: str = "clock"
    status: str = "carla/status"
    world_info: str = "carla/world_info"
    map: str = "carla/map"
    control: str = "carla/control"
    actor_list: str = "carla/actor_list"
    objects: str = "carla/objects"
    markers: str = "carla/markers"
    traffic_lights_status: str = "carla/traffic_lights/status"
    traffic_lights_info: str = "carla/traffic_lights/info"
    weather_control: str = "carla/weather_control"
    spawn_object: str = "carla/spawn_object"
    destroy_object: str = "carla/destroy_object"
    get_blueprints: str = "carla/get_blueprints"

    def ego(self, name: str) -> str:
        return f"carla/{self.role_name}/{name}"

    @property
    def vehicle_status(self) -> str:
        return self.ego("vehicle_status")

    @property
    def vehicle_info(self) -> str:
        return self.ego("vehicle_info")

    @property
    def odometry(self) -> str:
        return self.ego("odometry")

    @property
    def speedometer(self) -> str:
        return self.ego("speedometer")

    @property
    def vehicle_control_cmd(self) -> str:
        return self.ego("vehicle_control_cmd")

    @property
    def vehicle_control_cmd_manual(self) -> str:
        return self.ego("vehicle_control_cmd_manual")

    @property
    def vehicle_control_manual_override(self) -> str:
        return self.ego("vehicle_control_manual_override")

    @property
    def enable_autopilot(self) -> str:
        return self.ego("enable_autopilot")

    @property
    def set_transform(self) -> str:
        return self.ego("control/set_transform")

    @property
    def set_target_velocity(self) -> str:
        return self.ego("control/set_target_velocity")

    @property
    def collision(self) -> str:
        return self.ego("collision")

    @property
    def lane_invasion(self) -> str:
        return self.ego("lane_invasion")

    @property
    def waypoints(self) -> str:
        return self.ego("waypoints")

    @property
    def goal(self) -> str:
        return self.ego("goal")

    def sensor(self, sensor_id: str) -> str:
        """Topic of a sensor without sub-topics (imu, gnss, lidar, ...)."""
        return self.ego(sensor_id)

    def image(self, sensor_id: str) -> str:
        return self.ego(f"{sensor_id}/image")

    def camera_info(self, sensor_id: str) -> str:
        return self.ego(f"{sensor_id}/camera_info")

    # our own topics, beside the bridge's
    @property
    def step(self) -> str:
        return "carla_rl/step"

    @property
    def episode(self) -> str:
        return "carla_rl/episode"

    @property
    def reset(self) -> str:
        return "carla_rl/reset"

    @property
    def spec(self) -> str:
        return "carla_rl/get_spec"

    # the embedded simulator's previews for viewers: at most preview_hz a second (see PREVIEW_PREFIX)
    @property
    def preview_markers(self) -> str:
        return f"{PREVIEW_PREFIX}/markers"

    def preview_image(self, sensor_id: str) -> str:
        return f"{PREVIEW_PREFIX}/{self.role_name}/{sensor_id}/image"


def ego_frame(role_name: str = DEFAULT_ROLE_NAME) -> str:
    """child_frame_id of the ego odometry (the bridge uses the role name)."""
    return role_name


def sensor_frame(role_name: str, sensor_id: str) -> str:
    return f"{role_name}/{sensor_id}"


def env_namespace(index: int) -> str:
    """Namespace of the i-th environment when several run side by side."""
    return f"env_{index}"


def env_id(namespace: str) -> str:
    """The env id of a node namespace: the namespace without slashes, ``env_0`` for the root namespace (one env)."""
    return namespace.strip("/") or env_namespace(0)


def namespaced(namespace: str, topic: str) -> str:
    """The absolute name of ``topic`` for a node in ``namespace``: ``/ns/topic``, or ``/topic`` in the root
    namespace ("" or "/"); an absolute ``topic`` stays as it is. What a node in another namespace (an agent,
    a viewer, a recorder) subscribes to for one env's topics."""
    if topic.startswith("/"):
        return topic
    ns = namespace.strip("/")
    return f"/{ns}/{topic}" if ns else f"/{topic}"


def bridge_names(
    role_name: str, sensors: Iterable[tuple[str, str]] = (), world_sensors: Iterable[tuple[str, str]] = ()
) -> tuple[str, ...]:
    """Every topic and service name carla_ros_bridge uses for the ego vehicle ``role_name`` with ``sensors``
    and the objects file's top-level ``world_sensors`` ((type, id) pairs), as the bridge spells them: absolute
    (``/carla/...``, ``/tf``), so a node namespace does not move them, except :attr:`BridgeTopics.clock`.

    What several bridges on one ROS graph must each remap into their env's namespace (carla_rl_bringup.stacks).
    Read from ros-bridge master e9063d9: carla_ros_bridge/src/carla_ros_bridge/bridge.py (clock, control,
    services, weather), world_info.py, carla_status_publisher.py, debug_helper.py, ego_vehicle.py, camera.py,
    actor_control.py, marker_sensor.py, traffic_lights_sensor.py, pseudo_actor.py (a sensor's topic is
    ``/carla/<parent prefix>/<id>``) and sensor.py / tf_sensor.py (a tf2 broadcaster on ``/tf``).
    """
    t = BridgeTopics(role_name)
    names = {t.clock, "/carla/debug_marker"}
    names |= {f"/{n}" for n in (t.status, t.world_info, t.control, t.weather_control)}
    names |= {f"/{n}" for n in (t.spawn_object, t.destroy_object, t.get_blueprints)}
    names |= {f"/{t.ego(n)}" for n in ("vehicle_status", "vehicle_info", "vehicle_control_cmd")}
    names |= {f"/{t.ego(n)}" for n in ("vehicle_control_cmd_manual", "vehicle_control_manual_override")}
    names.add(f"/{t.enable_autopilot}")
    for prefix, pairs in ((f"carla/{role_name}", sensors), ("carla", world_sensors)):
        for kind, ident in pairs:
            topic = f"/{prefix}/{ident}"
            if kind.startswith("sensor.camera."):
                names |= {f"{topic}/image", f"{topic}/camera_info"}
            elif kind == "actor.pseudo.control":
                names |= {f"{topic}/set_transform", f"{topic}/set_target_velocity"}
            elif kind == "sensor.pseudo.markers":
                names |= {topic, f"{topic}/static"}
            elif kind == "sensor.pseudo.traffic_lights":
                names |= {f"{topic}/info", f"{topic}/status"}
            elif kind != "sensor.pseudo.tf":
                names.add(topic)
            if kind == "sensor.pseudo.tf" or not kind.startswith(("sensor.pseudo.", "actor.pseudo.")):
                names.add("/tf")  # every CARLA sensor and the tf pseudo sensor own a tf2 broadcaster
    return tuple(sorted(names))


def namespace_remaps(namespace: str) -> list[str]:
    """ROS arguments that make a node of one env use that env's own sim clock.

    rclpy's time source subscribes to the absolute ``/clock``; each env's simulator publishes ``<ns>/clock``.
    """
    if not namespace:
        return []
    return ["--ros-args", "-r", f"/clock:=/{namespace.strip('/')}/clock"]


# --- QoS (the bridge: depth 10, reliable, volatile; world info and map latched) -------------------------
def qos_default(depth: int = 10) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


#: history of our own per-tick publishers (the embedded simulator's, the env node's Step and EpisodeSummary): the
#: bridge keeps 10, 100 lets a reader that stalls ~2 s (a recorder on a loaded machine) lose nothing, and it
#: costs memory only while one lags (volatile writers free what every reader acknowledged)
PUBLISH_DEPTH = 100


def qos_publisher() -> QoSProfile:
    """:func:`qos_default` with :data:`PUBLISH_DEPTH`: what our per-tick publishers offer."""
    return qos_default(PUBLISH_DEPTH)


def qos_latched() -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=1,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )


# --- coordinates ---------------------------------------------------------------------------------------
def carla_to_ros_position(x: float, y: float, z: float) -> tuple[float, float, float]:
    """CARLA is left-handed (y right); ROS and OpenDRIVE are right-handed: ros.y = -carla.y."""
    return x, -y, z


def carla_to_ros_rotation(roll_deg: float, pitch_deg: float, yaw_deg: float) -> tuple[float, float, float]:
    """CARLA (degrees, left-handed) to ROS roll, pitch, yaw in radians, as the bridge's transforms.py."""
    return math.radians(roll_deg), -math.radians(pitch_deg), -math.radians(yaw_deg)


def yaw_to_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation about z."""
    return 0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0)


def rpy_to_quaternion(roll: float, pitch: float, yaw: float) -> tuple[float, float, float, float]:
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return (
        sr * cp * cy - cr * sp * sy,
        cr * sp * cy + sr * cp * sy,
        cr * cp * sy - sr * sp * cy,
        cr * cp * cy + sr * sp * sy,
    )


def quaternion_to_yaw(x: float, y: float, z: float, w: float) -> float:
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def quaternion_to_rpy(x: float, y: float, z: float, w: float) -> tuple[float, float, float]:
    roll = math.atan2(2.0 * (w * x + y * z), 1.0 - 2.0 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2.0 * (w * y - z * x))))
    return roll, pitch, quaternion_to_yaw(x, y, z, w)


# --- message conversions ---------------------------------------------------------------------------------
def sim_time_msg(seconds: float) -> Time:
    sec = int(math.floor(seconds))
    nanosec = int(round((seconds - sec) * 1e9))
    if nanosec >= 1_000_000_000:
        sec, nanosec = sec + 1, nanosec - 1_000_000_000
    return Time(sec=sec, nanosec=nanosec)


def stamp_to_ns(stamp: Any) -> int:
    """A builtin_interfaces/Time as integer nanoseconds: the key frames are matched on."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def pose_msg(x: float, y: float, yaw: float, z: float = 0.0) -> Pose:
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = float(x), float(y), float(z)
    qx, qy, qz, qw = yaw_to_quaternion(yaw)
    pose.orientation = Quaternion(x=qx, y=qy, z=qz, w=qw)
    return pose


def pose_to_6dof(pose: Any) -> tuple[float, float, float, float, float, float]:
    """(x, y, z, roll, pitch, yaw) of a geometry_msgs/Pose."""
    q = pose.orientation
    return (
        float(pose.position.x),
        float(pose.position.y),
        float(pose.position.z),
        *quaternion_to_rpy(q.x, q.y, q.z, q.w),
    )


def pose_to_xyyaw(pose: Any) -> tuple[float, float, float]:
    q = pose.orientation
    return float(pose.position.x), float(pose.position.y), quaternion_to_yaw(q.x, q.y, q.z, q.w)


# Bytes per pixel and channel count for the encodings we publish and accept.
IMAGE_ENCODINGS = {"bgra8": (4, np.uint8), "bgr8": (3, np.uint8), "rgb8": (3, np.uint8), "mono8": (1, np.uint8)}


def image_encoding_channels(encoding: str) -> int:
    """Channels of an 8-bit encoding; ``8UC<n>`` carries n-channel rasters such as the BEV."""
    if encoding in IMAGE_ENCODINGS:
        return IMAGE_ENCODINGS[encoding][0]
    if encoding.startswith("8UC") and encoding[3:].isdigit():
        return int(encoding[3:])
    raise ValueError(
        f"unsupported image encoding {encoding!r} (8-bit encodings only: {', '.join(IMAGE_ENCODINGS)}, 8UC<n>)"
    )


def numpy_to_image(array: np.ndarray, encoding: str, stamp: Any = None, frame_id: str = "") -> Image:
    """(H, W, C) uint8 -> sensor_msgs/Image (the pixels copied as one block)."""
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W[, C]) uint8 array, got {array.shape} {array.dtype}")
    h, w = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    if channels != image_encoding_channels(encoding):
        raise ValueError(f"{channels} channels do not match encoding {encoding!r}")
    msg = Image()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width, msg.encoding, msg.is_bigendian = h, w, encoding, 0
    msg.step = w * channels
    # array.array from a memoryview would go byte by byte in Python (1.7 ms at 84x84, 83 ms at 800x600);
    # frombytes is one memcpy, and rclpy copies an array.array as a block
    data = pyarray.array("B")
    data.frombytes(np.ascontiguousarray(array).reshape(-1).data)
    msg.data = data
    return msg


def image_to_numpy(msg: Any) -> np.ndarray:
    """sensor_msgs/Image -> (H, W, C) uint8 view of the message buffer; ValueError on inconsistent sizes."""
    channels = image_encoding_channels(msg.encoding)
    expected = msg.height * msg.width * channels
    if msg.step != msg.width * channels or len(msg.data) != expected:
        raise ValueError(
            f"image {msg.width}x{msg.height} {msg.encoding} should have {expected} bytes "
            f"(step {msg.width * channels}), got {len(msg.data)} (step {msg.step})"
        )
    data = np.frombuffer(msg.data, dtype=np.uint8) if not isinstance(msg.data, np.ndarray) else msg.data
    return data.reshape(msg.height, msg.width, channels)


@dataclass(frozen=True, slots=True)
class Control:
    """The fields of carla_msgs/CarlaEgoVehicleControl without the header, as plain Python values."""

    throttle: float = 0.0
    steer: float = 0.0
    brake: float = 0.0
    hand_brake: bool = False
    reverse: bool = False
    gear: int = 0
    manual_gear_shift: bool = False


def control_to_msg(control: Control, msg: Any) -> Any:
    """Fill a CarlaEgoVehicleControl message (passed in so this module needs no carla_msgs import)."""
    msg.throttle, msg.steer, msg.brake = float(control.throttle), float(control.steer), float(control.brake)
    msg.hand_brake, msg.reverse = bool(control.hand_brake), bool(control.reverse)
    msg.gear, msg.manual_gear_shift = int(control.gear), bool(control.manual_gear_shift)
    return msg


def msg_to_control(msg: Any) -> Control:
    return Control(
        throttle=float(msg.throttle),
        steer=float(msg.steer),
        brake=float(msg.brake),
        hand_brake=bool(msg.hand_brake),
        reverse=bool(msg.reverse),
        gear=int(msg.gear),
        manual_gear_shift=bool(msg.manual_gear_shift),
    )

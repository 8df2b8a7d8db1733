"""The simulator core: ``Simulator.tick()`` advances the world by one fixed step. No ROS in here.

The node (:mod:`carla_rl_sim.node`) wraps it thinly; unit tests, benchmarks and the in-process env adapter
step it directly. Everything random draws from one ``numpy`` generator seeded at construction, so a
seed and a sequence of controls give the same frames every time.

Semantics follow CARLA: a control stays applied until a new one arrives, and the applied control reports the
gearbox's gear (:attr:`EgoVehicle.applied_control`); ``set_transform`` teleports the actor at the next tick
and keeps its velocity, ``set_target_velocity`` sets one; a collision sensor reports contacts with vehicles
and, since the embedded world has no kerb geometry, leaving the road surface (driving and paved lanes, the
whole paved area of each junction) onto a kerb or off the map as a contact with a static object
(``other_actor_id`` 0); the lane invasion sensor reports the
``carla.LaneMarkingType`` of each marking a front wheel crossed, between lanes and at the road's edge.

Frames: poses, velocities and accelerations are in the ROS ``map`` frame (the OpenDRIVE inertial frame),
except a collision's normal impulse, which is in CARLA's left-handed world frame as CARLA's sensor reports it
(the bridge forwards it unconverted).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from carla_rl_common.bev import BevRenderer, MapRaster
from carla_rl_common.bridge import LANE_MARKING_OTHER, LANE_MARKING_TYPES
from carla_rl_common.geometry import box_corners
from carla_rl_common.objects import ObjectsFile, Pose6, SensorSpec, VehicleSpec, load_objects, parse_objects
from carla_rl_common.opendrive import RoadNetwork
from carla_rl_common.opendrive.types import KERB_LANE_TYPES, PAVED_LANE_TYPES, LaneKey
from carla_rl_common.paths import default_objects_file
from carla_rl_common.towns import town_path
from carla_rl_sim import dynamics
from carla_rl_sim.render import CameraRenderer, camera_info
from carla_rl_sim.traffic import Obstacle, TrafficLightController, TrafficManager

EGO_BLUEPRINT = "vehicle.tesla.model3"  # what the ego's dynamics model (dynamics.VehicleParams) is close to

# Sensors /carla/spawn_object can attach to an ego vehicle at run time (as carla_spawn_objects does).
SPAWNABLE_SENSORS = (
    "sensor.camera.rgb",
    "sensor.pseudo.bev",
    "sensor.other.collision",
    "sensor.other.lane_invasion",
    "sensor.other.imu",
    "sensor.other.gnss",
)


def _sensor_attributes(attributes: dict[str, str]) -> dict[str, str]:
    """Blueprint attributes of a spawn request (strings, as CARLA's); carla_rl_common.objects converts the numbers."""
    return {k: v for k, v in attributes.items() if k not in ("role_name", "type", "id", "spawn_point")}


def _spawn_point(pose: tuple[float, ...] | None) -> dict[str, float]:
    """A spawn request's (x, y, z, roll, pitch, yaw) as an objects-file spawn point (degrees)."""
    x, y, z, roll, pitch, yaw = pose if pose is not None else (0.0,) * 6
    return {"x": x, "y": y, "z": z, "roll": math.degrees(roll), "pitch": math.degrees(pitch), "yaw": math.degrees(yaw)}


class SimulatorError(RuntimeError):
    """A request the simulator cannot honour (unknown actor, bad blueprint, no free spawn point)."""


@dataclass
class Actor:
    id: int
    parent_id: int
    type: str
    rolename: str


@dataclass
class EgoVehicle:
    """One ego vehicle: its state, the command it drives with and what its sensors saw in the last tick.

    ``collisions`` holds ``(other actor id, normal impulse)`` per contact onset, the impulse (N s) in CARLA's
    left-handed world frame (x, -y_map, z) as CARLA's collision sensor reports it; ``lane_invasions`` one
    list of ``carla.LaneMarkingType`` codes per crossing.
    """

    id: int
    role_name: str
    type_id: str
    sensors: list[SensorSpec]
    params: dynamics.VehicleParams
    state: dynamics.VehicleState
    command: dynamics.VehicleControl = field(default_factory=dynamics.VehicleControl)  # applied until the next
    pending_control: dynamics.VehicleControl | None = None
    pending_transform: tuple[float, float, float | None, float] | None = None  # x, y, z (None: keep), yaw
    pending_velocity: tuple[float, float, float | None] | None = None  # vx, vy (map), yaw rate (None: keep)
    collisions: list[tuple[int, tuple[float, float, float]]] = field(default_factory=list)
    lane_invasions: list[list[int]] = field(default_factory=list)
    in_contact: set[int] = field(default_factory=set)
    wheel_lanes: list[LaneKey | None] = field(default_factory=lambda: [None, None])
    wheel_off_road: list[bool] = field(default_factory=lambda: [False, False])

    @property
    def applied_control(self) -> dynamics.VehicleControl:
        """The control as CARLA reports it applied (``actor.get_control()``, vehicle_status.control): the
        command's throttle, steer, brake, hand brake and manual flag, with ``gear`` the gearbox's current gear
        and ``reverse = gear < 0`` (CARLA's ``DefaultMovementComponent::ProcessControl``)."""
        return dataclasses.replace(self.command, gear=self.state.gear, reverse=self.state.gear < 0)

    @property
    def speed(self) -> float:
        """|velocity|, m/s (vehicle_status.velocity: the bridge reports the absolute speed)."""
        return math.hypot(self.state.vx, self.state.vy)

    @property
    def forward_speed(self) -> float:
        """Signed forward speed, m/s, negative when backing up (the speedometer: the velocity on the heading)."""
        return self.state.vx

    @property
    def pose(self) -> tuple[float, float, float, float]:
        """``(x, y, z, yaw)`` in the map frame (m, rad); z is the last teleport's (the world is flat)."""
        s = self.state
        return s.x, s.y, s.z, s.yaw

    @property
    def acceleration_map(self) -> tuple[float, float, float]:
        """``(ax, ay, az)`` in the map frame, m/s^2: the world acceleration vehicle_status.acceleration.linear
        carries (CARLA's ``actor.get_acceleration()`` converted x, -y, z); az is 0 in the flat world."""
        return self.state.ax_map, self.state.ay_map, 0.0

    @property
    def info(self) -> dict[str, Any]:
        return dynamics.vehicle_info(self.params)

    @property
    def extent(self) -> tuple[float, float]:
        return self.params.length, self.params.width


def marking_code(mark_type: str) -> int:
    """OpenDRIVE roadMark type -> ``carla.LaneMarkingType`` code, as CARLA reads it from the town's .xodr.

    CARLA lower-cases the type and matches ``solid solid``, ``botts dots``, ... (LibCarla's
    ``road/element/LaneMarking.cpp``); anything else (``custom``, ``edge``, unknown) is Other. The bridge
    forwards the codes unchanged (``lane_invasion_sensor.py``)."""
    return LANE_MARKING_TYPES.get(mark_type.strip().lower().replace(" ", "_"), LANE_MARKING_OTHER)


class Simulator:
    """A CARLA-like world on one OpenDRIVE road network."""

    def __init__(
        self,
        network: RoadNetwork,
        objects: ObjectsFile,
        fixed_delta_seconds: float = 0.05,
        traffic: int = 0,
        seed: int = 0,
        traffic_lights: bool = False,
    ):
        self.network = network
        self.dt = float(fixed_delta_seconds)
        self.frame = 0
        self.elapsed = 0.0
        self.rng = np.random.default_rng(seed)
        self._ids = itertools.count(1)
        self.map_actor_id = next(self._ids)
        self.egos: dict[str, EgoVehicle] = {}
        self._sensor_ids: dict[int, tuple[str, str]] = {}
        self._renderers: dict[tuple[str, str], Any] = {}
        self._raster: MapRaster | None = None  # the static map raster, shared by every camera and BEV
        lights = TrafficLightController(network.lanes, self.rng) if traffic_lights else None
        self.traffic = TrafficManager(network.lanes, self.rng, lights=lights)
        self.lane_raster = LaneRaster(network)
        self._spawn_points = network.spawn_points()
        for spec in objects.vehicles:
            self._add_ego(spec)
        if traffic:
            self.traffic.spawn(traffic, avoid=self.ego_keepouts())

    # --- actors ------------------------------------------------------------------------------------------
    def _add_ego(self, spec: VehicleSpec) -> EgoVehicle:
        if spec.id in self.egos:
            raise SimulatorError(f"an ego vehicle with role name {spec.id!r} exists already")
        params = dynamics.VehicleParams()
        if spec.spawn_point is not None:
            x, y, z, yaw = spec.spawn_point.x, spec.spawn_point.y, spec.spawn_point.z, spec.spawn_point.yaw
        else:
            (x, y, yaw), z = self._free_spawn_point(), 0.0
        ego = EgoVehicle(
            id=next(self._ids),
            role_name=spec.id,
            type_id=spec.type,
            sensors=list(spec.sensors),
            params=params,
            state=dynamics.VehicleState(x=x, y=y, z=z, yaw=yaw),
        )
        self.egos[spec.id] = ego
        for sensor in ego.sensors:
            self._sensor_ids[next(self._ids)] = (spec.id, sensor.id)
        return ego

    def _free_spawn_point(self) -> tuple[float, float, float]:
        taken = [(e.state.x, e.state.y) for e in self.egos.values()]
        for i in self.rng.permutation(len(self._spawn_points)):
            x, y, yaw, _ = self._spawn_points[i]
            if all(math.hypot(x - tx, y - ty) > 10.0 for tx, ty in taken):
                return x, y, yaw
        raise SimulatorError("no free spawn point")

    def ego_keepouts(self) -> list[tuple[float, float, float]]:
        """``(x, y, radius)`` discs around every ego vehicle that traffic must not spawn in.

        Passed as ``avoid`` to :meth:`TrafficManager.spawn`, here and by the in-process env when it
        respawns traffic on reset, so nobody spawns a car on top of (or just in front of) an ego."""
        return [(e.state.x, e.state.y, 12.0) for e in self.egos.values()]

    def actors(self) -> list[Actor]:
        out = [Actor(self.map_actor_id, 0, "map", "map")]
        for role, ego in self.egos.items():
            out.append(Actor(ego.id, 0, ego.type_id, role))
        for sid, (role, sensor_id) in self._sensor_ids.items():
            sensor = next(s for s in self.egos[role].sensors if s.id == sensor_id)
            out.append(Actor(sid, self.egos[role].id, sensor.type, sensor_id))
        for v in self.traffic.vehicles():
            out.append(Actor(v.id, 0, v.type_id, "traffic"))
        return out

    def blueprints(self) -> list[str]:
        """The blueprint ids this world spawns, sorted: real CARLA ``vehicle.*`` and sensor ids (the traffic
        library of :data:`carla_rl_sim.traffic.DEFAULT_BLUEPRINTS` and the ego's), plus ``sensor.pseudo.bev``."""
        vehicles = {EGO_BLUEPRINT, *self.traffic.blueprint_ids()}
        return sorted({*vehicles, *SPAWNABLE_SENSORS})

    def spawn(
        self, type_id: str, role: str, pose: tuple[float, ...] | None, attributes: dict[str, str], attach_to: int = 0
    ) -> int:
        """/carla/spawn_object: vehicles (an ego when ``role_name`` names one, else traffic) and sensors.

        ``pose`` is (x, y, z, roll, pitch, yaw): in the map frame for vehicles, relative to the vehicle
        ``attach_to`` for sensors; None for a random pose.
        """
        if type_id.startswith("vehicle."):
            role_name = attributes.get("role_name", role)
            if role_name.startswith(("ego", "hero")):
                spawn = None if pose is None else Pose6(*pose)
                return self._add_ego(VehicleSpec(type=type_id, id=role_name, spawn_point=spawn)).id
            if type_id not in self.traffic.blueprint_ids():
                # CARLA's blueprint library has no such vehicle: spawning fails, as it does there
                raise SimulatorError(
                    f"blueprint {type_id!r} not found; vehicles: {', '.join(sorted(self.traffic.blueprint_ids()))}"
                )
            # traffic goes where the traffic manager finds a free lane (a requested pose is not honoured)
            ids = self.traffic.spawn(1, avoid=self.ego_keepouts(), blueprint=type_id)
            if not ids:
                raise SimulatorError(f"no free place to spawn {type_id}")
            return ids[0]
        if type_id in SPAWNABLE_SENSORS:
            ego = next((e for e in self.egos.values() if e.id == attach_to), None)
            if ego is None:
                raise SimulatorError(
                    f"cannot spawn {type_id!r}: attach_to {attach_to} is not an ego vehicle "
                    f"(egos: {', '.join(f'{r}={e.id}' for r, e in self.egos.items())})"
                )
            if any(sensor.id == role for sensor in ego.sensors):
                raise SimulatorError(f"{ego.role_name} has a sensor {role!r} already")
            spec = (
                parse_objects(
                    {
                        "objects": [
                            {
                                "type": ego.type_id,
                                "id": ego.role_name,
                                "sensors": [
                                    {
                                        "type": type_id,
                                        "id": role,
                                        **_sensor_attributes(attributes),
                                        "spawn_point": _spawn_point(pose),
                                    }
                                ],
                            }
                        ]
                    },
                    "spawn_object request",
                    embedded=True,
                )
                .vehicles[0]
                .sensors[0]
            )
            ego.sensors.append(spec)
            actor_id = next(self._ids)
            self._sensor_ids[actor_id] = (ego.role_name, spec.id)
            return actor_id
        raise SimulatorError(f"cannot spawn {type_id!r}; blueprints: {', '.join(self.blueprints())}")

    def destroy(self, actor_id: int) -> bool:
        if actor_id in self._sensor_ids:
            role, sensor_id = self._sensor_ids.pop(actor_id)
            ego = self.egos[role]
            ego.sensors = [sensor for sensor in ego.sensors if sensor.id != sensor_id]
            self._renderers.pop((role, sensor_id), None)
            return True
        for role, ego in list(self.egos.items()):
            if ego.id == actor_id:
                del self.egos[role]
                self._sensor_ids = {k: v for k, v in self._sensor_ids.items() if v[0] != role}
                return True
        return self.traffic.despawn(actor_id)

    def traffic_light_states(self) -> list[tuple[int, int, tuple[float, float, float]]]:
        """(id, CARLA state code, pose) of every traffic light; empty when the world has none."""
        lights = self.traffic.lights
        return lights.states() if lights is not None else []

    def clear_traffic(self) -> None:
        self.traffic.clear()

    # --- control -----------------------------------------------------------------------------------------
    def apply_control(self, role: str, control: Any) -> list[str]:
        """Queue ``control`` for the next tick; returns what had to be clamped (NaN, out of range)."""
        ego = self._ego(role)
        clean, problems = dynamics.sanitize_control(control)
        ego.pending_control = clean
        return problems

    def set_transform(self, role: str, x: float, y: float, yaw: float, z: float | None = None) -> None:
        """Teleport the ego at the next tick, as CARLA's ``actor.set_transform`` (control/set_transform).

        Map frame: ``x, y, z`` in m, ``yaw`` in rad; ``z`` None keeps the current height. The physics velocity
        is kept (world-frame linear and angular velocity, see :func:`dynamics.teleported`): to stop the car,
        also call :meth:`set_target_velocity` with zeros. The sensors forget what they touched and crossed.
        """
        self._ego(role).pending_transform = (x, y, z, yaw)

    def set_target_velocity(
        self, role: str, vx: float, vy: float, vz: float = 0.0, yaw_rate: float | None = None
    ) -> None:
        """Set the ego's velocity at the next tick (after a pending teleport, before the control acts), as
        CARLA's ``actor.set_target_velocity`` (and ``set_target_angular_velocity`` when ``yaw_rate`` is given).

        Map frame: ``vx, vy`` in m/s (the bridge rotates control/set_target_velocity's Twist from the vehicle
        frame into it), ``yaw_rate`` in rad/s counter-clockwise (None keeps it). ``vz`` is accepted and
        dropped: the world is flat."""
        del vz
        self._ego(role).pending_velocity = (vx, vy, yaw_rate)

    def _ego(self, role: str) -> EgoVehicle:
        try:
            return self.egos[role]
        except KeyError:
            raise SimulatorError(f"no ego vehicle {role!r} (have: {', '.join(self.egos)})") from None

    # --- the tick ----------------------------------------------------------------------------------------
    def tick(self) -> None:
        for ego in self.egos.values():
            self._advance_ego(ego)
        self.traffic.step(
            self.dt,
            obstacles=[Obstacle(e.state.x, e.state.y, e.state.yaw, *e.extent, e.state.vx) for e in self.egos.values()],
        )
        for ego in self.egos.values():
            corners = self._corners(ego)
            lane_ids = self.lane_raster.lookup(corners)  # per corner: driving lane + 1, SURFACE, 0 off the road
            self._sense_contacts(ego, corners, lane_ids)
            self._sense_lane_invasions(ego, corners, lane_ids)
        self.frame += 1
        self.elapsed = self.frame * self.dt

    def _advance_ego(self, ego: EgoVehicle) -> None:
        ego.collisions, ego.lane_invasions = [], []
        if ego.pending_transform is not None:
            x, y, z, yaw = ego.pending_transform
            ego.state = dynamics.teleported(ego.state, x, y, ego.state.z if z is None else z, yaw)
            ego.pending_transform = None
            ego.in_contact.clear()
            ego.wheel_lanes, ego.wheel_off_road = [None, None], [False, False]
        if ego.pending_velocity is not None:
            ego.state = dynamics.with_velocity(ego.state, *ego.pending_velocity)
            ego.pending_velocity = None
        if ego.pending_control is not None:
            ego.command, ego.pending_control = ego.pending_control, None
        ego.state = dynamics.step(ego.state, ego.command, ego.params, self.dt)

    def _corners(self, ego: EgoVehicle) -> np.ndarray:
        length, width = ego.extent
        return box_corners(np.array((ego.state.x, ego.state.y, ego.state.yaw, length, width)))

    def _sense_contacts(self, ego: EgoVehicle, corners: np.ndarray, lane_ids: np.ndarray) -> None:
        contacts: set[int] = set()
        if not lane_ids.all():
            contacts.add(0)  # a kerb (sidewalk, median, ...) or off the map: a static object
        boxes = self.traffic.boxes()
        if len(boxes):
            # only vehicles whose bounding circles touch the ego's can overlap it
            reach = (np.hypot(boxes[:, 3], boxes[:, 4]) + math.hypot(*ego.extent)) / 2.0
            near = np.flatnonzero(np.hypot(boxes[:, 0] - ego.state.x, boxes[:, 1] - ego.state.y) < reach)
            for i in near:
                x, y, yaw, length, width, _ = boxes[i]
                if _boxes_overlap(corners, box_corners(np.array((x, y, yaw, length, width)))):
                    contacts.add(int(self.traffic.ids[i]))
        for other in sorted(contacts - ego.in_contact):  # one event per contact onset, as CARLA's sensor
            impulse = ego.params.mass * max(ego.speed, 0.1)  # the momentum the contact takes out
            yaw = ego.state.yaw
            # against the heading, in CARLA's left-handed frame (y flipped), as its sensor reports it
            ego.collisions.append((other, (-impulse * math.cos(yaw), impulse * math.sin(yaw), 0.0)))
        if contacts - ego.in_contact:
            # the contact stops the car where it is (no rigid-body response in this world)
            s = ego.state
            ego.state = dynamics.VehicleState(x=s.x, y=s.y, z=s.z, yaw=s.yaw, gear=s.gear, reverse=s.reverse)
        ego.in_contact = contacts

    def _sense_lane_invasions(self, ego: EgoVehicle, corners: np.ndarray, lane_ids: np.ndarray) -> None:
        crossed: list[int] = []
        for i in range(2):  # the front corners, where CARLA's sensor sees the front wheels cross
            new = self.lane_raster.lane_key(int(lane_ids[i]))
            old = ego.wheel_lanes[i]
            if old is not None and new is None and not ego.wheel_off_road[i]:
                crossed.append(self._edge_marking(old, corners[i]))  # off the road over its edge (e.g. a curb)
            elif new is not None and ego.wheel_off_road[i]:
                crossed.append(self._edge_marking(new, corners[i]))  # back onto the road
            elif old is not None and new is not None and new != old:
                code = self._crossed_marking(old, new)
                if code is not None:
                    crossed.append(code)
            if old is not None or new is not None:
                ego.wheel_off_road[i] = new is None
            ego.wheel_lanes[i] = new if new is not None else old
        if crossed:
            ego.lane_invasions.append(sorted(set(crossed)))

    def _edge_marking(self, key: LaneKey, point: np.ndarray) -> int:
        """The code of the mark on the side of lane ``key`` nearer ``point`` (where a wheel left or entered)."""
        lane = self.network.lanes[key]
        to_left = np.min(np.hypot(*(lane.left_boundary - point).T))
        to_right = np.min(np.hypot(*(lane.right_boundary - point).T))
        return marking_code((lane.left_mark if to_left < to_right else lane.right_mark).type)

    def _crossed_marking(self, old: LaneKey, new: LaneKey) -> int | None:
        lane = self.network.lanes[old]
        if lane.left_neighbor == new:
            return marking_code(lane.left_mark.type)
        if lane.right_neighbor == new:
            return marking_code(lane.right_mark.type)
        return None  # moved along the road (successor lane): no marking crossed

    # --- sensors -----------------------------------------------------------------------------------------
    def render(self, role: str, sensor_id: str) -> tuple[np.ndarray, str, dict[str, Any]]:
        """(image (H, W, C) uint8, encoding, camera_info fields) of one camera-like sensor, this frame."""
        ego = self._ego(role)
        key = (role, sensor_id)
        if key not in self._renderers:
            self._renderers[key] = self._make_renderer(ego, sensor_id)
        renderer, info = self._renderers[key]
        s = ego.state
        boxes = self.traffic.boxes()
        if isinstance(renderer, BevRenderer):
            image = np.ascontiguousarray(renderer.render((s.x, s.y, s.yaw), ego.extent, boxes).transpose(1, 2, 0))
            return image, f"8UC{image.shape[2]}", info
        return renderer.render((s.x, s.y, s.yaw), boxes), "bgra8", info

    def _make_renderer(self, ego: EgoVehicle, sensor_id: str):
        sensor = next((s for s in ego.sensors if s.id == sensor_id), None)
        if sensor is None or sensor.type not in ("sensor.camera.rgb", "sensor.pseudo.bev"):
            raise SimulatorError(f"{ego.role_name} has no camera or BEV sensor {sensor_id!r}")
        if self._raster is None:
            self._raster = MapRaster(self.network.lanes)
        a = sensor.attributes
        if sensor.type == "sensor.pseudo.bev":
            size = int(a["size"])
            return BevRenderer(
                self.network.lanes,
                size=size,
                pixels_per_meter=float(a["pixels_per_meter"]),
                raster=self._raster if float(a["pixels_per_meter"]) == self._raster.pixels_per_meter else None,
            ), camera_info(size, size, 90.0)
        w, h, fov = int(a["image_size_x"]), int(a["image_size_y"]), float(a["fov"])
        return CameraRenderer(self.network.lanes, w, h, fov, tuple(sensor.mount), raster=self._raster), camera_info(
            w, h, fov
        )


class LaneRaster:
    """What covers each point of the map, as a raster built once (a lookup per corner instead of a spatial
    query: the contact and lane-invasion sensors run every tick).

    Values: ``i + 1`` for driving lane ``keys[i]``; :attr:`SURFACE` for the rest of the road surface CARLA
    drives on without a contact (shoulders and other paved lanes, the whole paved area of a junction:
    :attr:`RoadNetwork.junction_surfaces`); 0 for kerbs (sidewalks, medians, ...) and everything off the map.
    Drawn in that order of precedence: junction surfaces, kerbs over them, paved lanes, junction lanes, then
    road lanes, so that where a junction lane overlaps the end of a road's lane the road's lane (the one
    with the markings) wins. 5 px/m keeps RLTown01 under 10 MB.
    """

    def __init__(self, network: RoadNetwork, pixels_per_meter: float = 5.0, margin: float = 5.0):
        lanes = network.driving_lanes()
        pts = np.concatenate([np.concatenate([lane.left_boundary, lane.right_boundary]) for lane in lanes])
        self.ppm = pixels_per_meter
        self.x0, self.y0 = pts[:, 0].min() - margin, pts[:, 1].min() - margin
        w = int(math.ceil((pts[:, 0].max() + margin - self.x0) * self.ppm)) + 1
        h = int(math.ceil((pts[:, 1].max() + margin - self.y0) * self.ppm)) + 1
        self.ids = np.zeros((h, w), np.int16)
        self.keys = [lane.key for lane in lanes]
        self.SURFACE = len(lanes) + 1
        for polygon in network.junction_surfaces.values():
            self._fill(polygon, self.SURFACE)
        others = [lane for lane in network.lanes.values() if not lane.is_driving and len(lane.left_boundary) >= 2]
        for lane in others:
            if lane.type in KERB_LANE_TYPES:
                self._fill(lane.polygon, 0)
        for lane in others:
            if lane.type in PAVED_LANE_TYPES:
                self._fill(lane.polygon, self.SURFACE)
        for i in sorted(range(len(lanes)), key=lambda i: lanes[i].junction < 0):
            self._fill(lanes[i].polygon, i + 1)

    def _fill(self, polygon: np.ndarray, value: int) -> None:
        cv2.fillPoly(self.ids, [np.round(self._pixels(polygon)).astype(np.int32)], int(value))

    def lane_key(self, value: int) -> LaneKey | None:
        """The driving lane of a raster value (None on any other surface)."""
        return self.keys[value - 1] if 0 < value < self.SURFACE else None

    def _pixels(self, xy: np.ndarray) -> np.ndarray:
        return np.stack([(xy[:, 0] - self.x0) * self.ppm, (xy[:, 1] - self.y0) * self.ppm], axis=1)

    def lookup(self, xy: np.ndarray) -> np.ndarray:
        px = np.round(self._pixels(xy)).astype(np.int64)
        h, w = self.ids.shape
        inside = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
        out = np.zeros(len(xy), np.int16)
        out[inside] = self.ids[px[inside, 1], px[inside, 0]]
        return out


def _boxes_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test for two convex quadrilaterals."""
    for poly in (a, b):
        for i in range(4):
            edge = poly[(i + 1) % 4] - poly[i]
            axis = np.array([-edge[1], edge[0]])
            pa, pb = a @ axis, b @ axis
            if pa.max() < pb.min() or pb.max() < pa.min():
                return False
    return True


def load_simulator(
    town: str,
    objects_file: str,
    fixed_delta_seconds: float,
    traffic: int,
    seed: int,
    role_names: Iterable[str] | None = None,
    traffic_lights: bool = False,
) -> Simulator:
    """A simulator on a shipped town name or any .xodr path, with the vehicles of an objects file."""
    network = RoadNetwork.from_file(town_path(town))
    objects = load_objects(Path(objects_file) if objects_file else default_objects_file())
    if role_names is not None:
        allowed = set(role_names)
        for spec in objects.vehicles:
            if spec.id not in allowed:
                raise SimulatorError(f"vehicle id {spec.id!r} is not an ego role name ({', '.join(sorted(allowed))})")
    return Simulator(network, objects, fixed_delta_seconds, traffic, seed, traffic_lights)

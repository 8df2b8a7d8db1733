"""The shared episode runtime: settling after a teleport, the command rule, folding uncommanded frames."""

from __future__ import annotations

from pathlib import Path

import pytest

from carla_rl_common.bridge import Control
from carla_rl_common.opendrive import RoadNetwork
from carla_rl_env.episode import EXTRA_SETTLE_FRAMES, CommandMatcher, Settle, StepFolder
from carla_rl_env.task import Frame, Transition


def frame(x: float = 0.0, control: Control = Control()) -> Frame:
    return Frame(stamp_ns=0, frame=0, x=x, y=0.0, yaw=0.0, speed=0.0, acceleration=0.0, control=control)


def test_settle_teleports_until_the_car_rested_there():
    settle = Settle((0.0, 0.0, 0.0), settle_frames=2)
    assert not settle.done
    assert settle.feed(frame(3.0))  # off the start: teleport again
    assert not settle.feed(frame(0.1)) and not settle.done
    assert not settle.feed(frame(0.0)) and settle.done and settle.frame.x == 0.0


def test_settle_places_the_car_at_the_lane_height_from_the_map(shared_maps: Path):
    # control/set_transform honours z (ros-bridge carla_ros_bridge/src/carla_ros_bridge/actor_control.py calls
    # actor.set_transform): a reset sends the lane's z, the elevation of CARLA's towns (Town04's hills).
    network = RoadNetwork.from_file(shared_maps / "Town04.xodr")
    lane = max(network.driving_lanes(), key=lambda lane: float(lane.elevation.max()))
    i = int(lane.elevation.argmax())
    (x, y), yaw = lane.centerline[i], float(lane.headings[i])
    settle = Settle((float(x), float(y), yaw), settle_frames=1, network=network)
    assert settle.pose == (float(x), float(y), pytest.approx(float(lane.elevation[i]), abs=0.05), yaw)
    assert settle.z > 5.0
    assert Settle((0.0, 0.0, 0.0), settle_frames=1).pose == (0.0, 0.0, 0.0, 0.0)  # no map: z=0


def test_settle_gives_up_on_a_car_that_never_rests():
    settle = Settle((0.0, 0.0, 0.0), settle_frames=1)
    for _ in range(1 + EXTRA_SETTLE_FRAMES):
        assert not settle.done
        settle.feed(frame(5.0))
    assert settle.done


def test_a_frame_applied_the_command_as_the_message_carried_it():
    matcher = CommandMatcher()
    assert not matcher.applied(frame())  # no command yet
    matcher.expect(Control(throttle=0.1))
    assert matcher.applied(frame(control=Control(throttle=float.fromhex("0x1.99999ap-4"))))  # float32(0.1)
    assert not matcher.applied(frame(control=Control(throttle=0.2)))


def test_gear_and_reverse_of_the_applied_control_do_not_make_a_frame_uncommanded():
    # vehicle_status.control is actor.get_control() (ros-bridge carla_ros_bridge/src/carla_ros_bridge/
    # ego_vehicle.py): CARLA sets gear to the gearbox's gear and reverse = gear < 0, whatever was commanded.
    matcher = CommandMatcher()
    matcher.expect(Control(throttle=0.5, steer=-0.25))
    assert matcher.applied(frame(control=Control(throttle=0.5, steer=-0.25, gear=3)))
    assert matcher.applied(frame(control=Control(throttle=0.5, steer=-0.25, gear=-1, reverse=True)))
    assert matcher.applied(frame(control=Control(throttle=0.5, steer=-0.25, gear=1, manual_gear_shift=True)))
    assert not matcher.applied(frame(control=Control(throttle=0.5, steer=-0.25, hand_brake=True)))
    assert not matcher.applied(frame(control=Control(throttle=0.5, steer=0.25, gear=3)))
    matcher.expect(Control(brake=1.0, reverse=True, gear=-1))  # a command in reverse, applied in 1st
    assert matcher.applied(frame(control=Control(brake=1.0, gear=1)))


def test_uncommanded_frames_fold_into_the_next_step():
    folder = StepFolder()
    assert not folder.add(Transition({}, 1.0, {"a": 1.0}, False, False, ""), frame(1.0))
    assert folder.add(Transition({}, 0.5, {"a": 0.5}, False, False, ""), frame(2.0))
    tr, last = folder.take()
    assert (tr.reward, tr.reward_terms, last.x) == (1.5, {"a": 1.5}, 2.0) and folder.carry is None

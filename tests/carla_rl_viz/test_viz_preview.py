"""The viewers on the simulator's preview topics.

- ``raw_stamp_ns`` reads the header stamp of serialized Steps, images and marker arrays as deserializing does;
- :class:`EnvView` shows the Step of the newest markers' frame, whichever came first, and the newest Step
  while no markers come;
- ``carla-rl viz web`` as a process subscribes to an embedded simulator's previews, started after the viewer,
  and to the bridge's topics where a simulator publishes no previews (``preview_hz`` 0, as a real bridge).
"""

from __future__ import annotations

import json
import os
import threading
import time

import numpy as np
import pytest
from carla_rl_msgs.msg import Step
from rclpy.serialization import serialize_message
from visualization_msgs.msg import Marker, MarkerArray

from carla_rl_bringup.launcher import NodeSpec, ProcessGroup
from carla_rl_common import bridge
from carla_rl_common.bridge import BridgeTopics
from carla_rl_viz.live import MARKERS_MATCH_S, EnvView, raw_stamp_ns
from carla_rl_viz.probe import BrowserProbe, start_viewer, stop_viewer, viewer_log, wait_until

T = BridgeTopics()
DT = 0.05
OBJECTS = {
    "objects": [
        {
            "type": "vehicle.tesla.model3",
            "id": "ego_vehicle",
            "sensors": [
                {
                    "type": "sensor.camera.rgb",
                    "id": "rgb_front",
                    "image_size_x": 84,
                    "image_size_y": 84,
                    "fov": 90.0,
                    "spawn_point": {"x": 2.0, "y": 0.0, "z": 2.0, "roll": 0.0, "pitch": 0.0, "yaw": 0.0},
                }
            ],
        },
        {"type": "sensor.pseudo.markers", "id": "markers"},  # /carla/markers exists only when spawned
    ]
}


def step_raw(frame: int) -> tuple[bytes, dict]:
    msg = Step(env_id="env_0", step=frame, frame=frame)
    msg.header.stamp = bridge.sim_time_msg(frame * DT)
    msg.ego_pose = bridge.pose_msg(float(frame), 0.0, 0.0)
    return serialize_message(msg), {"publication_sequence_number": frame}


def markers_raw(frame: int) -> bytes:
    """The ego (id 1) and one other vehicle, 10 m ahead of where the ego is in that frame."""
    out = MarkerArray()
    for actor_id, x in ((1, float(frame)), (2, frame + 10.0)):
        m = Marker(id=actor_id, type=Marker.CUBE, action=Marker.ADD, ns="vehicles")
        m.header.stamp, m.header.frame_id = bridge.sim_time_msg(frame * DT), bridge.MAP_FRAME
        m.pose = bridge.pose_msg(x, 0.0, 0.0)
        m.scale.x, m.scale.y = 4.5, 2.0
        out.markers.append(m)
    return serialize_message(out)


def test_raw_stamp_is_the_header_stamp():
    stamp = bridge.sim_time_msg(1234.56789)
    step = Step(step=3)
    step.header.stamp = stamp
    image = bridge.numpy_to_image(np.zeros((4, 6, 3), np.uint8), "bgr8", stamp)
    expected = bridge.stamp_to_ns(stamp)
    assert raw_stamp_ns(serialize_message(step)) == expected
    assert raw_stamp_ns(serialize_message(image)) == expected
    assert raw_stamp_ns(markers_raw(7), 4) == bridge.stamp_to_ns(bridge.sim_time_msg(7 * DT))
    assert raw_stamp_ns(serialize_message(MarkerArray()), 4) is None


def test_view_shows_the_step_of_the_markers_frame():
    view = EnvView("", threading.Condition())
    view.ego_id = 1
    shown = lambda: view.snapshot()["frame"]  # noqa: E731
    view.take([step_raw(f) for f in (1, 2, 3)])
    assert shown() == 3  # no markers yet: the newest Step

    view.take([step_raw(4)], markers_raw(5))  # markers come before their frame's Step
    assert shown() == 3
    view.take([step_raw(5), step_raw(6)])
    state = view.snapshot()
    assert state["frame"] == 5 and state["traffic"] == [[15.0, 0.0, 0.0, 4.5, 2.0]]  # one instant: ego at 5

    view.take([step_raw(f) for f in (7, 8, 9, 10)], markers_raw(9))  # taken together: still frame 9
    assert view.snapshot()["frame"] == 9 and view.snapshot()["traffic"][0][0] == 19.0

    view.take([step_raw(11), step_raw(12)])  # no new markers: the view stays on its frame
    assert shown() == 9

    view.take([step_raw(f) for f in range(13, 20)], markers_raw(100))  # stamps that never match a Step
    assert shown() == 9
    time.sleep(MARKERS_MATCH_S + 0.05)
    view.take([step_raw(20)])
    assert shown() == 20  # shown with the newest Step after a while
    assert view.step_seq == 4  # what the views waited on: one per frame shown


@pytest.mark.slow
def test_viewer_uses_previews_where_published_and_the_bridge_topics_elsewhere(ros_node, tmp_path):
    objects = tmp_path / "objects.json"
    objects.write_text(json.dumps(OBJECTS))
    names = {
        ns: {
            kind: f"/{ns}/{topic}"
            for kind, topic in (
                ("markers", T.markers),
                ("image", T.image("rgb_front")),
                ("p_markers", T.preview_markers),
                ("p_image", T.preview_image("rgb_front")),
            )
        }
        for ns in ("env_0", "env_1")
    }
    subscribers = lambda ns: {k: ros_node.count_subscribers(n) for k, n in names[ns].items()}  # noqa: E731
    proc, url = start_viewer("web", ["--port", "0", "--num-envs", "2"])
    probe = BrowserProbe(url, "env_0", camera=False)  # a watching browser: markers and camera wanted
    group = ProcessGroup(dict(os.environ), log=open(tmp_path / "sims.log", "w"))
    try:
        # no simulator yet: the bridge topics (what a real bridge offers)
        wait_until(
            lambda: subscribers("env_0") == {"markers": 1, "image": 1, "p_markers": 0, "p_image": 0},
            30,
            "the viewer on the bridge topics while no simulator runs",
        )
        # a late simulator with previews, and one without (preview_hz 0: no preview topics, as a real bridge)
        params = {"objects_file": str(objects), "traffic": 2, "synchronous_mode_wait_for_vehicle_control_command": True}
        group.start(NodeSpec("sim0", "carla_rl_sim.node", "env_0", {**params, "preview_hz": 20.0}))
        group.start(NodeSpec("sim1", "carla_rl_sim.node", "env_1", {**params, "preview_hz": 0.0}))
        wait_until(
            lambda: subscribers("env_0") == {"markers": 0, "image": 0, "p_markers": 1, "p_image": 1},
            60,
            "the viewer to move to the previews of the simulator that publishes them",
        )
        wait_until(lambda: ros_node.count_publishers(names["env_1"]["markers"]) == 1, 30, "the second simulator")
        time.sleep(1.0)  # a few re-checks: env_1 stays on the bridge topics
        assert subscribers("env_1") == {"markers": 1, "image": 1, "p_markers": 0, "p_image": 0}
        assert ros_node.count_publishers(names["env_1"]["p_markers"]) == 0
    finally:
        probe.close()
        group.stop()
        assert stop_viewer(proc) == 0, viewer_log(proc)

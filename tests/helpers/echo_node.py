"""A separate process that echoes every carla_msgs message type and answers every carla_msgs service.

Messages received on ``echo_in/<Type>`` are republished unchanged on ``echo_out/<Type>``. Services answer
from their request so the caller can check both directions: SpawnObject returns ``id = len(request.id) +
len(request.attributes)`` and echoes ``type`` as ``error_string``; DestroyObject returns ``success = id is
even``; GetBlueprints returns the filter split on commas.
"""

from __future__ import annotations

import sys

import carla_msgs.msg as cm
import carla_msgs.srv as cs
import rclpy
from rclpy.node import Node

from carla_rl_common.bridge import qos_default

MESSAGE_TYPES = sorted(n for n in dir(cm) if n.startswith("Carla"))


class Echo(Node):
    def __init__(self) -> None:
        super().__init__("carla_msgs_echo")
        for name in MESSAGE_TYPES:
            msg_type = getattr(cm, name)
            pub = self.create_publisher(msg_type, f"echo_out/{name}", qos_default())
            self.create_subscription(msg_type, f"echo_in/{name}", lambda m, p=pub: p.publish(m), qos_default())
        self.create_service(cs.SpawnObject, "echo/spawn_object", self.spawn)
        self.create_service(cs.DestroyObject, "echo/destroy_object", self.destroy)
        self.create_service(cs.GetBlueprints, "echo/get_blueprints", self.blueprints)

    def spawn(self, req, res):
        res.id = len(req.id) + len(req.attributes)
        res.error_string = req.type
        return res

    def destroy(self, req, res):
        res.success = req.id % 2 == 0
        return res

    def blueprints(self, req, res):
        res.blueprints = req.filter.split(",")
        return res


def main() -> int:
    rclpy.init()
    node = Echo()
    print("ready", flush=True)
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

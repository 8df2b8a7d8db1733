"""DirectSubscriptions: hot-path messages taken without the executor, over real DDS (a publisher process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from rclpy.executors import SingleThreadedExecutor
from std_msgs.msg import Int32, String
from std_srvs.srv import Trigger

from carla_rl_common import bridge
from carla_rl_common.direct import DirectSubscriptions

# another process publishes 5 x (String "s{i}", Int32 i) pairs, then waits a second and exits
PUBLISHER = textwrap.dedent("""
    import time, rclpy
    from std_msgs.msg import Int32, String
    from carla_rl_common import bridge
    rclpy.init()
    node = rclpy.create_node("direct_test_publisher")
    ints = node.create_publisher(Int32, "/direct_test/int", bridge.qos_default())
    strings = node.create_publisher(String, "/direct_test/str", bridge.qos_default())
    deadline = time.monotonic() + 20
    while (ints.get_subscription_count() < 1 or strings.get_subscription_count() < 1) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    for i in range(5):
        strings.publish(String(data=f"s{i}"))
        ints.publish(Int32(data=i))
    time.sleep(1.0)
""")


def test_every_waiting_message_is_taken_in_one_call_round_by_round_in_subscription_order(ros_node):
    direct = DirectSubscriptions(ros_node.context)
    got: list[str] = []
    # created first, so its messages are served first although each was published second
    direct.create_subscription(
        ros_node, Int32, "/direct_test/int", lambda m: got.append(f"i{m.data}"), bridge.qos_default()
    )
    direct.create_subscription(ros_node, String, "/direct_test/str", lambda m: got.append(m.data), bridge.qos_default())
    publisher = subprocess.Popen([sys.executable, "-c", PUBLISHER])
    publisher.wait(timeout=60)  # DDS keeps what arrives meanwhile in the readers' queues; nobody takes it yet
    assert publisher.returncode == 0
    direct.spin_once(1.0)
    # one message of each subscription per round (as the executor serves a ready batch): a frame's messages
    # are served together, before the next frame's
    assert got == [x for i in range(5) for x in (f"i{i}", f"s{i}")]
    direct.destroy()


def test_spin_until_returns_once_done_holds(ros_node):
    direct = DirectSubscriptions(ros_node.context)
    got: list[int] = []
    direct.create_subscription(ros_node, Int32, "/direct_test/int", lambda m: got.append(m.data), bridge.qos_default())
    direct.create_subscription(ros_node, String, "/direct_test/str", lambda m: None, bridge.qos_default())
    publisher = subprocess.Popen([sys.executable, "-c", PUBLISHER])
    try:
        assert direct.spin_until(lambda: len(got) >= 5, timeout=30), f"got only {got}"
    finally:
        publisher.wait(timeout=60)
    assert got == list(range(5))


def test_spin_until_gives_up_after_its_timeout(ros_node):
    direct = DirectSubscriptions(ros_node.context)
    direct.create_subscription(ros_node, Int32, "/direct_test/silent", lambda m: None, bridge.qos_default())
    start = time.monotonic()
    assert direct.spin_until(lambda: False, timeout=0.3) is False
    assert 0.25 < time.monotonic() - start < 2.0


def test_a_service_request_or_a_kick_ends_the_wait_for_the_executor(ros_node):
    direct = DirectSubscriptions(ros_node.context)
    direct.create_subscription(ros_node, Int32, "/direct_test/silent", lambda m: None, bridge.qos_default())
    served: list[bool] = []

    def on_trigger(request, response):
        served.append(True)
        response.success = True
        return response

    direct.wake_on(ros_node.create_service(Trigger, "/direct_test/trigger", on_trigger))
    executor = SingleThreadedExecutor()
    executor.add_node(ros_node)
    client = ros_node.create_client(Trigger, "/direct_test/trigger")
    assert client.wait_for_service(timeout_sec=10)
    future = client.call_async(Trigger.Request())
    # the request is not ours to serve: the wait ends early and says so; the executor then serves it
    start = time.monotonic()
    deadline = start + 10
    while not direct.spin_once(5.0) and time.monotonic() < deadline:
        pass
    assert time.monotonic() - start < 5.0 and not served
    executor.spin_until_future_complete(future, timeout_sec=10)
    assert served and future.result().success

    direct.kick = True  # a callback completed a future a coroutine awaits
    start = time.monotonic()
    assert direct.spin_once(5.0) is True
    assert time.monotonic() - start < 1.0
    assert direct.spin_once(0.05) is False  # a kick is reported once
    executor.remove_node(ros_node)

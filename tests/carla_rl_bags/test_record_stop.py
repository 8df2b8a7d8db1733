"""`carla-rl record` as its own process over real DDS: its last line names the bag, what it holds and the
signal that stopped it (before: "closed DIR: N messages ..." only)."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time

import pytest
from carla_msgs.msg import CarlaStatus
from rclpy.duration import Duration

from carla_rl_common import bridge
from carla_rl_common.bridge import BridgeTopics


def _lines(stream) -> queue.Queue:
    """The lines of ``stream`` as they come, read in a thread (a missing line then fails a test, never hangs it)."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()
    return lines


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_record_says_which_signal_stopped_it(tmp_path, graph, wait_for, signum):
    out = tmp_path / "rec"
    status = graph.node.create_publisher(CarlaStatus, f"/{BridgeTopics().status}", bridge.qos_default(100))
    proc = subprocess.Popen(
        [sys.executable, "-m", "carla_rl_bringup.cli", "record", "--output", str(out), "--topics", "carla/status"],
        stderr=subprocess.PIPE,
        text=True,
    )
    lines, seen = _lines(proc.stderr), []
    try:
        deadline = time.monotonic() + 60
        while not any("recorder ready" in line for line in seen):
            assert time.monotonic() < deadline, "".join(seen)
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                assert proc.poll() is None, "".join(seen)
        wait_for(lambda: status.get_subscription_count() > 0, 30, "the recorder to subscribe")
        for frame in range(5):
            status.publish(CarlaStatus(frame=frame))
        assert status.wait_for_all_acked(Duration(seconds=10)), "the recorder did not take them"
        proc.send_signal(signum)
        assert proc.wait(timeout=30) == 0, "".join(seen)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.2)  # the reader thread takes the rest
    while not lines.empty():
        seen.append(lines.get())
    last = seen[-1].strip()
    assert f"closed {out}: 5 messages on 1 topics in 1 file(s)" in last, "".join(seen)
    assert last.endswith(f"; stopped by {signum.name}"), last

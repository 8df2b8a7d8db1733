"""Headless clients of the two views, speaking their wire protocols as the browser page and the Foxglove app do.

``benchmarks/bench_viz.py`` attaches them to measure what a watched view costs the loop and how many updates
reach a viewer; the tests use them to check what the servers send. Both count what they receive in a
background thread until ``close``.
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

FOXGLOVE_SUBPROTOCOLS = ["foxglove.sdk.v1", "foxglove.websocket.v1"]
FOXGLOVE_MESSAGE_DATA = 0x01  # server binary opcode: subscription id (u32), log time (u64), payload
VIEWER_LOGS: dict[int, collections.deque] = {}


def start_viewer(
    kind: str, arguments: list[str], env: dict[str, str] | None = None, timeout: float = 60.0
) -> tuple[subprocess.Popen, str]:
    """Start ``carla-rl viz KIND ARGUMENTS`` as a process; return it and the URL it prints once listening.

    The process gets its own session so that :func:`stop_viewer` can interrupt it like Ctrl-C would. Its
    output is drained in the background (a full pipe would stall it); :func:`viewer_log` gives the last lines.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "carla_rl_bringup.cli", "viz", kind, *arguments],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    tail: collections.deque[str] = collections.deque(maxlen=200)
    VIEWER_LOGS[proc.pid] = tail
    found = threading.Event()
    url: list[str] = []

    def drain() -> None:  # DDS may log to stdout before the URL line (Fast DDS's shared-memory warnings)
        for line in proc.stdout:
            tail.append(line)
            match = None if url else re.search(r"((?:http|ws)://[^\s/]+/?)", line)
            if match:
                url.append(match.group(1))
                found.set()

    threading.Thread(target=drain, daemon=True).start()
    found.wait(timeout)
    if not url:
        stop_viewer(proc)
        raise RuntimeError(f"carla-rl viz {kind} printed no URL within {timeout} s:\n{viewer_log(proc)}")
    return proc, url[0]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, poll: float = 0.05) -> Any:
    """The first truthy value of ``predicate``, polled every ``poll`` s; AssertionError naming ``what`` after
    ``timeout`` s (the viewer tests' and benchmarks' wait)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


def viewer_log(proc: subprocess.Popen) -> str:
    """The last lines a viewer printed (stdout and stderr)."""
    return "".join(VIEWER_LOGS.get(proc.pid, []))[-3000:]


def stop_viewer(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    """SIGINT, then SIGKILL after ``timeout`` s; the exit code."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


class BrowserProbe:
    """Follows ``/api/stream`` of one env like the page: every ``state`` event, and the camera image whenever
    its sequence number changes (one request at a time, latest wins)."""

    def __init__(self, url: str, env: str, camera: bool = True):
        parts = urlsplit(url)
        self.host, self.port, self.env, self.camera = parts.hostname, parts.port, env, camera
        self.states: list[dict[str, Any]] = []
        self.events: dict[str, int] = {}
        self.images = 0
        self.image_bytes = 0
        self.arrivals: list[float] = []
        self.image_arrivals: list[float] = []
        self._stop = threading.Event()
        self._conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        self._conn.connect()
        self._sock = self._conn.sock  # http.client lets go of it once a streamed response starts: close() needs it
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        camera = http.client.HTTPConnection(self.host, self.port, timeout=10)
        self._conn.request("GET", f"/api/stream?env={self.env}")
        response = self._conn.getresponse()
        kind, last_seq = "", -1
        try:
            while not self._stop.is_set():
                line = response.readline()
                if not line:
                    return
                line = line.decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    self.events[kind] = self.events.get(kind, 0) + 1
                    if kind == "state":
                        state = json.loads(line[6:])
                        self.states.append(state)
                        self.arrivals.append(time.monotonic())
                        if self.camera and state["camera_seq"] and state["camera_seq"] != last_seq:
                            camera.request("GET", f"/api/camera?env={self.env}&seq={state['camera_seq']}")
                            body = camera.getresponse().read()
                            if body:
                                self.images += 1
                                self.image_bytes += len(body)
                                self.image_arrivals.append(time.monotonic())
                            last_seq = state["camera_seq"]
        except (OSError, ValueError):
            return  # closed by close() or the server going away
        finally:
            camera.close()

    def rate(self) -> float:
        """State updates per second received over the run."""
        a = self.arrivals
        return (len(a) - 1) / (a[-1] - a[0]) if len(a) > 1 and a[-1] > a[0] else 0.0

    def close(self) -> None:
        self._stop.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # ends the blocked read of the stream at once
        except OSError:
            pass
        self._conn.close()
        self._thread.join(timeout=5)


class FoxgloveProbe:
    """Subscribes to every channel a Foxglove WebSocket server advertises (or those whose topic is in
    ``topics``) and counts messages per topic; JSON payloads are kept decoded."""

    def __init__(self, url: str, topics: set[str] | None = None, timeout: float = 10.0):
        import websocket  # websocket-client

        self.ws = websocket.create_connection(url, subprotocols=FOXGLOVE_SUBPROTOCOLS, timeout=timeout)
        self.topics_wanted = topics
        self.channels: dict[int, dict[str, Any]] = {}
        self.by_subscription: dict[int, dict[str, Any]] = {}
        self.counts: dict[str, int] = {}
        self.json: dict[str, list[Any]] = {}
        self.last_payload: dict[str, bytes] = {}
        self.arrivals: dict[str, list[float]] = {}
        self.server_info: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import websocket

        self.ws.settimeout(0.5)
        while not self._stop.is_set():
            try:
                opcode, data = self.ws.recv_data()
            except websocket.WebSocketTimeoutException:
                continue
            except (OSError, websocket.WebSocketException):
                return
            if opcode == websocket.ABNF.OPCODE_TEXT:
                self._on_text(json.loads(data))
            elif opcode == websocket.ABNF.OPCODE_BINARY and data and data[0] == FOXGLOVE_MESSAGE_DATA:
                sub_id, _log_time = struct.unpack_from("<IQ", data, 1)
                channel = self.by_subscription.get(sub_id)
                if channel is None:
                    continue
                topic, payload = channel["topic"], bytes(data[13:])
                self.counts[topic] = self.counts.get(topic, 0) + 1
                self.arrivals.setdefault(topic, []).append(time.monotonic())
                self.last_payload[topic] = payload
                if channel.get("encoding") == "json":
                    self.json.setdefault(topic, []).append(json.loads(payload))

    def _on_text(self, message: dict[str, Any]) -> None:
        if message.get("op") == "serverInfo":
            self.server_info = message
        elif message.get("op") == "advertise":
            subscriptions = []
            for channel in message["channels"]:
                self.channels[channel["id"]] = channel
                if self.topics_wanted is None or channel["topic"] in self.topics_wanted:
                    sub_id = len(self.by_subscription) + 1
                    self.by_subscription[sub_id] = channel
                    subscriptions.append({"id": sub_id, "channelId": channel["id"]})
            if subscriptions:
                self.ws.send(json.dumps({"op": "subscribe", "subscriptions": subscriptions}))

    def rate(self, topic: str) -> float:
        a = self.arrivals.get(topic, [])
        return (len(a) - 1) / (a[-1] - a[0]) if len(a) > 1 and a[-1] > a[0] else 0.0

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.ws.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m carla_rl_viz.probe {web,foxglove} URL``: follow a view until SIGINT, then print one JSON
    line of what arrived. The benchmark runs it as its own process, so the client's work never competes with
    the stepping loop for a Python interpreter lock."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__.split("\n")[0])
    parser.add_argument("kind", choices=["web", "foxglove"])
    parser.add_argument("url")
    parser.add_argument("--env", default="env_0")
    parser.add_argument("--images", action="store_true", help="say 'receiving' only once images come too")
    args = parser.parse_args(argv)
    stop = threading.Event()
    marks: list[float] = []  # SIGUSR1: count from here (the benchmark's timed part starts)
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGUSR1, lambda *_: marks.append(time.monotonic()))
    probe = BrowserProbe(args.url, args.env) if args.kind == "web" else FoxgloveProbe(args.url)
    print("ready", flush=True)
    receiving = False
    while not stop.wait(0.1):
        if not receiving:  # the benchmark times from here on: discovery may take seconds
            if isinstance(probe, BrowserProbe):
                receiving = bool(probe.arrivals) and (probe.images > 0 or not args.images)
            else:
                counts = probe.counts
                receiving = counts.get(f"/{args.env}/reward", 0) > 0 and (
                    counts.get(f"/{args.env}/camera", 0) > 0 or not args.images
                )
            if receiving:
                print("receiving", flush=True)
    end = time.monotonic()
    since = marks[-1] if marks else 0.0
    if isinstance(probe, BrowserProbe):
        updates = sum(1 for t in probe.arrivals if t >= since)
        images = sum(1 for t in probe.image_arrivals if t >= since)
    else:
        updates = sum(1 for t in probe.arrivals.get(f"/{args.env}/reward", []) if t >= since)
        images = sum(1 for t in probe.arrivals.get(f"/{args.env}/camera", []) if t >= since)
    probe.close()
    seconds = end - since if since else float("nan")
    print(
        json.dumps(
            {
                "updates": updates,
                "seconds": seconds,
                "updates_per_s": updates / seconds,
                "images_per_s": images / seconds,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

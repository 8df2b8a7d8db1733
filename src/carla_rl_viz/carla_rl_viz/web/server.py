"""``carla-rl viz web``: a small HTTP server for the live browser view (standard library only, no internet).

Routes:

- ``/`` and ``/static/<file>``: the page (``static/``: HTML, vanilla JS, CSS; nothing fetched from elsewhere)
- ``/api/envs``: the env labels the view can show
- ``/api/stream?env=LABEL``: Server-Sent Events: ``map`` and ``route`` when they change, ``episodes`` (the
  returns chart) when an episode ends, ``state`` (the latest step, traffic, camera sequence number) at most
  ``max_rate`` times a second. Latest wins: a slow browser skips steps, it never queues them.
- ``/api/camera?env=LABEL``: the newest camera image as JPEG, encoded when a browser asks for it

Each browser connection is served by its own thread; the ROS side only stores bytes (see :mod:`..live`).
Requests whose ``Host`` header names another host are refused (DNS rebinding: a web page elsewhere cannot
read the view through a name that resolves to 127.0.0.1).
"""

from __future__ import annotations

import json
import select
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from carla_rl_viz.live import EnvView, LiveNode

STATIC_DIR = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
KEEPALIVE_S = 10.0  # an SSE comment this often notices a closed browser tab even when no step arrives
LISTEN_BACKLOG = 64  # connections the kernel queues before accept: a few browsers open ~6 each at once
REQUEST_TIMEOUT_S = 10.0  # a socket read or write stalled this long ends its connection (and its thread)


class ViewServer(ThreadingHTTPServer):
    """The HTTP server; ``live`` is the node whose envs it shows."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, live: LiveNode, host: str = "127.0.0.1", port: int = 8080, max_rate: float = 30.0):
        self.live = live
        self.max_rate = max_rate
        self.stopping = threading.Event()
        self.static = {p.name: p for p in STATIC_DIR.iterdir() if p.suffix in CONTENT_TYPES}
        super().__init__((host, port), ViewHandler)
        bound_host, self.port = self.server_address[:2]
        self.allowed_hosts = {"127.0.0.1", "localhost", "[::1]", host, str(bound_host)}

    @property
    def url(self) -> str:
        host = self.server_address[0]
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{host}:{self.port}/"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that went away mid-response (a closed tab, a reload) is not an error; anything else is
        printed as socketserver does."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def shutdown(self) -> None:
        self.stopping.set()
        with self.live.changed:
            self.live.changed.notify_all()  # wake the streams so they see stopping
        super().shutdown()


class ViewHandler(BaseHTTPRequestHandler):
    server: ViewServer
    protocol_version = "HTTP/1.1"  # keep-alive: the camera is fetched many times a second
    timeout = REQUEST_TIMEOUT_S  # an idle keep-alive connection or a stalled browser does not hold a thread forever

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per camera frame would flood the terminal

    def do_GET(self) -> None:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        if host not in self.server.allowed_hosts:
            self._send(HTTPStatus.FORBIDDEN, b"unknown Host header\n", "text/plain")
            return
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        route = url.path
        if route in ("/", "/index.html"):
            self._static("index.html")
        elif route.startswith("/static/"):
            self._static(route[len("/static/") :])
        elif route == "/api/envs":
            self._json([{"label": label, "namespace": env.namespace} for label, env in self.server.live.envs.items()])
        elif route == "/api/stream":
            env = self._env(query)
            if env is not None:
                self._stream(env)
        elif route == "/api/camera":
            env = self._env(query)
            if env is not None:
                self._camera(env)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    # --- plain responses -------------------------------------------------------------------------------
    def _send(self, status: HTTPStatus, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, data: Any) -> None:
        self._send(HTTPStatus.OK, json.dumps(data).encode(), "application/json")

    def _static(self, name: str) -> None:
        path = self.server.static.get(name)  # only the files that were there at start: no path from the URL
        if path is None:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
            return
        self._send(HTTPStatus.OK, path.read_bytes(), CONTENT_TYPES[path.suffix])

    def _env(self, query: dict[str, str]) -> EnvView | None:
        envs = self.server.live.envs
        label = query.get("env") or next(iter(envs))
        if label not in envs:
            self._send(HTTPStatus.NOT_FOUND, f"no env {label!r} (known: {', '.join(envs)})\n".encode(), "text/plain")
            return None
        return envs[label]

    def _camera(self, env: EnvView) -> None:
        seq, jpeg = env.camera_jpeg()
        if jpeg is None:
            self._send(HTTPStatus.NO_CONTENT, b"", "image/jpeg")
        else:
            self._send(HTTPStatus.OK, jpeg, "image/jpeg", {"X-Camera-Seq": str(seq)})

    # --- the event stream ------------------------------------------------------------------------------
    def _stream(self, env: EnvView) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        live, server = self.server.live, self.server
        live.watch(+1)
        sent = {"map": 0, "route": 0, "episodes": 0, "step": 0}
        min_interval = 1.0 / server.max_rate if server.max_rate > 0 else 0.0
        last_sent = 0.0
        self._last_write = time.monotonic()
        try:
            while not server.stopping.is_set() and not self._client_gone():
                parts = env.read()
                if parts["map_version"] != sent["map"] and parts["map"] is not None:
                    self._event("map", parts["map"])
                    sent["map"] = parts["map_version"]
                if parts["route_version"] != sent["route"]:
                    self._event("route", {"points": parts["route"]})
                    sent["route"] = parts["route_version"]
                if parts["episode_version"] != sent["episodes"]:
                    self._event("episodes", parts["episodes"])
                    sent["episodes"] = parts["episode_version"]
                if parts["step_seq"] != sent["step"]:
                    wait = last_sent + min_interval - time.monotonic()
                    if wait > 0:  # throttled: sleep, then send whatever is newest by then
                        time.sleep(wait)
                        continue
                    state = env.snapshot()
                    if state is not None:
                        self._event("state", state)
                        sent["step"] = state["seq"]
                    last_sent = time.monotonic()
                if time.monotonic() - self._last_write > KEEPALIVE_S:
                    self._write(b": keepalive\n\n")
                with live.changed:
                    if env.step_seq == sent["step"] and not server.stopping.is_set():
                        live.changed.wait(timeout=1.0)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the tab closed
        finally:
            live.watch(-1)

    def _client_gone(self) -> bool:
        """The browser closed the stream (a tab closed, another env picked): its socket reads end-of-file."""
        readable, _, _ = select.select([self.connection], [], [], 0)
        if not readable:
            return False
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _event(self, kind: str, data: Any) -> None:
        self._write(f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode())

    def _write(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()
        self._last_write = time.monotonic()

"""The Foxglove WebSocket subprotocols a client may offer: foxglove-sdk's server accepts only ``foxglove.sdk.v1``
(400 to anything else), while Lichtblick, older Foxglove apps and ws-protocol clients offer only
``foxglove.websocket.v1``. Through our gate both names get the upgrade, the name they offered back and the
server's ``serverInfo``; a client that offers neither still gets the SDK's 400.

The clients are raw sockets (what a browser sends, byte for byte) and websocket-client (which checks the
handshake as a browser does: the accept key and a subprotocol it offered)."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct

import foxglove
import pytest
import websocket  # websocket-client

from carla_rl_viz.foxglove_stream import FOXGLOVE_ORIGINS, SUBPROTOCOLS, OriginGate
from carla_rl_viz.probe import start_viewer, stop_viewer, viewer_log

LEGACY = "foxglove.websocket.v1"


@pytest.fixture(scope="module")
def gate():
    """foxglove-sdk's server on a free port with the gate in front, as FoxgloveStream starts them."""
    context = foxglove.Context()
    server = foxglove.start_server(name="subprotocol-test", host="127.0.0.1", port=0, context=context)
    front = OriginGate("127.0.0.1", 0, server.port, FOXGLOVE_ORIGINS)
    yield front.port
    front.stop()
    server.stop()


def raw_upgrade(port: int, protocols: list[str]) -> tuple[bytes, dict[str, str], socket.socket, bytes]:
    """Send a browser's upgrade request offering ``protocols`` (one header, as browsers write it); return the
    status line, the response headers (names lower-cased), the open socket and what came after the head."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        "GET / HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
        f"Sec-WebSocket-Key: {key}",
        "Origin: https://app.foxglove.dev",
    ]
    lines += [f"Sec-WebSocket-Protocol: {', '.join(protocols)}"] if protocols else []
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status, *fields = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
    return status.encode(), headers, sock, rest


def read_text_frame(sock: socket.socket, buffer: bytes) -> str:
    """The first WebSocket text frame from the server (unmasked, not fragmented: what the SDK sends), after
    ``buffer`` (bytes already read)."""

    def take(n: int) -> bytes:
        nonlocal buffer
        while len(buffer) < n:
            chunk = sock.recv(65536)
            assert chunk, "the server closed the connection before a frame"
            buffer += chunk
        out, buffer = buffer[:n], buffer[n:]
        return out

    first, second = take(2)
    assert first & 0x0F == 0x1, f"opcode {first & 0x0F}, expected a text frame"
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", take(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", take(8))
    return take(length).decode()


def close(sock: socket.socket) -> None:
    """Send a (masked, empty) close frame, as a client must, then close the socket."""
    sock.sendall(bytes([0x88, 0x80]) + os.urandom(4))
    sock.close()


@pytest.mark.parametrize(
    "offered,chosen",
    [
        ([LEGACY], LEGACY),  # Lichtblick, older Foxglove apps, @foxglove/ws-protocol clients
        (["foxglove.sdk.v1"], "foxglove.sdk.v1"),  # the Foxglove app now, foxglove-sdk clients
        ([LEGACY, "foxglove.sdk.v1"], "foxglove.sdk.v1"),  # both names: the SDK's own
        (["unknown", LEGACY], LEGACY),
    ],
)
def test_each_name_gets_the_upgrade_and_the_server_info(gate, offered, chosen):
    status, headers, sock, rest = raw_upgrade(gate, offered)
    try:
        assert status.startswith(b"HTTP/1.1 101"), status
        assert headers.get("sec-websocket-protocol") == chosen
        info = json.loads(read_text_frame(sock, rest))
    finally:
        close(sock)
    assert info["op"] == "serverInfo" and info["name"] == "subprotocol-test"


@pytest.mark.parametrize("offered", [[], ["foxglove.websocket.v2"]])
def test_a_client_offering_neither_name_is_refused(gate, offered):
    status, _, sock, _ = raw_upgrade(gate, offered)
    sock.close()
    assert status.startswith(b"HTTP/1.1 400"), status


def test_the_viewer_serves_a_client_that_offers_only_the_first_name():
    """``carla-rl viz foxglove`` end to end, with websocket-client offering only ``foxglove.websocket.v1``."""
    assert LEGACY in SUBPROTOCOLS
    proc, url = start_viewer("foxglove", ["--port", "0"])
    try:
        ws = websocket.create_connection(url, subprotocols=[LEGACY], timeout=15)
        try:
            assert ws.getsubprotocol() == LEGACY
            info = json.loads(ws.recv())
        finally:
            ws.close()
        assert info["op"] == "serverInfo" and info["name"] == "carla-rl", info
    finally:
        assert stop_viewer(proc) == 0, viewer_log(proc)

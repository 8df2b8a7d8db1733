"""Bag files without a ROS graph: embedded definitions, splitting, compression, info, damaged bags."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from carla_msgs.msg import CarlaStatus, CarlaWorldInfo
from carla_rl_msgs.msg import Step
from rclpy.serialization import serialize_message
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from sensor_msgs.msg import Image

from carla_rl_bags import BagError
from carla_rl_bags.info import bag_info, format_info
from carla_rl_bags.reader import open_bag
from carla_rl_bags.recorder import SplitWriter
from carla_rl_bags.typestore import (
    OUR_PACKAGES,
    build_typestore,
    message_class,
    package_types,
    typestore_from_definitions,
)
from carla_rl_common import bridge
from carla_rl_common.bridge import BridgeTopics

INF = QosTime(9223372036, 854775807)
LATCHED = Qos(
    QosHistory.KEEP_LAST,
    1,
    QosReliability.RELIABLE,
    QosDurability.TRANSIENT_LOCAL,
    INF,
    INF,
    QosLiveliness.AUTOMATIC,
    INF,
    False,
)
T0 = 1_700_000_000_000_000_000
WORLD, STATUS_TOPIC, STEP = (f"/{t}" for t in (BridgeTopics().world_info, BridgeTopics().status, BridgeTopics().step))


# serialized once: CDR padding bytes are not guaranteed to be zero, so payloads compare to these very bytes
STATUS = [serialize_message(CarlaStatus(frame=i, fixed_delta_seconds=0.05, synchronous_mode=True)) for i in range(200)]


def status(i: int) -> bytes:
    return STATUS[i]


def write_bag(path: Path, n: int = 200, period_ns: int = 50_000_000, **options) -> SplitWriter:
    """A bag of n statuses at 20 Hz and one latched world_info, through the recorder's writer."""
    writer = SplitWriter(path, **options)
    world = writer.add_topic(WORLD, "carla_msgs/msg/CarlaWorldInfo", [LATCHED])
    st = writer.add_topic(STATUS_TOPIC, "carla_msgs/msg/CarlaStatus", [])
    writer.write(world, T0, serialize_message(CarlaWorldInfo(map_name="m", opendrive="<OpenDRIVE/>")))
    for i in range(n):
        writer.write(st, T0 + i * period_ns, status(i))
    writer.close()
    return writer


def read_with_rosbags(path: Path) -> list[tuple[str, int, bytes]]:
    with Reader(path) as reader:
        return [(c.topic, t, bytes(d)) for c, t, d in reader.messages()]


def test_embedded_definitions_hash_like_rosidl():
    """rosbags' RIHS01 of our types equals the hash rosidl generated for the installed classes."""
    store = build_typestore()
    share = Path(sys.prefix) / "share"
    checked = 0
    for package in OUR_PACKAGES:
        for msgtype in package_types(package):
            generated = share / package / "msg" / f"{msgtype.split('/')[-1]}.json"
            if not generated.is_file():
                pytest.skip(f"no rosidl type description at {generated}")
            hashes = {h["type_name"]: h["hash_string"] for h in json.loads(generated.read_text())["type_hashes"]}
            assert store.hash_rihs01(msgtype) == hashes[msgtype], msgtype
            checked += 1
    assert checked >= 20


def test_custom_types_decode_from_embedded_definitions_alone(tmp_path):
    step = Step(
        env_id="env_0",
        episode=3,
        step=7,
        frame=99,
        reward=0.25,
        measurement_names=["speed"],
        measurements=[1.5],
        image_names=["rgb"],
        reward_term_names=["route_progress"],
        reward_terms=[0.25],
    )
    step.images.append(bridge.numpy_to_image(np.full((4, 5, 3), 7, np.uint8), "bgr8"))
    step.control.steer = -0.5
    writer = SplitWriter(tmp_path / "bag")
    writer.write(writer.add_topic(STEP, "carla_rl_msgs/msg/Step", []), T0, serialize_message(step))
    writer.close()
    with Reader(tmp_path / "bag") as reader:
        (connection,) = reader.connections
        store = typestore_from_definitions([(connection.msgtype, "ros2msg", connection.msgdef.data)])
        decoded = store.deserialize_cdr(next(reader.messages())[2], "carla_rl_msgs/msg/Step")
    assert "carla_rl_msgs/msg/Step" in store.fielddefs and "carla_msgs/msg/CarlaEgoVehicleControl" in store.fielddefs
    assert (decoded.env_id, decoded.episode, decoded.step, decoded.frame) == ("env_0", 3, 7, 99)
    assert decoded.control.steer == -0.5 and list(decoded.measurements) == [1.5]
    assert decoded.images[0].encoding == "bgr8" and bytes(decoded.images[0].data) == bytes([7] * 60)


def test_message_class_only_for_installed_interfaces():
    assert message_class("carla_msgs/msg/CarlaStatus") is CarlaStatus
    for bad in ("os/msg/Path", "carla_msgs/srv/SpawnObject", "../x/msg/Y"):
        with pytest.raises(BagError):
            message_class(bad)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_split_by_size_into_one_bag_directory(tmp_path, storage):
    path = tmp_path / "run"
    writer = write_bag(path, storage=storage, compression="zstd", max_bytes=1500)
    names = sorted(p.name for p in path.iterdir())
    suffix = ".mcap" if storage == "mcap" else ".db3"
    assert names == ["metadata.yaml", *sorted(f"run_{i}{suffix}" for i in range(len(writer.closed)))]
    assert len(writer.closed) >= 3
    info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["message_count"] == 201 and info["storage_identifier"] == storage
    assert info["compression_mode"] == ("" if storage == "mcap" else "message")
    with Reader(path) as reader:  # rosbags reads the split bag as one
        assert reader.message_count == 201 and reader.topics[STATUS_TOPIC].msgcount == 200
    messages = read_with_rosbags(path)
    assert [d for t, _, d in messages if t == STATUS_TOPIC] == [status(i) for i in range(200)]
    with open_bag(path) as bag:
        assert bag.topics[WORLD].latched and not bag.topics[STATUS_TOPIC].latched
        assert bag.compression.startswith("zstd")


def test_split_by_duration(tmp_path):
    writer = write_bag(tmp_path / "run", n=100, max_duration_ns=1_000_000_000)  # 5 s of messages, 1 s files
    assert len(writer.closed) == 5
    assert [f["message_count"] for f in writer.closed] == [21, 20, 20, 20, 20]
    assert len(read_with_rosbags(tmp_path / "run")) == 101


def test_never_overwrites(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(BagError, match="exists already"):
        SplitWriter(tmp_path / "run")


def test_info_counts_rates_and_gaps(tmp_path):
    writer = SplitWriter(tmp_path / "run")
    st = writer.add_topic(STATUS_TOPIC, "carla_msgs/msg/CarlaStatus", [])
    stamps = [T0 + i * 50_000_000 for i in range(40)] + [T0 + 2_500_000_000 + i * 50_000_000 for i in range(20)]
    for i, t in enumerate(stamps):
        writer.write(st, t, status(i))
    writer.close()
    info = bag_info(tmp_path / "run")
    (topic,) = info["topics"]
    assert info["message_count"] == topic["count"] == 60 and topic["type"] == "carla_msgs/msg/CarlaStatus"
    assert topic["median_period_s"] == pytest.approx(0.05)
    assert topic["largest_gap_s"] == pytest.approx(0.55) and topic["largest_gap_at_s"] == pytest.approx(1.95)
    assert topic["gap_count"] == 1 and topic["gaps"][0]["length_s"] == pytest.approx(0.55)
    assert topic["frequency_hz"] == pytest.approx(59 / 3.45)
    text = format_info(info)
    assert STATUS_TOPIC in text and "carla_msgs/msg/CarlaStatus" in text and "60" in text


# --- damaged bags ------------------------------------------------------------------------------------------
def big_bag(path: Path) -> tuple[Path, list[bytes]]:
    """A single-file MCAP bag of 25 images in ~5 chunks (rosbags closes a chunk per MiB)."""
    writer = SplitWriter(path)
    handle = writer.add_topic("/cam", "sensor_msgs/msg/Image", [])
    written = []
    for i in range(25):
        image = Image(height=1, width=200_000, encoding="mono8", step=200_000)
        image.data = bytes([i]) * 200_000
        written.append(serialize_message(image))
        writer.write(handle, T0 + i * 50_000_000, written[-1])
    writer.close()
    return path / "run_0.mcap", written


def test_truncated_mcap_reads_up_to_the_cut(tmp_path):
    storage, written = big_bag(tmp_path / "run")
    data = storage.read_bytes()
    storage.write_bytes(data[: int(len(data) * 0.7)])
    with pytest.raises(BagError, match="run_0.mcap"):
        open_bag(tmp_path / "run", salvage=False)
    with open_bag(tmp_path / "run") as bag:
        assert any("run_0.mcap" in p and "cut short" in p for p in bag.problems), bag.problems
        frames = [m.data for m in bag.messages()]
    assert 10 <= len(frames) < 25  # the complete chunks before the cut
    assert frames == written[: len(frames)]
    info = bag_info(tmp_path / "run")
    assert info["message_count"] == len(frames) and info["problems"]


def test_wrong_metadata_names_the_file_and_the_mcap_is_still_read(tmp_path):
    write_bag(tmp_path / "run", n=30)
    (tmp_path / "run" / "metadata.yaml").write_text("rosbag2_bagfile_information: {version: 9, storage: [\n")
    with pytest.raises(BagError, match="metadata.yaml"):
        open_bag(tmp_path / "run", salvage=False)
    with open_bag(tmp_path / "run") as bag:
        assert "metadata.yaml" in bag.problems[0]
        assert bag.topics[STATUS_TOPIC].count == 30 and bag.topics[WORLD].latched
        assert [m.data for m in bag.messages([STATUS_TOPIC])] == [status(i) for i in range(30)]


def test_missing_storage_file_and_not_a_bag(tmp_path):
    write_bag(tmp_path / "run", n=5, storage="sqlite3")
    (tmp_path / "run" / "run_0.db3").unlink()
    with pytest.raises(BagError, match="run_0.db3.*does not exist"):
        open_bag(tmp_path / "run")
    (tmp_path / "run" / "metadata.yaml").unlink()
    with pytest.raises(BagError, match="metadata.yaml: missing"):
        open_bag(tmp_path / "run")
    (tmp_path / "junk.mcap").write_bytes(b"not an mcap file at all")
    with pytest.raises(BagError, match="junk.mcap"):
        open_bag(tmp_path / "junk.mcap")
    with pytest.raises(BagError, match="no such bag"):
        open_bag(tmp_path / "nothing")


def test_unknown_type_is_listed_and_refused_by_name(tmp_path):
    """A type that is not installed: info still lists it; decoding or replaying it names the type."""
    definition = "int32 value\n"
    with Writer(tmp_path / "run", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/odd", "nope_msgs/msg/Odd", msgdef=definition, rihs01="RIHS01_" + "0" * 64)
        writer.write(conn, T0, b"\x00\x01\x00\x00\x2a\x00\x00\x00")
    info = bag_info(tmp_path / "run")
    assert info["topics"][0]["type"] == "nope_msgs/msg/Odd" and info["message_count"] == 1
    with pytest.raises(BagError, match="nope_msgs/msg/Odd"):
        message_class("nope_msgs/msg/Odd")
    with open_bag(tmp_path / "run") as bag:
        meta = bag.topics["/odd"]
        store = typestore_from_definitions([(meta.msgtype, meta.msgdef_format, meta.msgdef)])
        assert store.deserialize_cdr(next(bag.messages()).data, "nope_msgs/msg/Odd").value == 42


def status_bag(path: Path, n: int = 4000) -> Path:
    """A one-file bag of n small statuses (many chunks: the recorder writes one per second of receive time)."""
    writer = SplitWriter(path)
    handle = writer.add_topic(STATUS_TOPIC, "carla_msgs/msg/CarlaStatus", [])
    for i in range(n):
        writer.write(handle, T0 + i * 50_000_000, STATUS[i % len(STATUS)])
    writer.close()
    return path / f"{path.name}_0.mcap"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "carla_rl_bringup.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_flipped_bytes_mid_file_are_found_and_the_rest_recovered(tmp_path):
    """100 flipped bytes mid-file: before, rosbags stopped there (or read on, and `bag info` said "no problems"
    with messages lost); now the damage is reported, the next chunk the summary lists is read on, and the
    tools exit non-zero."""
    storage = status_bag(tmp_path / "run")
    data = bytearray(storage.read_bytes())
    middle = len(data) // 2
    for i in random.Random(1).sample(range(middle - 1000, middle + 1000), 100):
        data[i] ^= 0xFF
    storage.write_bytes(bytes(data))
    info = bag_info(tmp_path / "run")
    assert info["problems"] and 3800 <= info["message_count"] < 4000, (info["message_count"], info["problems"])
    assert any("metadata.yaml: lists 4000 messages" in p for p in info["problems"]), info["problems"]
    result = cli("bag", "info", str(tmp_path / "run"))
    assert result.returncode == 1 and "Problem:" in result.stdout and "Traceback" not in result.stderr
    assert f"Messages:     {info['message_count']}" in result.stdout


def test_a_damaged_summary_is_no_traceback(tmp_path):
    """A length in the summary made rosbags allocate exabytes: `bag info`, `evaluate-bag` and `replay` died of
    a MemoryError. Now the data section is read without the summary, and the damage is named."""
    storage = status_bag(tmp_path / "run", n=400)
    data = bytearray(storage.read_bytes())
    summary_start = int.from_bytes(data[-37 + 9 : -37 + 17], "little")
    data[summary_start + 1 : summary_start + 9] = (2**62).to_bytes(8, "little")
    storage.write_bytes(bytes(data))
    with open_bag(tmp_path / "run") as bag:
        assert [m.data for m in bag.messages()] == [STATUS[i % len(STATUS)] for i in range(400)]
        assert any("summary" in p for p in bag.problems), bag.problems
    info = bag_info(tmp_path / "run")
    assert info["message_count"] == 400 and info["problems"]
    for args in (["bag", "info", "--json"], ["replay", "--rate", "0"]):
        result = cli(*args, str(tmp_path / "run"))
        assert result.returncode == 1 and "Traceback" not in result.stderr + result.stdout, (args, result.stderr)
    result = cli("evaluate-bag", str(tmp_path / "run"), "--out", str(tmp_path / "report"))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr


def test_chunk_crcs_and_listed_counts_are_checked(tmp_path):
    """rosbags writes no chunk CRCs (0: none); a writer that does gets them checked, and the message counts
    of metadata.yaml are compared with what is readable."""
    storage = status_bag(tmp_path / "run", n=100)
    data = bytearray(storage.read_bytes())
    chunk = data.index(b"\x06", 8 + 9 + int.from_bytes(data[9:17], "little"))  # the first record after the header
    records = int.from_bytes(data[chunk + 1 : chunk + 9], "little")
    body = data[chunk + 9 : chunk + 9 + records]
    compressed = body[28 + 4 + int.from_bytes(body[28:32], "little") + 8 :]
    assert int.from_bytes(body[16:24], "little") == len(compressed)  # uncompressed: the CRC is of these bytes
    crc_at = chunk + 9 + 24
    data[crc_at : crc_at + 4] = zlib.crc32(compressed).to_bytes(4, "little")
    storage.write_bytes(bytes(data))
    assert bag_info(tmp_path / "run")["problems"] == []  # the right CRC
    data[crc_at] ^= 0x01
    storage.write_bytes(bytes(data))
    problems = bag_info(tmp_path / "run")["problems"]
    assert any(f"chunk at byte {chunk} is damaged (CRC" in p for p in problems), problems
    data[crc_at] ^= 0x01
    storage.write_bytes(bytes(data))
    metadata = tmp_path / "run" / "metadata.yaml"
    metadata.write_text(metadata.read_text().replace("message_count: 100", "message_count: 120"))
    problems = bag_info(tmp_path / "run")["problems"]
    assert any(f"lists 120 messages of {STATUS_TOPIC}, 100 are readable" in p for p in problems), problems

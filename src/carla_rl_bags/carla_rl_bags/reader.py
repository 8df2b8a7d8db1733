"""Read rosbag2 bags (MCAP or sqlite3, one storage file or split into several), damaged ones included.

An intact bag is read with ``rosbags``. When a bag is damaged -- ``metadata.yaml`` missing or invalid, an MCAP
file cut short (a recorder killed, a copy interrupted), a corrupt chunk -- :func:`open_bag` either raises a
:class:`BagError` naming the file and the problem (``salvage=False``), or reads what the storage still allows
and lists the problems in :attr:`Bag.problems`: MCAP files are self-describing, so they are scanned record by
record up to the first damaged one, without the index or ``metadata.yaml``. A damaged sqlite3 file cannot be
salvaged this way and always raises.
"""

from __future__ import annotations

import mmap
import re
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import NamedTuple

import yaml
from lz4.frame import decompress as lz4_decompress
from rosbags.interfaces import Qos, QosDurability
from rosbags.rosbag2 import Reader
from rosbags.rosbag2.errors import ReaderError
from rosbags.rosbag2.metadata import parse_qos

from carla_rl_bags import BagError

if sys.version_info >= (3, 14):  # pragma: no cover - the standard library's zstd, as rosbags uses it
    from compression import zstd
else:
    from backports import zstd

MCAP_MAGIC = b"\x89MCAP0\r\n"
OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK, OP_DATA_END = 0x02, 0x03, 0x04, 0x05, 0x06, 0x0F
DECOMPRESS = {
    "": lambda data, size: bytes(data),
    "zstd": lambda data, size: zstd.decompress(data),
    "lz4": lambda data, size: lz4_decompress(data),
}


class RawMessage(NamedTuple):
    """One recorded message: topic, receive time (ns since the epoch, rosbag2's timestamp) and CDR bytes."""

    topic: str
    timestamp: int
    data: bytes


@dataclass(frozen=True)
class TopicMeta:
    """What a bag records about one topic."""

    name: str
    msgtype: str
    count: int
    qos: tuple[Qos, ...] = ()
    msgdef: str = ""  # the embedded definition ("" when the bag carries none)
    msgdef_format: str = ""  # ros2msg | ros2idl

    @property
    def latched(self) -> bool:
        """Offered TRANSIENT_LOCAL (like /carla/world_info): a late subscriber still gets the last message."""
        return any(q.durability == QosDurability.TRANSIENT_LOCAL for q in self.qos)


@dataclass
class Bag:
    """An open bag: its topics, time range and messages in time order (per storage file)."""

    path: Path
    storage: str  # mcap | sqlite3
    files: list[Path]
    topics: dict[str, TopicMeta]
    start_ns: int
    end_ns: int  # the last message's timestamp
    compression: str  # e.g. "zstd (mcap chunks)", "zstd (message)", "" for none
    problems: list[str] = field(default_factory=list)
    _reader: Reader | None = None
    _salvage: list[_McapScan] = field(default_factory=list)

    def messages(
        self, topics: Iterable[str] | None = None, start_ns: int | None = None, stop_ns: int | None = None
    ) -> Iterator[RawMessage]:
        """Messages of ``topics`` (all when None) with ``start_ns <= timestamp < stop_ns``."""
        wanted = set(self.topics) if topics is None else set(topics) & set(self.topics)
        lo, hi = start_ns if start_ns is not None else 0, stop_ns if stop_ns is not None else 2**63 - 1
        if self._reader is not None:
            connections = [c for c in self._reader.connections if c.topic in wanted]
            if not connections:
                return
            try:
                for connection, timestamp, data in self._reader.messages(connections, start_ns, stop_ns):
                    yield RawMessage(connection.topic, timestamp, data if isinstance(data, bytes) else bytes(data))
            except ReaderError as exc:
                raise BagError(f"{self.path}: {exc}") from exc
            return
        for scan in self._salvage:
            for message in scan.messages():
                if message.topic in wanted and lo <= message.timestamp < hi:
                    yield message

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> Bag:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_bag(path: Path | str, salvage: bool = True) -> Bag:
    """Open a bag directory (or a single ``.mcap`` / ``.db3`` file).

    With ``salvage`` a damaged MCAP bag opens with what is readable and the damage in ``problems``; without
    it, or when nothing is readable, a BagError names the file and what is wrong.
    """
    path = Path(path)
    if not path.exists():
        raise BagError(f"{path}: no such bag (file or directory)")
    try:
        return _open_intact(path)
    except (ReaderError, FileNotFoundError, OSError, KeyError, ValueError, AttributeError, TypeError) as exc:
        problem = _describe(path, exc)
    if not salvage:
        raise BagError(problem)
    found = [*path.glob("*.mcap"), *path.glob("*/*.mcap")] if path.is_dir() else [path]
    files = sorted((f for f in found if f.suffix == ".mcap"), key=_split_order)
    if not files:
        raise BagError(problem)
    return _open_salvaged(path, files, problem)


def _describe(path: Path, exc: BaseException) -> str:
    """The problem of a bag rosbags refused, naming the file it is in (metadata.yaml or a storage file)."""
    text = str(exc).strip()
    if not path.is_dir():
        return f"{path}: {text}"
    metadata = path / "metadata.yaml"
    if isinstance(exc, FileNotFoundError) and not metadata.exists():
        return f"{metadata}: missing (the recording was not closed, or this is not a bag)"
    for storage in _listed_files(path):
        try:
            with Reader(storage):
                pass
        except (ReaderError, OSError, ValueError, KeyError) as storage_exc:
            return f"{storage}: {storage_exc} (cut short, or not {storage.suffix[1:]})"
    return f"{metadata}: {text}"


def _split_order(path: Path) -> list[int | str]:
    """Numbered storage files in numeric order (``run_2.mcap`` before ``run_10.mcap``)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _listed_files(path: Path) -> list[Path]:
    """The storage files metadata.yaml lists (none when it does not parse)."""
    try:
        return _storage_files(path)[0]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return []


def _open_intact(path: Path) -> Bag:
    reader = Reader(path)
    reader.open()
    try:
        topics: dict[str, TopicMeta] = {}
        for c in reader.connections:
            meta = TopicMeta(
                c.topic,
                c.msgtype,
                c.msgcount,
                tuple(c.ext.offered_qos_profiles),
                c.msgdef.data,
                {"MSG": "ros2msg", "IDL": "ros2idl"}.get(c.msgdef.format.name, ""),
            )
            if c.topic in topics:  # one topic recorded under several connections: counts add up
                meta = TopicMeta(
                    c.topic, c.msgtype, topics[c.topic].count + c.msgcount, meta.qos, meta.msgdef, meta.msgdef_format
                )
            topics[c.topic] = meta
        files, storage = _storage_files(path)
        compression = _compression(reader)
        count = reader.message_count
        return Bag(
            path,
            storage,
            files,
            topics,
            reader.start_time if count else 0,
            reader.end_time - 1 if count else 0,
            compression,
            _reader=reader,
        )
    except BaseException:
        reader.close()
        raise


def _storage_files(path: Path) -> tuple[list[Path], str]:
    if not path.is_dir():
        return [path], "mcap" if path.suffix == ".mcap" else "sqlite3"
    info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    return [path / PurePath(p).name for p in info["relative_file_paths"]], str(info["storage_identifier"])


def _compression(reader: Reader) -> str:
    """How the bag is compressed: rosbag2's file/message modes, or MCAP chunk compression."""
    if reader.compression_mode:
        return f"{reader.compression_format} ({reader.compression_mode})"
    storages = getattr(reader.storage, "storages", [reader.storage])
    chunk_formats = {c.compression for s in storages for c in getattr(s, "chunks", []) if c.compression}
    return f"{'/'.join(sorted(chunk_formats))} (mcap chunks)" if chunk_formats else ""


def _open_salvaged(path: Path, files: list[Path], problem: str) -> Bag:
    scans = [_McapScan(f) for f in files]
    topics: dict[str, TopicMeta] = {}
    for scan in scans:
        for name, meta in scan.topics.items():
            count = meta.count + (topics[name].count if name in topics else 0)
            topics[name] = TopicMeta(name, meta.msgtype, count, meta.qos, meta.msgdef, meta.msgdef_format)
    times = [t for s in scans if s.count for t in (s.start_ns, s.end_ns)]
    problems = [problem] + [s.problem for s in scans if s.problem]
    formats = {s.compression for s in scans if s.compression}
    if not any(s.count for s in scans) and not topics:
        raise BagError("; ".join(problems) + "; nothing in it is readable")
    return Bag(
        path,
        "mcap",
        files,
        topics,
        min(times, default=0),
        max(times, default=0),
        f"{'/'.join(sorted(formats))} (mcap chunks)" if formats else "",
        problems,
        _salvage=scans,
    )


class _Cut(Exception):
    """A record runs past the end of its buffer (the file was cut) or is malformed."""


def _u16(b: memoryview, pos: int) -> int:
    return int.from_bytes(b[pos : pos + 2], "little")


def _u32(b: memoryview, pos: int) -> int:
    return int.from_bytes(b[pos : pos + 4], "little")


def _u64(b: memoryview, pos: int) -> int:
    return int.from_bytes(b[pos : pos + 8], "little")


def _string(b: memoryview, pos: int) -> tuple[str, int]:
    size = _u32(b, pos)
    if pos + 4 + size > len(b):
        raise _Cut(f"string of {size} bytes runs past its record")
    return bytes(b[pos + 4 : pos + 4 + size]).decode(), pos + 4 + size


class _McapScan:
    """Reads an MCAP file front to back without its summary, stopping at the first damaged record.

    Schemas and channels precede the messages that use them (the format requires it), so the readable
    prefix of a cut file is fully decodable. Damaged chunks (bad CRC, undecompressable) are skipped and
    reported; a record cut short ends the scan.
    """

    def __init__(self, path: Path):
        self.path = path
        self.schemas: dict[int, tuple[str, str, str]] = {}  # id -> (msgtype, encoding, definition)
        self.channels: dict[int, tuple[str, str, tuple[Qos, ...]]] = {}  # id -> (topic, msgtype, qos)
        self.counts: dict[int, int] = {}
        self.count, self.start_ns, self.end_ns = 0, 2**63 - 1, 0
        self.compression = ""
        self.problem = ""
        for message in self._scan(index_only=True):
            self.count += 1
            self.start_ns, self.end_ns = min(self.start_ns, message.timestamp), max(self.end_ns, message.timestamp)

    @property
    def topics(self) -> dict[str, TopicMeta]:
        out: dict[str, TopicMeta] = {}
        for cid, (topic, msgtype, qos) in self.channels.items():
            schema = next((s for s in self.schemas.values() if s[0] == msgtype), ("", "", ""))
            count = self.counts.get(cid, 0) + (out[topic].count if topic in out else 0)
            out[topic] = TopicMeta(topic, msgtype, count, qos, schema[2], schema[1])
        return out

    def messages(self) -> Iterator[RawMessage]:
        yield from self._scan(index_only=False)

    def _scan(self, index_only: bool) -> Iterator[RawMessage]:
        with self.path.open("rb") as f:
            size = f.seek(0, 2)
            if size < len(MCAP_MAGIC) or not _has_magic(f):
                self.problem = f"{self.path}: not an MCAP file (no MCAP magic at its start)"
                return
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                buf = memoryview(mm)
                try:
                    yield from self._records(buf, len(MCAP_MAGIC), size, index_only, top=True)
                except _Cut as cut:
                    if index_only:
                        self.problem = (
                            f"{self.path}: cut short or damaged after byte {cut.args[0]} of {size} "
                            f"({cut.args[1]}); read the {self.count} messages before it"
                        )
                finally:
                    buf.release()

    def _records(self, buf: memoryview, pos: int, end: int, index_only: bool, top: bool) -> Iterator[RawMessage]:
        while pos < end:
            if pos + 9 > end:
                raise _Cut(pos, "a record header is cut off")
            op, length = buf[pos], _u64(buf, pos + 1)
            body_start, body_end = pos + 9, pos + 9 + length
            if body_end > end:
                raise _Cut(pos, f"a record of {length} bytes is cut off")
            if top and op in (OP_DATA_END, OP_FOOTER):
                return
            try:
                yield from self._record(op, buf[body_start:body_end], pos, index_only)
            except _Cut as exc:
                raise _Cut(pos, exc.args[-1]) from None
            pos = body_end

    def _record(self, op: int, body: memoryview, pos: int, index_only: bool) -> Iterator[RawMessage]:
        if op == OP_SCHEMA:
            sid = _u16(body, 0)
            name, p = _string(body, 2)
            encoding, p = _string(body, p)
            self.schemas[sid] = (name, encoding, bytes(body[p + 4 : p + 4 + _u32(body, p)]).decode())
        elif op == OP_CHANNEL:
            cid, sid = _u16(body, 0), _u16(body, 2)
            topic, p = _string(body, 4)
            _, p = _string(body, p)
            self.channels[cid] = (topic, self.schemas.get(sid, ("",))[0], _channel_qos(body[p:]))
        elif op == OP_MESSAGE:
            cid, timestamp = _u16(body, 0), _u64(body, 6)
            if cid in self.channels:
                if index_only:
                    self.counts[cid] = self.counts.get(cid, 0) + 1
                yield RawMessage(self.channels[cid][0], timestamp, b"" if index_only else bytes(body[22:]))
        elif op == OP_CHUNK:
            yield from self._chunk(body, pos, index_only)

    def _chunk(self, body: memoryview, pos: int, index_only: bool) -> Iterator[RawMessage]:
        uncompressed_size, crc = _u64(body, 16), _u32(body, 24)
        compression, p = _string(body, 28)
        records = body[p + 8 : p + 8 + _u64(body, p)]
        try:
            data = DECOMPRESS[compression](records, uncompressed_size)
            if len(data) != uncompressed_size or (crc and zlib.crc32(data) != crc):
                raise ValueError("size or CRC mismatch")
        except (KeyError, ValueError, RuntimeError, zstd.ZstdError) as exc:
            if index_only:
                self.problem = f"{self.path}: chunk at byte {pos} is damaged ({exc!r}); its messages are skipped"
            return
        self.compression = self.compression or compression
        inner = memoryview(data)
        yield from self._records(inner, 0, len(inner), index_only, top=False)


def _has_magic(f) -> bool:
    f.seek(0)
    return f.read(len(MCAP_MAGIC)) == MCAP_MAGIC


def _channel_qos(metadata: memoryview) -> tuple[Qos, ...]:
    """The offered QoS profiles rosbag2 keeps in a channel's metadata map."""
    end, p = 4 + _u32(metadata, 0), 4
    while p < end:
        key, p = _string(metadata, p)
        value, p = _string(metadata, p)
        if key == "offered_qos_profiles":
            return tuple(parse_qos(value))
    return ()

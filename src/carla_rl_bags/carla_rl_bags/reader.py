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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath
from typing import NamedTuple

import yaml
from lz4.frame import decompress as lz4_decompress
from rosbags.interfaces import Qos, QosDurability
from rosbags.rosbag2 import Reader
from rosbags.rosbag2.errors import ReaderError
from rosbags.rosbag2.metadata import parse_qos

from carla_rl_bags import BagError
from carla_rl_bags.progress import progress_bar

if sys.version_info >= (3, 14):  # pragma: no cover - the standard library's zstd, as rosbags uses it
    from compression import zstd
else:
    from backports import zstd

MCAP_MAGIC = b"\x89MCAP0\r\n"
OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK, OP_MESSAGE_INDEX = 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
OP_CHUNK_INDEX, OP_STATISTICS, OP_DATA_END = 0x08, 0x0B, 0x0F
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
    scans: list[McapScan] = field(default_factory=list)  # the checking scan of each MCAP file (see open_bag)
    _reader: Reader | None = None
    _salvage: list[McapScan] = field(default_factory=list)  # read from the scans (rosbags could not, or lied)

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
            except (ReaderError, MemoryError, OverflowError) as exc:
                raise BagError(f"{self.path}: {exc or 'damaged (a length beyond the file)'}") from None
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


def open_bag(path: Path | str, salvage: bool = True, progress: bool = False) -> Bag:
    """Open a bag directory (or a single ``.mcap`` / ``.db3`` file).

    Every MCAP file is scanned and checked (:class:`McapScan`: chunk CRCs, message indexes, the summary, the
    counts ``metadata.yaml`` lists), so a bag that rosbags opens but that lost messages is not called clean.
    With ``salvage`` a damaged MCAP bag opens with what is readable and the damage in ``problems``; without
    it, or when nothing is readable, a BagError names the file and what is wrong. ``progress``: a bar of the
    checking scan on a terminal (:func:`carla_rl_bags.progress.progress_bar`).
    """
    path = Path(path)
    if not path.exists():
        raise BagError(f"{path}: no such bag (file or directory)")
    try:
        bag = _open_intact(path)
    except (ReaderError, FileNotFoundError, OSError, KeyError, ValueError, AttributeError, TypeError) as exc:
        problem = _describe(path, exc)
    except (MemoryError, OverflowError):  # a damaged length in the summary: rosbags tried to read exabytes
        problem = f"{path}: the MCAP summary (index) is damaged"
    else:
        if bag.storage == "mcap":
            _verify(bag, salvage, progress)
        return bag
    if not salvage:
        raise BagError(problem)
    found = [*path.glob("*.mcap"), *path.glob("*/*.mcap")] if path.is_dir() else [path]
    files = sorted((f for f in found if f.suffix == ".mcap"), key=_split_order)
    if not files:
        raise BagError(problem)
    return _open_salvaged(path, files, problem, progress)


def _verify(bag: Bag, salvage: bool, progress: bool = False) -> None:
    """Scan the MCAP files of a bag rosbags opened and check them (see :class:`McapScan`) and the message counts
    of its index (``metadata.yaml`` and the summaries) against what is readable. When something does not hold,
    the bag is read from the scans from then on and the findings are in ``problems`` (``salvage``) or raised."""
    total = sum(meta.count for meta in bag.topics.values())
    with progress_bar(f"checking {bag.path.name}", total, enabled=progress) as bar:
        bag.scans = scans = [McapScan(f, bar.update) for f in bag.files]
    problems = [p for s in scans for p in s.problems]
    readable: dict[str, int] = {}
    for scan in scans:
        for name, meta in scan.topics.items():
            readable[name] = readable.get(name, 0) + meta.count
    for name in sorted(set(readable) | set(bag.topics)):
        listed, found = (bag.topics[name].count if name in bag.topics else 0), readable.get(name, 0)
        if listed != found:
            where = bag.path / "metadata.yaml" if bag.path.is_dir() else bag.path
            problems.append(f"{where}: lists {listed} messages of {name}, {found} are readable")
    if not problems:
        return
    bag.close()
    if not salvage:
        raise BagError("; ".join(problems))
    bag.problems += problems
    bag._salvage = scans
    bag.topics = {name: replace(meta, count=readable.get(name, 0)) for name, meta in bag.topics.items()}
    times = [t for s in scans if s.count for t in (s.start_ns, s.end_ns)]
    bag.start_ns, bag.end_ns = min(times, default=0), max(times, default=0)


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


def _open_salvaged(path: Path, files: list[Path], problem: str, progress: bool = False) -> Bag:
    with progress_bar(f"reading {path.name}", enabled=progress) as bar:
        scans = [McapScan(f, bar.update) for f in files]
    topics: dict[str, TopicMeta] = {}
    for scan in scans:
        for name, meta in scan.topics.items():
            count = meta.count + (topics[name].count if name in topics else 0)
            topics[name] = TopicMeta(name, meta.msgtype, count, meta.qos, meta.msgdef, meta.msgdef_format)
    times = [t for s in scans if s.count for t in (s.start_ns, s.end_ns)]
    problems = [problem] + [p for s in scans for p in s.problems]
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
        scans,
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


class McapScan:
    """Reads an MCAP file front to back without trusting its summary, and checks what it reads.

    Schemas and channels precede the messages that use them (the format requires it), so the readable
    prefix of a cut file is fully decodable. Checked: each chunk's CRC (when the writer stored one; rosbags
    stores none) and decompression, each chunk's messages against the message index records behind it, the
    summary's statistics against what was read, and that there is a summary at all (a recording that was not
    closed has none). Damaged chunks are skipped; a record cut short ends the scan. Every finding is in
    ``problems``, naming the file and byte offset. ``progress`` is called once per message read (a bar's update).
    """

    def __init__(self, path: Path, progress: Callable[[], object] | None = None):
        self.path = path
        self.schemas: dict[int, tuple[str, str, str]] = {}  # id -> (msgtype, encoding, definition)
        self.channels: dict[int, tuple[str, str, tuple[Qos, ...]]] = {}  # id -> (topic, msgtype, qos)
        self.counts: dict[int, int] = {}
        self.stamps: dict[int, list[int]] = {}  # channel id -> receive times, in file order
        self.count, self.start_ns, self.end_ns = 0, 2**63 - 1, 0
        self.compression = ""
        self.problems: list[str] = []
        self.chunks = 0
        self._chunk_counts: dict[int, int] = {}  # messages read per channel in the chunk just read
        self._index_counts: dict[int, int] = {}  # what the message index records behind it list
        self._index_at = 0
        self._chunk_starts: list[int] = []  # from the summary's chunk index, where it is intact
        statistics = self._read_summary()
        for message in self._scan(index_only=True):
            if progress is not None:
                progress()
            self.count += 1
            self.start_ns, self.end_ns = min(self.start_ns, message.timestamp), max(self.end_ns, message.timestamp)
        self._check_chunk_index()
        if statistics is not None:
            self._check_statistics(*statistics)

    @property
    def topics(self) -> dict[str, TopicMeta]:
        out: dict[str, TopicMeta] = {}
        for cid, (topic, msgtype, qos) in self.channels.items():
            schema = next((s for s in self.schemas.values() if s[0] == msgtype), ("", "", ""))
            count = self.counts.get(cid, 0) + (out[topic].count if topic in out else 0)
            out[topic] = TopicMeta(topic, msgtype, count, qos, schema[2], schema[1])
        return out

    def topic_stamps(self) -> dict[str, list[int]]:
        """Receive times of every readable message per topic."""
        out: dict[str, list[int]] = {}
        for cid, stamps in self.stamps.items():
            out.setdefault(self.channels[cid][0], []).extend(stamps)
        return out

    def messages(self) -> Iterator[RawMessage]:
        yield from self._scan(index_only=False)

    def _scan(self, index_only: bool) -> Iterator[RawMessage]:
        with self.path.open("rb") as f:
            size = f.seek(0, 2)
            if size < len(MCAP_MAGIC) or not _has_magic(f):
                if index_only:
                    self.problems.append(f"{self.path}: not an MCAP file (no MCAP magic at its start)")
                return
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                buf = memoryview(mm)
                try:
                    yield from self._records(buf, len(MCAP_MAGIC), size, index_only, top=True)
                except _Cut as cut:
                    if index_only:
                        self.problems.append(
                            f"{self.path}: cut short or damaged after byte {cut.args[0]} of {size} "
                            f"({cut.args[1]}); read the {self.count} messages before it"
                        )
                finally:
                    buf.release()

    def _records(self, buf: memoryview, pos: int, end: int, index_only: bool, top: bool) -> Iterator[RawMessage]:
        while pos < end:
            try:
                if pos + 9 > end:
                    raise _Cut("a record header is cut off")
                op, length = buf[pos], _u64(buf, pos + 1)
                body_start, body_end = pos + 9, pos + 9 + length
                if body_end > end:
                    raise _Cut(f"a record of {length} bytes is cut off")
                if top and op in (OP_DATA_END, OP_FOOTER):
                    return
                if top and index_only and op != OP_MESSAGE_INDEX:
                    self._check_chunk_index()
                if top and op == OP_CHUNK:
                    yield from self._chunk(buf[body_start:body_end], pos, index_only)
                else:
                    yield from self._record(op, buf[body_start:body_end], index_only)
            except _Cut as exc:
                resume = next((c for c in self._chunk_starts if c > pos), None) if top else None
                if resume is None:
                    raise _Cut(pos, exc.args[-1]) from None
                if index_only:  # the summary's chunk index says where the next chunk starts: go on there
                    self.problems.append(
                        f"{self.path}: damaged at byte {pos} ({exc.args[-1]}); went on at byte {resume}, "
                        "the next chunk the summary lists"
                    )
                pos = resume
                continue
            pos = body_end

    def _record(self, op: int, body: memoryview, index_only: bool) -> Iterator[RawMessage]:
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
            if len(body) < 22:
                raise _Cut(f"a message record of {len(body)} bytes (at least 22)")
            cid, timestamp = _u16(body, 0), _u64(body, 6)
            if cid in self.channels:
                if index_only:
                    self.counts[cid] = self.counts.get(cid, 0) + 1
                    self.stamps.setdefault(cid, []).append(timestamp)
                    self._chunk_counts[cid] = self._chunk_counts.get(cid, 0) + 1
                yield RawMessage(self.channels[cid][0], timestamp, b"" if index_only else bytes(body[22:]))
        elif op == OP_MESSAGE_INDEX and index_only:
            cid = _u16(body, 0)
            self._index_counts[cid] = self._index_counts.get(cid, 0) + _u32(body, 2) // 16

    def _chunk(self, body: memoryview, pos: int, index_only: bool) -> Iterator[RawMessage]:
        uncompressed_size, crc = _u64(body, 16), _u32(body, 24)
        compression, p = _string(body, 28)
        records = body[p + 8 : p + 8 + _u64(body, p)]
        if index_only:
            self.chunks += 1
            self._chunk_counts, self._index_counts, self._index_at = {}, {}, pos
        try:
            data = DECOMPRESS[compression](records, uncompressed_size)
            if len(data) != uncompressed_size:
                raise ValueError(f"{len(data)} bytes, the chunk says {uncompressed_size}")
            if crc and zlib.crc32(data) != crc:
                raise ValueError(f"CRC {zlib.crc32(data):08x}, the chunk says {crc:08x}")
        except (KeyError, ValueError, RuntimeError, MemoryError, zstd.ZstdError) as exc:
            if index_only:
                self.problems.append(f"{self.path}: chunk at byte {pos} is damaged ({exc}); its messages are skipped")
                self._index_counts = {}  # nothing of it was read: its index is not compared
                self._index_at = -1
            return
        self.compression = self.compression or compression
        inner = memoryview(data)
        try:
            yield from self._records(inner, 0, len(inner), index_only, top=False)
        except _Cut as cut:  # the chunk's outer record is whole: go on with the next one
            if index_only:
                self.problems.append(
                    f"{self.path}: chunk at byte {pos} is damaged inside ({cut.args[-1]} at its byte "
                    f"{cut.args[0]}); its messages after that are lost"
                )

    def _check_chunk_index(self) -> None:
        """Compare the chunk just read with the message index records that followed it (then forget both)."""
        if self._index_at > 0 and self._index_counts:
            for cid in sorted(set(self._index_counts) | set(self._chunk_counts)):
                listed, found = self._index_counts.get(cid, 0), self._chunk_counts.get(cid, 0)
                if listed != found:
                    topic = self.channels.get(cid, (f"channel {cid}",))[0]
                    self.problems.append(
                        f"{self.path}: chunk at byte {self._index_at}: its index lists {listed} messages of "
                        f"{topic}, {found} are readable"
                    )
        self._chunk_counts, self._index_counts, self._index_at = {}, {}, 0

    def _read_summary(self) -> tuple[bytes, int] | None:
        """Check the footer's summary (present, inside the file, records inside it); keep its chunk offsets and
        return its statistics record (body, offset) to compare once the data is read."""
        with self.path.open("rb") as f:
            size = f.seek(0, 2)
            if size < 2 * len(MCAP_MAGIC) + 37:
                return None
            f.seek(size - 37)
            footer = f.read(37)
            if footer[-8:] != MCAP_MAGIC or footer[0] != OP_FOOTER:
                return None  # cut short: the scan reports it
            summary_start = int.from_bytes(footer[9:17], "little")
            if summary_start == 0:
                self.problems.append(
                    f"{self.path}: no summary (the recording was not closed, e.g. the recorder was killed): "
                    "`carla-rl bag repair` adds it"
                )
                return None
            if not len(MCAP_MAGIC) < summary_start <= size - 37:
                self.problems.append(f"{self.path}: the footer's summary offset {summary_start} lies outside the file")
                return None
            f.seek(summary_start)
            summary = memoryview(f.read(size - 37 - summary_start))
        pos, statistics, starts = 0, None, []
        while pos < len(summary):
            if pos + 9 > len(summary) or pos + 9 + _u64(summary, pos + 1) > len(summary):
                self.problems.append(f"{self.path}: the summary is damaged at byte {summary_start + pos}")
                return None
            op, body = summary[pos], summary[pos + 9 : pos + 9 + _u64(summary, pos + 1)]
            if op == OP_STATISTICS:
                statistics = (bytes(body), summary_start + pos)
            elif op == OP_CHUNK_INDEX and len(body) >= 32 and _u64(body, 16) < summary_start:
                starts.append(_u64(body, 16))
            pos += 9 + len(body)
        self._chunk_starts = sorted(starts)
        return statistics

    def _check_statistics(self, body: bytes, at: int) -> None:
        body = memoryview(body)
        if len(body) < 46:
            self.problems.append(f"{self.path}: the summary's statistics at byte {at} are cut short")
            return
        total, chunk_count = _u64(body, 0), _u32(body, 22)
        if total != self.count or chunk_count != self.chunks:
            self.problems.append(
                f"{self.path}: the summary counts {total} messages in {chunk_count} chunks, "
                f"{self.count} in {self.chunks} are readable"
            )
        end, p = 46 + _u32(body, 42), 46
        while p + 10 <= min(end, len(body)):
            cid, listed = _u16(body, p), _u64(body, p + 2)
            if cid in self.channels and listed != self.counts.get(cid, 0):
                self.problems.append(
                    f"{self.path}: the summary counts {listed} messages of {self.channels[cid][0]}, "
                    f"{self.counts.get(cid, 0)} are readable"
                )
            p += 10


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

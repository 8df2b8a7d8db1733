"""``carla-rl bag repair BAG``: rebuild a damaged or unclosed MCAP bag's index and ``metadata.yaml``.

The counterpart of ``ros2 bag reindex``, for what a killed recorder or a damaged copy leaves: every MCAP
storage file of the bag (also one still in a split's working directory) is read with the checking scan of
:class:`carla_rl_bags.reader.McapScan`, which needs neither ``metadata.yaml`` nor the summary, and written
again with rosbags, message by message in file order, so that it gets a summary (chunk index, statistics)
again; then ``metadata.yaml`` is written for all of them. What the scan could not read (a chunk cut off, a
damaged one) is gone and is listed. Each file is replaced only once its new version is complete.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from rosbags.rosbag2 import StoragePlugin, Writer

from carla_rl_bags import BagError
from carla_rl_bags.progress import progress_bar
from carla_rl_bags.reader import McapScan, _split_order
from carla_rl_bags.recorder import merge_metadata
from carla_rl_bags.typestore import typestore_from_definitions


def storage_files(path: Path) -> list[Path]:
    """The MCAP files of a bag directory in split order: ``DIR/*.mcap`` and, for a split whose recorder never
    closed it, ``DIR/<split>/<split>.mcap`` (the recorder's working copy; the same file as the one in ``DIR``
    when both exist)."""
    found: dict[str, Path] = {}
    working = [f for f in path.glob("*/*.mcap") if not f.parent.name.startswith(".")]  # not a repair's own
    for file in [*working, *path.glob("*.mcap")]:  # the top-level name wins
        found[file.name] = file
    return sorted(found.values(), key=_split_order)


def repair_bag(path: Path | str, progress: bool = False) -> dict[str, Any]:
    """Rewrite every MCAP file of ``path`` (a bag directory or one ``.mcap`` file) with a summary, and write the
    directory's ``metadata.yaml``. Returns ``{"path", "files": [{"path", "messages"}], "messages", "problems"}``
    where ``problems`` is what the scan found before the repair (lost chunks among them). ``progress``: bars of
    the scan and the rewrite of each file on a terminal."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"{path}: no such bag (file or directory)")
    files = storage_files(path) if path.is_dir() else [path]
    if not files:
        other = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
        raise BagError(f"{path}: no MCAP storage file to repair (has: {', '.join(other) or 'nothing'})")
    bag_dir = path if path.is_dir() else path.parent
    infos, report_files, problems = [], [], []
    for file in files:
        with progress_bar(f"scanning {file.name}", enabled=progress) as bar:
            scan = McapScan(file, bar.update)
        problems += scan.problems
        if not scan.channels:
            raise BagError(f"{file}: nothing in it is readable ({'; '.join(scan.problems) or 'no channels'})")
        with progress_bar(f"rewriting {file.name}", scan.count, enabled=progress) as bar:
            info = _rewrite(file, scan, bag_dir / f".repair-{file.stem}", bag_dir / file.name, bar.update)
        infos.append(info)
        report_files.append({"path": str(bag_dir / file.name), "messages": info["message_count"]})
        if path.is_dir() and (path / file.stem).is_dir():  # the recorder's working directory of an unclosed split
            shutil.rmtree(path / file.stem)
    if path.is_dir():
        metadata = path / "metadata.yaml.tmp"
        metadata.write_text(yaml.safe_dump({"rosbag2_bagfile_information": merge_metadata(infos)}, sort_keys=False))
        os.replace(metadata, path / "metadata.yaml")
    return {
        "path": str(path),
        "files": report_files,
        "messages": sum(f["messages"] for f in report_files),
        "problems": problems,
    }


def _rewrite(
    source: Path, scan: McapScan, work: Path, target: Path, on_message: Callable[[], object]
) -> dict[str, Any]:
    """Write what ``scan`` reads of ``source`` as a new one-file bag in ``work``, move its storage file onto
    ``target`` (atomically: ``source`` stays whole until then); returns that bag's rosbag2 metadata.
    ``on_message`` is called after each message."""
    if work.exists():
        shutil.rmtree(work)  # left by a repair that was interrupted itself
    writer = Writer(work, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    try:
        connections = {}
        for topic, meta in scan.topics.items():
            if not meta.msgdef:
                raise BagError(f"{source}: {topic} ({meta.msgtype}) has no message definition to write again")
            store = typestore_from_definitions([(meta.msgtype, meta.msgdef_format or "ros2msg", meta.msgdef)])
            connections[topic] = writer.add_connection(
                topic,
                meta.msgtype,
                msgdef=meta.msgdef,
                rihs01=store.hash_rihs01(meta.msgtype),
                offered_qos_profiles=list(meta.qos),
            )
        for message in scan.messages():
            writer.write(connections[message.topic], message.timestamp, message.data)
            on_message()
    except BaseException:
        writer.close()
        shutil.rmtree(work)
        raise
    writer.close()
    info = yaml.safe_load((work / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    written = work / info["relative_file_paths"][0]
    os.replace(written, target)
    shutil.rmtree(work)
    info["relative_file_paths"] = [target.name]
    for entry in info["files"]:
        entry["path"] = target.name
    return info

"""What a bag holds, like ``ros2 bag info``, plus per-topic rates and gaps (dropped frames, stalls).

Times are the recorded receive times. A topic's *gaps* are the intervals between consecutive messages longer
than twice its median period; the largest interval is reported whether or not it is a gap.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from carla_rl_bags import BagError
from carla_rl_bags.reader import open_bag

GAP_FACTOR = 2.0
LISTED_GAPS = 20  # per topic; the count covers all


def bag_info(bag: Path | str, progress: bool = False) -> dict[str, Any]:
    """Topics, types, counts, time range, per-topic frequency and gaps of ``bag``; damage (what the checks of
    :func:`open_bag` found: CRCs, indexes and counts that do not hold, a missing summary) in ``problems``.
    ``progress``: a bar of the checking scan on a terminal."""
    with open_bag(bag, progress=progress) as opened:
        stamps: dict[str, list[int]] = {name: [] for name in opened.topics}
        problems = list(opened.problems)
        if opened.scans:  # MCAP: the checking scan already read every receive time
            for scan in opened.scans:
                for name, times in scan.topic_stamps().items():
                    stamps.setdefault(name, []).extend(times)
        else:
            try:
                for message in opened.messages():
                    stamps[message.topic].append(message.timestamp)
            except BagError as exc:  # sqlite3 damaged past its index: what was read is still reported
                problems.append(str(exc))
        files = [{"path": str(f), "size_bytes": f.stat().st_size if f.exists() else 0} for f in opened.files]
        start = opened.start_ns
        return {
            "path": str(opened.path),
            "storage": opened.storage,
            "compression": opened.compression,
            "files": files,
            "size_bytes": sum(f["size_bytes"] for f in files),
            "start_ns": start,
            "end_ns": opened.end_ns,
            "duration_s": (opened.end_ns - start) / 1e9,
            "message_count": sum(len(stamps[name]) for name in opened.topics),
            "topics": [
                _topic_info(name, meta.msgtype, meta.latched, np.array(stamps[name], np.int64), start)
                for name, meta in sorted(opened.topics.items())
            ],
            "problems": problems,
        }


def _topic_info(name: str, msgtype: str, latched: bool, stamps: np.ndarray, bag_start: int) -> dict[str, Any]:
    stamps = np.sort(stamps)
    info: dict[str, Any] = {
        "name": name,
        "type": msgtype,
        "count": int(len(stamps)),
        "latched": latched,
        "frequency_hz": 0.0,
        "median_period_s": 0.0,
        "largest_gap_s": 0.0,
        "largest_gap_at_s": 0.0,
        "gap_count": 0,
        "gaps": [],
    }
    if len(stamps) < 2:
        return info
    periods = np.diff(stamps) / 1e9
    span = (stamps[-1] - stamps[0]) / 1e9
    median = float(np.median(periods))
    k = int(np.argmax(periods))
    gaps = np.flatnonzero(periods > GAP_FACTOR * median) if median > 0 else np.array([], int)
    info.update(
        {
            "frequency_hz": (len(stamps) - 1) / span if span > 0 else 0.0,
            "median_period_s": median,
            "largest_gap_s": float(periods[k]),
            "largest_gap_at_s": (stamps[k] - bag_start) / 1e9,
            "gap_count": int(len(gaps)),
            "gaps": [
                {"at_s": (stamps[i] - bag_start) / 1e9, "length_s": float(periods[i])} for i in gaps[:LISTED_GAPS]
            ],
        }
    )
    return info


def _size(n: float) -> str:
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB"):
        n /= 1024
        if n < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:.1f} GiB"


def _time(ns: int) -> str:
    ms = ns // 1_000_000
    stamp = datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{stamp}.{ms % 1000:03d} UTC ({ms // 1000}.{ms % 1000:03d})"


def format_info(info: dict[str, Any]) -> str:
    """A readable summary and topic table of :func:`bag_info`'s result."""
    lines = [
        f"{'Bag:':<14}{info['path']}",
        f"{'Storage:':<14}{info['storage']}, {len(info['files'])} file(s), {_size(info['size_bytes'])}"
        + (f", compressed {info['compression']}" if info["compression"] else ""),
        f"{'Duration:':<14}{info['duration_s']:.3f} s",
    ]
    if info["message_count"]:
        lines += [f"{'Start:':<14}{_time(info['start_ns'])}", f"{'End:':<14}{_time(info['end_ns'])}"]
    lines.append(f"{'Messages:':<14}{info['message_count']}")
    lines += [f"{'Problem:':<14}{p}" for p in info["problems"]]
    names = [t["name"] + (" (latched)" if t["latched"] else "") for t in info["topics"]]
    width = max([len(n) for n in names] + [5])
    type_width = max([len(t["type"]) for t in info["topics"]] + [4])
    lines.append("")
    lines.append(
        f"{'Topic':<{width}}  {'Type':<{type_width}}  {'Count':>7}  {'Hz':>8}  {'Largest gap':>19}  {'Gaps>2x':>7}"
    )
    for name, t in zip(names, info["topics"]):
        gap = f"{t['largest_gap_s']:.3f} s @ {t['largest_gap_at_s']:.1f} s" if t["count"] > 1 else "-"
        lines.append(
            f"{name:<{width}}  {t['type']:<{type_width}}  {t['count']:>7}  {t['frequency_hz']:>8.2f}  "
            f"{gap:>19}  {t['gap_count']:>7}"
        )
    return "\n".join(lines)

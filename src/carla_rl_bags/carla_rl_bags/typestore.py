"""Message types of bags: rosbags typestores (definitions, hashes, decoding) and the rclpy message classes.

rosbag2 embeds each recorded type's full definition (its ``.msg`` text followed by every type it uses) and its
RIHS01 hash, so that ``ros2 bag``, Foxglove and ``rosbags`` decode a bag without our packages. rosbags
generates both from a typestore: the standard types come from its ROS 2 Jazzy store; ``carla_msgs``,
``carla_rl_msgs`` and any other type missing there are parsed from the ``.msg`` files of the *installed*
interface packages (``<prefix>/share/<pkg>/msg/<Type>.msg``, where ament installs them), so the embedded
definitions are those of the classes rclpy serializes with. (The tests check the hashes against rosidl's.)

A type is imported as an rclpy class only when its interface definition is installed: a bag names types,
and a name read from a file must not make us import an arbitrary module.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterable
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from rosbags.interfaces import Nodetype
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore
from rosbags.typesys.base import TypesysError
from rosbags.typesys.store import Typestore

from carla_rl_bags import BagError
from carla_rl_common.paths import REPO_ROOT

BASE_STORE = Stores.ROS2_JAZZY
OUR_PACKAGES = ("carla_msgs", "carla_rl_msgs")
TYPE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*/msg/[A-Za-z][A-Za-z0-9_]*$")


def interface_roots() -> list[Path]:
    """Directories laid out as ``<pkg>/msg/<Type>.msg``: the ament prefixes' and this interpreter's ``share``
    (installed packages, searched first), then the repository's ``src`` (our packages, not yet built)."""
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    roots = [Path(p) / "share" for p in prefixes] + [REPO_ROOT / "src"]
    unique: list[Path] = []
    for root in roots:
        if root.is_dir() and root not in unique:
            unique.append(root)
    return unique


def check_type_name(msgtype: str) -> tuple[str, str]:
    """``(package, name)`` of a ``pkg/msg/Type`` name; BagError for anything else (services, garbage)."""
    if not TYPE_NAME.match(msgtype):
        raise BagError(f"{msgtype!r} is not a message type name (pkg/msg/Type)")
    package, _, name = msgtype.split("/")
    return package, name


def msg_file(msgtype: str) -> Path | None:
    """The installed ``.msg`` file of ``msgtype``, or None."""
    package, name = check_type_name(msgtype)
    for root in interface_roots():
        path = root / package / "msg" / f"{name}.msg"
        if path.is_file():
            return path
    return None


def _nested_types(field_type: tuple) -> list[str]:
    """Message types a rosbags field description refers to (directly or as array / sequence elements)."""
    kind, detail = field_type
    if kind == Nodetype.NAME:
        return [detail]
    if kind in (Nodetype.ARRAY, Nodetype.SEQUENCE):
        return _nested_types(detail[0])
    return []


def ensure_types(store: Typestore, msgtypes: Iterable[str]) -> None:
    """Register ``msgtypes`` and every type they use that ``store`` lacks, from the installed ``.msg`` files.

    Raises BagError naming the type when no definition is installed.
    """
    pending = [t for t in msgtypes if t not in store.fielddefs]
    while pending:
        msgtype = pending.pop()
        if msgtype in store.fielddefs:
            continue
        path = msg_file(msgtype)
        if path is None:
            raise BagError(
                f"no definition of {msgtype} installed (looked for {msgtype.split('/')[0]}/msg/"
                f"{msgtype.split('/')[-1]}.msg under {', '.join(map(str, interface_roots()))})"
            )
        types = get_types_from_msg(path.read_text(), msgtype)
        store.register({n: d for n, d in types.items() if n not in store.fielddefs})
        for _, field_type in types[msgtype][1]:
            pending += [t for t in _nested_types(field_type) if t not in store.fielddefs]


def package_types(package: str) -> list[str]:
    """Every message type of an installed interface package (the first root that has it)."""
    for root in interface_roots():
        files = sorted((root / package / "msg").glob("*.msg"))
        if files:
            return [f"{package}/msg/{p.stem}" for p in files]
    return []


def build_typestore(msgtypes: Iterable[str] = ()) -> Typestore:
    """The Jazzy store plus every message of our interface packages, plus ``msgtypes`` (and what they use)."""
    store = get_typestore(BASE_STORE)
    ensure_types(store, [t for pkg in OUR_PACKAGES for t in package_types(pkg)] + list(msgtypes))
    return store


@lru_cache(maxsize=1)
def shared_typestore() -> Typestore:
    """One store per process for writing (types are added to it as topics appear)."""
    return build_typestore()


@cache
def message_definition(msgtype: str) -> tuple[str, str]:
    """``(msgdef, rihs01)`` as rosbag2 embeds them for ``msgtype`` (cached: the recorder asks once per split)."""
    store = shared_typestore()
    ensure_types(store, [msgtype])
    msgdef, _ = store.generate_msgdef(msgtype, ros_version=2)
    return msgdef, store.hash_rihs01(msgtype)


def typestore_from_definitions(definitions: Iterable[tuple[str, str, str]]) -> Typestore:
    """A store holding only the types defined by ``(msgtype, format, text)`` triples, as a bag embeds them.

    ``format`` is ``ros2msg`` or ``ros2idl``. This is how a reader without our packages decodes our types.
    """
    store = get_typestore(Stores.EMPTY)
    for msgtype, fmt, text in definitions:
        try:
            types = get_types_from_idl(text) if fmt == "ros2idl" else get_types_from_msg(text, msgtype)
            store.register({n: d for n, d in types.items() if n not in store.fielddefs})
        except TypesysError as exc:
            raise BagError(f"the embedded definition of {msgtype} does not parse: {exc}") from exc
    return store


def message_class(msgtype: str) -> Any:
    """The rclpy class of ``msgtype`` (``pkg/msg/Type``), imported only if its interface is installed."""
    package, name = check_type_name(msgtype)
    if msg_file(msgtype) is None:
        raise BagError(
            f"type {msgtype} is not installed here (no {package}/msg/{name}.msg in "
            f"{', '.join(map(str, interface_roots()))})"
        )
    try:
        cls = getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError) as exc:
        raise BagError(f"type {msgtype}: its Python module does not load ({exc}); is the package built?") from exc
    if not hasattr(cls, "get_fields_and_field_types"):
        raise BagError(f"type {msgtype}: {package}.msg.{name} is not a ROS message class")
    return cls

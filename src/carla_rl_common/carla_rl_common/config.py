"""YAML configs validated against a schema of defaults, with errors that name the file and the key.

A schema is a nested dict of default values; the type of each default is the type a user value must have
(an int is accepted where a float is expected; ``None`` defaults accept anything). Keys under a schema entry
whose default is an empty dict are free-form (their values are validated by the code that uses them, which
reports unknown names with :class:`ConfigError` as well). Unknown keys are an error, because a typo such as
``rewrad:`` would otherwise silently train with defaults.

Numbers are range-checked too: beside each schema, a nested dict of the same shape maps every numeric key to
its :class:`Range` (a :class:`Range` at a list key bounds each item, at a free-form mapping each value), and
every number anywhere in a config must be finite. A NaN timeout or a negative count is then a ConfigError
naming the file, the key, the value and the allowed range, before any process starts, instead of a
traceback from deep inside a node. Values in messages are capped (:func:`short`): a YAML alias bomb shares
its aliases in memory, but a full ``repr`` would expand them.
"""

from __future__ import annotations

import copy
import math
import reprlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 2, 4, 4, 60, 60, 40


def short(value: Any) -> str:
    """``repr(value)``, capped in depth, items and length: fast and small for any value (aliases included)."""
    return _REPR.repr(value)


class ConfigError(ValueError):
    """A config problem, always naming the file (or source) and the dotted key."""

    def __init__(self, source: str, key: str, problem: str):
        self.source, self.key, self.problem = source, key, problem
        super().__init__(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")


@dataclass(frozen=True)
class Range:
    """The values a numeric config key allows: finite, ``low <= value <= high`` (``low < value`` when
    ``low_open``: timeouts, rates, scales). ``max_items`` caps a list key's length."""

    low: float
    high: float
    low_open: bool = False
    unit: str = ""
    max_items: int = 0

    def __str__(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"{'(' if self.low_open else '['}{_number(self.low)}, {_number(self.high)}]{unit}"

    def problem(self, value: Any) -> str:
        """Why ``value`` is out of range ("" when it is in range)."""
        if isinstance(value, float) and not math.isfinite(value):  # an int is finite (and may not fit a float)
            return f"must be a finite number in {self}, got {short(value)}"
        below = value <= self.low if self.low_open else value < self.low
        if below or value > self.high:
            return f"out of range: allowed {self}, got {short(value)}"
        return ""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def check_finite(source: str, key: str, value: Any) -> None:
    """Every number inside ``value`` (a free-form mapping or list) must be finite. Shared sub-objects (YAML
    aliases) are visited once, so an alias bomb costs its size in the file, not its expanded size."""
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [(key, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ConfigError(source, where, f"must be a finite number, got {short(item)}")
        if isinstance(item, (dict, list)):
            if id(item) in seen:
                continue
            seen.add(id(item))
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            stack.extend((f"{where}.{k}" if isinstance(item, dict) else f"{where}[{k}]", v) for k, v in pairs)


def read_config_text(path: str | Path) -> str:
    """A config file's text; a missing or unreadable file is a ConfigError naming it."""
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise ConfigError(str(path), "<file>", f"cannot read: {exc.strerror or exc}") from exc


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with ``yaml.safe_load`` (never the unsafe loader)."""
    path = Path(path)
    text = read_config_text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = " ".join(str(p) for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p)
        raise ConfigError(where, "", f"invalid YAML: {problem or exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), "", f"expected a mapping at the top, got {_type_name(data)}")
    return data


def _type_name(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "mapping"}.get(
        type(value), type(value).__name__
    )


def _check_type(default: Any, value: Any) -> bool:
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, type(default))


def merge(
    schema: Mapping[str, Any],
    base: dict[str, Any],
    override: Mapping[str, Any],
    source: str,
    prefix: str = "",
    bounds: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Validate ``override`` against ``schema`` (types) and ``bounds`` (ranges, same nesting as ``schema``)
    and merge it onto ``base`` (returned, not modified)."""
    bounds = bounds or {}
    out = copy.deepcopy(base)
    for key, value in override.items():
        if not isinstance(key, str):
            raise ConfigError(source, f"{prefix}{short(key)}", "keys must be strings")
        dotted = f"{prefix}{key if len(key) <= 80 else short(key)}"
        if key not in schema:
            known = ", ".join(sorted(schema)) or "(none)"
            raise ConfigError(source, dotted, f"unknown key (known keys here: {known})")
        default, bound = schema[key], bounds.get(key)
        if isinstance(default, dict) and default:
            if not isinstance(value, dict):
                raise ConfigError(source, dotted, f"expected a mapping, got {_type_name(value)}")
            out[key] = merge(default, out.get(key, {}), value, source, dotted + ".", bound)
            continue
        if isinstance(default, dict):  # free-form mapping
            if not isinstance(value, dict):
                raise ConfigError(source, dotted, f"expected a mapping, got {_type_name(value)}")
            if isinstance(bound, Range):
                for name, item in value.items():
                    check_range(source, f"{dotted}.{short(name)}", item, bound)
            else:
                check_finite(source, dotted, value)
        elif not _check_type(default, value):
            raise ConfigError(
                source, dotted, f"expected {_type_name(default)}, got {_type_name(value)} ({short(value)})"
            )
        elif isinstance(value, list):
            if isinstance(bound, Range):
                if bound.max_items and len(value) > bound.max_items:
                    raise ConfigError(source, dotted, f"at most {bound.max_items} items, got {len(value)}")
                for i, item in enumerate(value):
                    check_range(source, f"{dotted}[{i}]", item, bound)
            else:
                check_finite(source, dotted, value)
        elif isinstance(bound, Range):
            check_range(source, dotted, value, bound)
        out[key] = float(value) if isinstance(default, float) else copy.deepcopy(value)
    return out


def check_range(source: str, key: str, value: Any, bound: Range) -> None:
    """A ConfigError naming ``source``, ``key``, the value and the range unless ``value`` is a number in it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(source, key, f"expected a number in {bound}, got {_type_name(value)} ({short(value)})")
    problem = bound.problem(value)
    if problem:
        raise ConfigError(source, key, problem)


def unbounded_keys(schema: Mapping[str, Any], bounds: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The dotted numeric keys of ``schema`` (int and float defaults, bools excluded) without a Range in
    ``bounds``: empty for a fully bounded schema."""
    missing: list[str] = []
    for key, default in schema.items():
        bound = bounds.get(key) if isinstance(bounds, Mapping) else None
        if isinstance(default, dict) and default:
            missing += unbounded_keys(default, bound if isinstance(bound, Mapping) else {}, f"{prefix}{key}.")
        elif isinstance(default, (int, float)) and not isinstance(default, bool) and not isinstance(bound, Range):
            missing.append(f"{prefix}{key}")
    return missing


def load_config(
    schema: Mapping[str, Any],
    paths: Iterable[str | Path] = (),
    overrides: Mapping[str, Any] | None = None,
    bounds: Mapping[str, Any] | None = None,
    overrides_source: str = "<command line>",
) -> dict[str, Any]:
    """Defaults from ``schema``, then each file in order (later files override earlier ones), then
    ``overrides`` (named ``overrides_source`` in errors); every value checked against ``bounds``."""
    config = copy.deepcopy(dict(schema))
    for path in paths:
        config = merge(schema, config, load_yaml(path), str(path), bounds=bounds)
    if overrides:
        config = merge(schema, config, overrides, overrides_source, bounds=bounds)
    return config


def require_names(source: str, key: str, names: Iterable[str], known: Iterable[str]) -> None:
    """Raise a ConfigError when ``names`` contains something outside ``known``, listing the known names."""
    known = sorted(known)
    for name in names:
        if name not in known:
            raise ConfigError(
                source, f"{key}.{name}" if key else name, f"unknown name {short(name)} (known: {', '.join(known)})"
            )


def merge_plain(a: dict[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(a)
    for key, value in b.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge_plain(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out

"""YAML configs validated against a schema of defaults, with errors that name the file and the key.

A schema is a nested dict of default values; the type of each default is the type a user value must have
(an int is accepted where a float is expected; ``None`` defaults accept anything). Keys under a schema entry
whose default is an empty dict are free-form (their values are validated by the code that uses them, which
reports unknown names with :class:`ConfigError` as well). Unknown keys are an error, because a typo such as
``rewrad:`` would otherwise silently train with defaults.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config problem, always naming the file (or source) and the dotted key."""

    def __init__(self, source: str, key: str, problem: str):
        self.source, self.key, self.problem = source, key, problem
        super().__init__(f"{source}: {key}: {problem}")


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
        raise ConfigError(str(path), "<file>", f"invalid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), "<root>", f"expected a mapping, got {type(data).__name__}")
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
    schema: Mapping[str, Any], base: dict[str, Any], override: Mapping[str, Any], source: str, prefix: str = ""
) -> dict[str, Any]:
    """Validate ``override`` against ``schema`` and merge it onto ``base`` (returned, not modified)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        dotted = f"{prefix}{key}"
        if not isinstance(key, str):
            raise ConfigError(source, dotted, "keys must be strings")
        if key not in schema:
            known = ", ".join(sorted(schema)) or "(none)"
            raise ConfigError(source, dotted, f"unknown key (known keys here: {known})")
        default = schema[key]
        if isinstance(default, dict) and default:
            if not isinstance(value, dict):
                raise ConfigError(source, dotted, f"expected a mapping, got {_type_name(value)}")
            out[key] = merge(default, out.get(key, {}), value, source, dotted + ".")
        elif isinstance(default, dict):  # free-form mapping
            if not isinstance(value, dict):
                raise ConfigError(source, dotted, f"expected a mapping, got {_type_name(value)}")
            out[key] = copy.deepcopy(value)
        else:
            if not _check_type(default, value):
                raise ConfigError(
                    source, dotted, f"expected {_type_name(default)}, got {_type_name(value)} ({value!r})"
                )
            out[key] = float(value) if isinstance(default, float) else copy.deepcopy(value)
    return out


def load_config(
    schema: Mapping[str, Any], paths: Iterable[str | Path] = (), overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Defaults from ``schema``, then each file in order (later files override earlier ones)."""
    config = copy.deepcopy(dict(schema))
    for path in paths:
        config = merge(schema, config, load_yaml(path), str(path))
    if overrides:
        config = merge(schema, config, overrides, "<command line>")
    return config


def require_names(source: str, key: str, names: Iterable[str], known: Iterable[str]) -> None:
    """Raise a ConfigError when ``names`` contains something outside ``known``, listing the known names."""
    known = sorted(known)
    for name in names:
        if name not in known:
            raise ConfigError(
                source, f"{key}.{name}" if key else name, f"unknown name {name!r} (known: {', '.join(known)})"
            )


def merge_plain(a: dict[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(a)
    for key, value in b.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge_plain(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out

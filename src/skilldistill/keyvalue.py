"""``KEY=VALUE`` options, the one parser for the CLI (``--engine-arg``, ``--sft``, ``--set``, ...).

Values are parsed as YAML (``3`` is an int, ``true`` a bool, ``[a, b]`` a list), unless
``as_text`` keeps them as stripped strings.
"""

from __future__ import annotations

from typing import Any

import yaml

from .errors import ConfigError


def split_key_value(item: str, option: str) -> tuple[str, str]:
    """``"a.b=3"`` -> ``("a.b", "3")``; a ConfigError naming ``option`` when there is no key."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{option} takes KEY=VALUE, got {item!r}")
    return key.strip(), raw


def parse_yaml_value(raw: str, *, option: str, key: str) -> Any:
    """One value as YAML, with the option and key named when it is not YAML."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"{option} {key}: the value is not valid YAML ({str(e).splitlines()[0]})") from None


def parse_key_values(items: list[str], *, option: str, as_text: bool = False) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}`` (later keys win)."""
    out: dict[str, Any] = {}
    for item in items:
        key, raw = split_key_value(item, option)
        out[key] = raw.strip() if as_text else parse_yaml_value(raw, option=option, key=key)
    return out

"""Loading YAML and JSON a user wrote (skill trees, label maps) without the silent surprises of
the plain loaders: YAML aliases are refused (a few kilobytes of nested aliases expand to ~10^8
nodes, the "billion laughs"), and a key given twice in one mapping is refused (YAML and JSON keep
the last of two equal keys, silently dropping the first's value)."""

from __future__ import annotations

from typing import Any

import yaml


class StrictSafeLoader(yaml.SafeLoader):
    """YAML's safe loader refusing aliases and repeated keys; ``what`` names the file's kind in errors."""

    what = "this file"

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(f"aliases (*{event.anchor}) are not allowed in {self.what} "
                                 f"(line {event.start_mark.line + 1})")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.YAMLError(f"key {key!r} appears twice in one node (line {key_node.start_mark.line + 1}): "
                                     "the second would silently replace the first")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def strict_loader(what: str) -> type[StrictSafeLoader]:
    """A :class:`StrictSafeLoader` whose errors name ``what`` ("a skill tree", "a label map")."""
    return type("StrictSafeLoader", (StrictSafeLoader,), {"what": what})


class DuplicateKeyError(ValueError):
    """A JSON object with a key given twice."""


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``' ``object_pairs_hook``: refuses a key given twice in one object."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise DuplicateKeyError(f"key {k!r} appears twice in one node: the second would silently replace the first")
        out[k] = v
    return out


__all__ = ["DuplicateKeyError", "StrictSafeLoader", "strict_loader", "unique_keys"]

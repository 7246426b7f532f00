"""Hostile skill trees: bombs, depth, empty trees, names that would break a skill plan."""

from __future__ import annotations

import json
import resource
import time

import pytest

from skilldistill.errors import TreeError
from skilldistill.tree import SkillTree

BOMB = """name: Mathematics
a: &a {name: x, children: []}
"""


def _alias_bomb() -> str:
    # 9 levels of 10 aliases each: 10^9 nodes once expanded, 2.6 KB of text
    lines = ["l0: &l0 {name: leaf}"]
    for i in range(1, 10):
        refs = ", ".join([f"*l{i - 1}"] * 10)
        lines.append(f"l{i}: &l{i} {{name: n{i}, children: [{refs}]}}")
    lines.append("name: Mathematics")
    lines.append("children: [*l9]")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_fast_and_small(tmp_path):
    p = tmp_path / "bomb.yaml"
    p.write_text(_alias_bomb())
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.time()
    with pytest.raises(TreeError) as e:
        SkillTree.load(p)
    assert time.time() - t0 < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 200_000  # KiB: no expansion happened
    assert "aliases" in str(e.value) and str(p) in str(e.value)


def test_deeply_nested_json_and_very_deep_trees_are_clear_errors(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text('{"name": "r", "children": [' * 100_000 + "]}" * 100_000)
    with pytest.raises(TreeError, match="nested too deeply|deeper than") as e:
        SkillTree.load(deep)
    assert str(deep) in str(e.value)
    chain: dict = {"name": "leaf"}
    for i in range(200):
        chain = {"name": f"n{i}", "children": [chain]}
    tall = tmp_path / "tall.json"
    tall.write_text(json.dumps({"name": "Mathematics", "children": [chain]}))
    with pytest.raises(TreeError, match="deeper than 64 levels"):
        SkillTree.load(tall)


def test_a_tree_without_skills_is_not_valid(tmp_path):
    p = tmp_path / "empty.json"
    p.write_text(json.dumps({"name": "Mathematics", "children": []}))
    with pytest.raises(TreeError, match="no skills below its root"):
        SkillTree.load(p)


@pytest.mark.parametrize("name", ["two\nlines", "carriage\rreturn", "nul\x00byte", "para\u2029sep"])
def test_names_with_line_breaks_are_refused(tmp_path, name):
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"name": "Mathematics", "children": [{"name": "A", "children": [{"name": name}]}]}))
    with pytest.raises(TreeError, match="line break or control character") as e:
        SkillTree.load(p)
    assert "A" in str(e.value)  # the path to the bad node


def test_invalid_utf8_names_the_file(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_bytes(b"name: Mathematics\nchildren: [{name: caf\xe9}]\n")
    with pytest.raises(TreeError, match="not UTF-8") as e:
        SkillTree.load(p)
    assert str(p) in str(e.value)


@pytest.mark.parametrize("suffix, text", [
    (".yaml", "name: Math\nchildren:\n- name: Algebra\n  children: [{name: Linear equations}, {name: Quadratics}]\n"
              "  children: [{name: Polynomials}]\n"),
    (".json", '{"name": "Math", "children": [{"name": "Algebra", "children": [{"name": "Linear"}]}], '
              '"children": [{"name": "Geometry"}]}'),
])
def test_a_key_twice_in_one_node_is_refused_not_a_dropped_subtree(tmp_path, suffix, text):
    path = tmp_path / f"tree{suffix}"
    path.write_text(text)
    with pytest.raises(TreeError, match=r"'children' appears twice") as e:
        SkillTree.load(path)
    assert str(path) in str(e.value)

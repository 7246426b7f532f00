"""SkillTree loading, validation and walks, on the paper's tree and on big synthetic ones."""

from __future__ import annotations

import json
import sys

import pytest

from skilldistill.errors import TreeError
from skilldistill.tree import SkillTree, chain_str


def test_skill_mix_stats(skill_mix_path):
    t = SkillTree.load(skill_mix_path)
    s = t.stats()
    assert (s.nodes, s.leaves, s.depth, s.top_level) == (126, 118, 2, 7)
    assert t.root.name == "Mathematics"
    leaves = t.leaves()
    assert len(leaves) == 118 and all(len(c) == 2 for c in leaves)
    first = leaves[0]
    assert t.is_leaf_chain(first) and not t.is_leaf_chain(first[:1])
    assert t.parse_chain(chain_str(first)) == first


def test_round_trip_json_and_yaml(tmp_path, skill_mix_path):
    t = SkillTree.load(skill_mix_path)
    for name in ("t.json", "t.yaml"):
        t.save(tmp_path / name)
        t2 = SkillTree.load(tmp_path / name)
        assert t2.leaves() == t.leaves()
    assert json.loads((tmp_path / "t.json").read_text()) == json.loads(skill_mix_path.read_text())


def test_yaml_with_descriptions_and_bare_string_leaves(tmp_path):
    (tmp_path / "t.yaml").write_text(
        "name: Math\nchildren:\n"
        "  - name: Algebra\n    description: Equations and expressions.\n    children:\n"
        "      - Linear equations\n      - name: Quadratics\n        description: Second-degree.\n"
        "  - Geometry\n"
    )
    t = SkillTree.load(tmp_path / "t.yaml")
    assert t.leaves() == [("Algebra", "Linear equations"), ("Algebra", "Quadratics"), ("Geometry",)]
    assert t.node(("Algebra",)).description == "Equations and expressions."
    assert t.stats().described == 2


@pytest.mark.parametrize(
    ("tree", "message", "path"),
    [
        ({"name": "M", "children": [{"name": "A"}, {"name": " a "}]}, "duplicate sibling name", []),
        ({"name": "M", "children": [{"name": "A", "children": [{"name": ""}]}]}, "empty node name", ["A", "<child 0>"]),
        ({"name": "M", "children": [{"name": 3}]}, "must be a string", ["<child 0>"]),
        ({"name": "M", "children": [{"name": "A", "kids": []}]}, "unknown key", ["<child 0>"]),
        ({"name": "M", "children": {"name": "A"}}, "must be a list", []),
        ({"children": []}, "no 'name'", []),
        ({"name": "M", "children": [{"name": "A", "children": [{"name": "x", "description": 5}]}]}, "'description' must be a string", ["A", "<child 0>"]),
    ],
)
def test_validation_errors_name_the_path(tree, message, path):
    with pytest.raises(TreeError) as e:
        SkillTree.from_dict(tree, on_duplicate="error")
    assert message in str(e.value)
    assert e.value.path == path


def test_bad_file_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(TreeError, match="cannot parse"):
        SkillTree.load(bad)
    with pytest.raises(TreeError, match="no such file"):
        SkillTree.load(tmp_path / "missing.json")


def _deep_wide_tree(depth: int, fanout: int, leaves_target: int) -> dict:
    """A tree with ~leaves_target leaves, one spine of ``depth`` and long sentence names."""
    long = "Apply the characterization of {} to determine properties under constraints number {}"
    root = {"name": "Mathematics", "children": []}
    spine = root
    for d in range(depth):
        child = {"name": long.format("spine", d), "children": []}
        spine["children"].append(child)
        spine = child
    spine["children"].append({"name": "deepest leaf"})
    count = 0
    for i in range(fanout):
        mid = {"name": long.format("domain", i), "children": []}
        root["children"].append(mid)
        for j in range(leaves_target // fanout):
            mid["children"].append({"name": long.format("leaf", j)})
            count += 1
    return root


def test_deep_and_wide_tree_is_linear_and_recursion_free():
    data = _deep_wide_tree(depth=40, fanout=30, leaves_target=6000)
    old = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(200)  # any recursive walk over depth 40 + pytest frames would fail
        t = SkillTree.from_dict(data)
        s = t.stats()
        leaves = t.leaves()
        t.to_dict()
        t.render(max_depth=3)
    finally:
        sys.setrecursionlimit(old)
    assert s.depth == 41 and s.leaves == 6001 and len(leaves) == 6001


def test_resolve_bundled_and_paths(skill_mix_path):
    assert SkillTree.resolve(str(skill_mix_path)).stats().leaves == 118
    with pytest.raises(TreeError, match="no bundled tree"):
        SkillTree.resolve("no-such-tree")


# -- the authors' EvalTree files as they ship ------------------------------------------

def _evaltree(shared_data, name="evaltree_math_full.json"):
    return shared_data / "skill_trees" / name


def test_duplicate_siblings_merge_rename_or_error(caplog):
    data = {"name": "M", "children": [
        {"name": "A", "children": [{"name": "x"}]},
        {"name": "B"},
        {"name": "a ", "description": "second A", "children": [{"name": "y"}, {"name": "X"}]},
    ]}
    with caplog.at_level("WARNING"):
        t = SkillTree.from_dict(data, source="t.json")
    # one A, with the children of both; the twin x/X below it merges too
    assert t.leaves() == [("A", "x"), ("A", "y"), ("B",)]
    assert t.node(("A",)).description == "second A"
    assert t.merged == ["A", "A -> x"]
    assert sum("merged duplicate sibling" in r.message for r in caplog.records) == 2
    r = SkillTree.from_dict(data, on_duplicate="rename")
    assert r.leaves() == [("A", "x"), ("B",), ("a (2)", "y"), ("a (2)", "X")] and r.merged == []
    with pytest.raises(TreeError, match="at the root: duplicate sibling name 'a' \\(also 'A'\\)"):
        SkillTree.from_dict(data, on_duplicate="error")
    with pytest.raises(TreeError, match="on_duplicate must be"):
        SkillTree.from_dict(data, on_duplicate="drop")


def test_evaltree_as_shipped_loads(shared_data):
    full = _evaltree(shared_data)
    with pytest.raises(TreeError, match="duplicate sibling name"):
        SkillTree.load(full, on_duplicate="error")
    renamed = SkillTree.load(full, on_duplicate="rename").stats()
    assert (renamed.nodes, renamed.leaves, renamed.depth, renamed.top_level) == (4943, 3395, 12, 4)
    merged = SkillTree.load(full)
    s = merged.stats()
    assert len(merged.merged) == 15 and (s.nodes, s.leaves) == (4943 - 15, 3395 - 15)
    # siblings that differ only by a trailing period are distinct skills, not duplicates
    parent = next(node for _, node in merged.nodes() if {c.name for c in node.children} >= {
        "Formulating and solving systems of linear equations.", "Formulating and solving systems of linear equations"})
    assert parent is not None


def test_evaltree_raw_form_is_the_same_tree(shared_data):
    for mode in ("rename", "merge"):
        full = SkillTree.load(_evaltree(shared_data), on_duplicate=mode)
        raw = SkillTree.load(_evaltree(shared_data, "evaltree_math_full_raw.json"), on_duplicate=mode)
        assert [p for p, _ in raw.nodes()] == [p for p, _ in full.nodes()]


def test_raw_form_leaves_and_errors():
    raw = {"description": "Math", "subtrees": {
        "1": {"description": "Count.", "subtrees": 17},                       # one item: a leaf
        "0": {"description": "Algebra.", "subtrees": {
            "0": {"description": "Linear.", "subtrees": [{"description": "item cap", "subtrees": 3}]},  # cluster: a leaf
        }},
    }}
    t = SkillTree.from_dict(raw)
    assert t.root.name == "Math"
    assert t.leaves() == [("Algebra.", "Linear."), ("Count.",)]  # index-keyed dicts in key order
    with pytest.raises(TreeError, match="needs a 'description' string"):
        SkillTree.from_dict({"description": "M", "subtrees": {"0": {"subtrees": 1}}})

"""The trees shipped in skilldistill/trees: the default math tree and the demo tree."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from skilldistill.cli import app
from skilldistill.demo.generator import LEAF_CHAINS
from skilldistill.tree import SkillTree, available_bundled_trees


@pytest.fixture(scope="module")
def math_tree() -> SkillTree:
    return SkillTree.bundled("math")


@pytest.fixture(scope="module")
def demo_tree() -> SkillTree:
    return SkillTree.bundled("demo")


def test_both_trees_are_bundled():
    names = available_bundled_trees()
    assert {"math", "demo"} <= set(names)


def test_math_tree_shape(math_tree: SkillTree):
    s = math_tree.stats()
    assert math_tree.root.name == "Mathematics"
    assert s.top_level >= 7
    assert s.leaves >= 100
    assert s.described == s.nodes  # every node, root included, has a description
    # every domain has a real set of leaves, not one token child
    assert min(len(d.children) for d in math_tree.root.children) >= 8


def test_math_tree_covers_competition_subjects(math_tree: SkillTree):
    domains = {d.name.casefold() for d in math_tree.root.children}
    for subject in ("prealgebra", "algebra", "number theory", "counting and probability",
                    "geometry", "intermediate algebra", "precalculus"):
        assert subject in domains, subject


def test_math_descriptions_are_short_single_lines(math_tree: SkillTree):
    for path, node in math_tree.nodes():
        d = node.description
        assert d and "\n" not in d, path
        assert 15 <= len(d) <= 160, (path, d)
        assert d.rstrip().endswith("."), (path, d)
        assert d.casefold() != node.name.casefold(), path


def test_math_leaf_names_unique(math_tree: SkillTree):
    # attribution shows leaf names out of context at times: keep them distinct tree-wide
    names = [chain[-1].casefold() for chain in math_tree.leaves()]
    assert len(names) == len(set(names))


def test_demo_tree_matches_generator(demo_tree: SkillTree):
    assert demo_tree.leaves() == list(LEAF_CHAINS)
    s = demo_tree.stats()
    assert 4 <= s.top_level <= 6
    assert 12 <= s.leaves <= 20
    assert s.described == s.nodes


def test_resolve_by_bundled_name(math_tree: SkillTree):
    assert SkillTree.resolve("bundled:math").stats() == math_tree.stats()
    assert SkillTree.resolve("demo").stats().leaves == len(LEAF_CHAINS)


def test_round_trip_through_json(tmp_path, math_tree: SkillTree):
    out = math_tree.save(tmp_path / "math.json")
    again = SkillTree.load(out)
    assert again.leaves() == math_tree.leaves()
    assert [n.description for _, n in again.nodes()] == [n.description for _, n in math_tree.nodes()]


def test_cli_stats_on_bundled_trees(math_tree: SkillTree):
    runner = CliRunner()
    res = runner.invoke(app, ["tree", "stats", "math", "--json"])
    assert res.exit_code == 0, res.output
    stats = json.loads(res.stdout)
    assert stats["leaves"] == math_tree.stats().leaves and stats["depth"] == 2
    res = runner.invoke(app, ["tree", "validate", "demo"])
    assert res.exit_code == 0, res.output

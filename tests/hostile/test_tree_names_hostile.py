"""Hostile skill-tree names: invisible or bidirectional-control names, and empty chain elements.

A name made only of zero-width characters shows as nothing, so its chain reads ``A->`` and an
annotator's empty last step matched it; a bidirectional control reorders how the chain (and
the rest of a skill plan's line) is displayed. Both are refused naming the node.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from skilldistill.errors import TreeError
from skilldistill.tree import SkillTree


def _tree(name: str) -> dict:
    return {"name": "Mathematics", "children": [{"name": "Algebra", "children": [{"name": "Linear"}, {"name": name}]}]}


@pytest.mark.parametrize("name, needle", [
    ("\u200b", "no visible character"),              # zero-width space
    ("\u200b\u200c\u200d", "no visible character"),
    ("\ufeff", "no visible character"),              # a byte-order mark
    ("\u2060 \u2060", "no visible character"),       # word joiners around a space
    ("\u3164", "no visible character"),              # Hangul filler: a letter that shows as nothing
    ("\u2800", "no visible character"),              # blank braille pattern
    ("\u202e", "bidirectional control"),
    ("Alg\u202eebra", "bidirectional control"),      # right-to-left override inside a visible name
    ("\u2066Linear\u2069", "bidirectional control"),  # isolates
    ("Linear\u200f", "bidirectional control"),       # right-to-left mark
    ("Linear\u200b", "invisible character"),         # looks exactly like its sibling "Linear"
    ("Lin\u00adear", "invisible character"),         # soft hyphen
    ("**", "only quotes, markdown or punctuation"),  # stripped from an answer: matched its empty last step
    ("\"' .", "only quotes, markdown or punctuation"),
])
def test_invisible_and_bidi_names_are_refused_naming_the_node(tmp_path, name, needle):
    p = tmp_path / "t.json"
    p.write_text(json.dumps(_tree(name)))
    with pytest.raises(TreeError) as e:
        SkillTree.load(p)
    msg = str(e.value)
    assert needle in msg and str(p) in msg and "Algebra -> <child 1>" in msg
    assert ascii(name)[1:-1] in msg  # the name is shown escaped: an invisible one is visible in the message


def test_the_cli_refuses_them_with_one_line(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text("name: Mathematics\nchildren:\n- name: Algebra\n  children: [\"\\u200b\"]\n")
    r = subprocess.run([sys.executable, "-m", "skilldistill.cli", "tree", "validate", str(p)], capture_output=True,
                       text=True, timeout=120, env={**os.environ, "COLUMNS": "300"})
    assert r.returncode == 2 and "Traceback" not in r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "no visible character" in lines[0] and "Algebra" in lines[0]


def test_evaltree_raw_descriptions_are_names_and_are_checked_too():
    raw = {"description": "Math", "subtrees": {"0": {"description": "Algebra", "subtrees": {
        "0": {"description": "\u200b", "subtrees": 3}, "1": {"description": "Linear", "subtrees": 4}}}}}
    with pytest.raises(TreeError, match="no visible character"):
        SkillTree.from_dict(raw)


def test_joiners_inside_a_visible_name_are_kept():
    # ZWJ/ZWNJ shape letters in Persian and Indic scripts: a visible name may hold them
    t = SkillTree.from_dict(_tree("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"))
    assert ("Algebra", "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645") in t


@pytest.mark.parametrize("text", ["Algebra->", "Algebra-> ", "->Linear", "Algebra->->Linear", ""])
def test_a_chain_with_an_empty_element_is_refused_naming_it(text):
    t = SkillTree.from_dict(_tree("Quadratics"))
    with pytest.raises(KeyError) as e:
        t.parse_chain(text)
    assert "empty element" in str(e.value) and repr(text) in str(e.value)
    assert t.parse_chain("Algebra->Linear") == ("Algebra", "Linear")


def test_the_papers_and_evaltrees_trees_load_as_before(shared_data):
    folder = shared_data / "skill_trees"
    counts = {name: (len(t := SkillTree.load(folder / name)), t.stats().leaves)
              for name in ("skill_mix.json", "evaltree_math_full.json", "evaltree_math_full_raw.json")}
    assert counts == {"skill_mix.json": (126, 118), "evaltree_math_full.json": (4928, 3380),
                      "evaltree_math_full_raw.json": (4928, 3380)}

"""The labels attribution backend (skill chains from a label the corpus carries) and
`skilldistill tree from-labels`, on the MATH test set and on synthetic hierarchical labels."""

from __future__ import annotations

import collections
import json
import logging
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from skilldistill.artifacts import hash_obj, read_json
from skilldistill.attribution import (
    AnnotateConfig,
    LabelsConfig,
    run_annotate,
    tree_from_labels,
    write_label_tree,
)
from skilldistill.errors import InputError
from skilldistill.llm.base import BackendConfig, fingerprint_view
from skilldistill.tree import SkillTree

REPO = Path(__file__).resolve().parents[1]

# MATH's seven subjects (the test set's `type`, MATH-500's `subject`) -> skill_mix.json's top level
SKILL_MIX_MAP = {
    "Algebra": "Algebra",
    "Intermediate Algebra": "Inter-Algebra",
    "Prealgebra": "Pre-Algebra",
    "Geometry": "Geometry understanding",
    "Number Theory": "Number Theory",
    "Precalculus": "Precalculus",
    "Counting & Probability": "Probability",
}

SYNTHETIC_TREE = {"name": "Mathematics", "children": [
    {"name": "Algebra", "children": [
        {"name": "Linear Algebra", "children": [{"name": "Matrices"}, {"name": "Vector spaces"}]},
        {"name": "Polynomials"}]},
    {"name": "Geometry", "children": [{"name": "Triangles"}, {"name": "Circles"}]},
    {"name": "Calculus", "children": [{"name": "Limits"}, {"name": "Integrals"}]},
]}


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skilldistill.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    return [line for line in out.splitlines() if line.startswith("error:")]


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The failing command's one ``error:`` line (rich may wrap it: the lines after it are joined)."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(error_lines(proc)) == 1, proc.stdout + proc.stderr
    return " ".join(proc.stderr[proc.stderr.index("error:"):].split())


def write_map(path: Path, mapping: dict) -> Path:
    """A label map file: JSON for ``.json``, else YAML (one ``"label": chain`` line per key)."""
    text = (json.dumps(mapping) if path.suffix == ".json"
            else "".join(f"{json.dumps(k)}: {json.dumps(v)}\n" for k, v in mapping.items()))
    path.write_text(text, encoding="utf-8")
    return path


def synthetic_corpus(path: Path, math: list[dict], labels: list, *, column: str | None = None) -> Path:
    """Real MATH problems as items, each with a made-up label in its meta (or in ``column``); a
    label ``...`` (Ellipsis) leaves the key out of the meta."""
    rows = math[:len(labels)]
    metas = [json.dumps({"level": r["level"]} | ({} if lab is ... or column else {"topic": lab})) for r, lab in
             zip(rows, labels, strict=True)]
    cols = {"id": [f"math-{r['idx']}" for r in rows], "question": [r["problem"] for r in rows],
            "response": [r["solution"] for r in rows], "answer": ["" for _ in rows], "source": ["math_test"] * len(rows),
            "meta": metas}
    if column:
        cols[column] = labels
    pq.write_table(pa.table(cols), path)
    return path


@pytest.fixture(scope="module")
def math_corpus(tmp_path_factory, shared_data) -> Path:
    """The MATH test set (5,000 problems) ingested as users do: `type` lands in each row's meta."""
    out = tmp_path_factory.mktemp("math") / "corpus"
    proc = cli("ingest", str(shared_data / "corpora" / "math_test" / "test.jsonl"), "--preset", "math", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


@pytest.fixture(scope="module")
def math(shared_data) -> list[dict]:
    """The first 40 MATH test problems, as items for made-up labels."""
    with (shared_data / "corpora" / "math_test" / "test.jsonl").open() as f:
        return [json.loads(line) for _, line in zip(range(40), f, strict=False)]


@pytest.fixture(scope="module")
def math_types(shared_data) -> collections.Counter:
    return collections.Counter(json.loads(line)["type"]
                               for line in (shared_data / "corpora" / "math_test" / "test.jsonl").open())


# -- config ------------------------------------------------------------------------------
def test_new_fields_leave_existing_annotate_fingerprints_unchanged():
    """The recipe fingerprint of the annotate stage (pipeline: hash of fingerprint_view(public_dict()))
    for configs without the labels backend, computed before the labels backend existed."""
    def fp(cfg: AnnotateConfig) -> str:
        return hash_obj(fingerprint_view(cfg.public_dict()))

    qwen = BackendConfig(kind="openai", model="Qwen/Qwen2.5-32B-Instruct")
    assert fp(AnnotateConfig()) == "70f1b473efe79feeb03849e1eace9266d13d70354d92899142b0c3dccdbef7ef"
    assert fp(AnnotateConfig(backend="openai", llm=qwen)) == \
        "0811a653702bef6b8df8be8b05bc7e3f4da0d819278658f346ed378dbf85086a"
    assert fp(AnnotateConfig(backend="distilled", llm=qwen)) == \
        "8acc1da10ec5ee2ce9a8d53bc533f6f9803e9b0731647dd823a68abde7691d67"
    labels = AnnotateConfig(backend="labels", labels=LabelsConfig(label_field="subject"))
    assert labels.public_dict()["labels"] == {"label_field": "subject", "label_separator": "->", "label_map": None}
    assert "distilled" not in labels.public_dict()


def test_labels_config_is_checked():
    with pytest.raises(ValidationError, match="label_field"):
        AnnotateConfig(backend="labels")
    with pytest.raises(ValidationError, match="asks no model"):
        AnnotateConfig(backend="labels", labels=LabelsConfig(label_field="t"),
                       llm=BackendConfig(kind="openai", model="m"))
    with pytest.raises(ValidationError, match="label_separator"):
        LabelsConfig(label_field="t", label_separator="  ")
    with pytest.raises(ValidationError):
        LabelsConfig(label_field="t", label_seperator=" -> ")  # extra=forbid: a typo is refused
    with pytest.raises(ValidationError):
        LabelsConfig(label_field="")


# -- MATH: subjects to the paper's tree ---------------------------------------------------
def test_math_subjects_map_to_skill_mix_top_level_end_to_end(math_corpus, math_types, skill_mix_path, tmp_path):
    """All 5,000 MATH test problems, through the CLI: each item's chain is its subject's
    top-level node of skill_mix.json (100%), no model asked."""
    label_map = write_map(tmp_path / "subjects.yaml", SKILL_MIX_MAP)
    out = tmp_path / "annotate"
    proc = cli("annotate", "run", str(math_corpus), "--backend", "labels", "--label-field", "type", "--label-map",
               str(label_map), "--tree", str(skill_mix_path), "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = pq.read_table(out / "skills.parquet").to_pylist()
    assert len(rows) == 5000
    matched = sum(r["skills"] == [[SKILL_MIX_MAP[json.loads(r["meta"])["type"]]]] for r in rows)
    assert matched == 5000
    assert {r["skills_status"] for r in rows} == {"ok"}
    tree = SkillTree.load(skill_mix_path)
    assert all(tuple(c) in tree for r in rows for c in r["skills"])
    s = read_json(out / "summary.json")
    assert (s["items"], s["items_with_skills"], s["chains"], s["backend"], s["model"]) == (5000, 5000, 5000, "labels",
                                                                                          "labels:type")
    assert s["calls_total"] == s["calls_this_run"] == s["decisions"] == 0
    assert s["items_incomplete"] == {"failed": 0, "unparseable": 0}
    lab = s["labels"]
    assert (lab["items_labelled"], lab["missing"], lab["unmapped"]["items"], lab["map_entries"]) == (5000, 0, 0, 7)
    assert lab["chains_per_depth"] == {"1": 5000} and lab["llm_calls"] == 0
    assert (lab["llm_calls_saved_per_item"], lab["llm_calls_saved_estimate"]) == (2.0, 10000)  # skill_mix: depth 2
    per_top = collections.Counter(r["skills"][0][0] for r in rows)
    assert per_top == {SKILL_MIX_MAP[t]: n for t, n in math_types.items()}
    # profile, select and format read the same artifacts as for any backend
    assert read_json(out / "manifest.json")["counts"]["items"] == 5000
    # a rerun with the same inputs is up to date; an edited map is a new input
    again = cli("annotate", "run", str(math_corpus), "--backend", "labels", "--label-field", "type", "--label-map",
                str(label_map), "--tree", str(skill_mix_path), "--out", str(out), "--no-progress")
    assert again.returncode == 0 and "up to date" in again.stderr
    write_map(label_map, SKILL_MIX_MAP | {"Prealgebra": "Algebra"})
    cfg = AnnotateConfig(backend="labels", labels=LabelsConfig(label_field="type", label_map=str(label_map)))
    result = run_annotate(math_corpus, skill_mix_path, out, cfg, show_progress=False)
    assert not result.skipped
    assert collections.Counter(r[0][0] for r in pq.read_table(out / "skills.parquet").column("skills").to_pylist()
                               )["Algebra"] == math_types["Algebra"] + math_types["Prealgebra"]


def test_math500_subject_field_bundled_tree_with_partial_map(shared_data, tmp_path):
    """MATH-500 carries `subject`: six subjects are the bundled math tree's names as they are,
    "Counting & Probability" is mapped; every item's top level is its subject."""
    corpus = tmp_path / "corpus"
    proc = cli("ingest", str(shared_data / "benchmarks" / "math500" / "test.jsonl"), "--preset", "math", "--out",
               str(corpus))
    assert proc.returncode == 0, proc.stderr
    label_map = write_map(tmp_path / "map.json", {"counting & probability": ["Counting and Probability"]})
    cfg = AnnotateConfig(backend="labels", labels=LabelsConfig(label_field="subject", label_map=str(label_map)))
    result = run_annotate(corpus, "math", tmp_path / "annotate", cfg, show_progress=False)
    rows = pq.read_table(result.skills_path).to_pylist()
    subjects = [json.loads(r["meta"])["subject"] for r in rows]
    expect = [s.replace("Counting & Probability", "Counting and Probability") for s in subjects]
    assert len(rows) == 500 and [r["skills"] for r in rows] == [[[e]] for e in expect]
    assert result.summary["labels"]["items_labelled"] == 500 and result.summary["items_incomplete"]["failed"] == 0


# -- bad input -----------------------------------------------------------------------------
def test_missing_blank_and_unmapped_labels_fail_their_items(math, tmp_path, caplog):
    labels = ["Algebra", None, "   ", ..., "Calculus", "Algebra -> Polynomials", "Topology", "Calculus",
              "Geometry", "Geometry -> Circles"]
    corpus = synthetic_corpus(tmp_path / "c.parquet", math, labels)
    tree = SkillTree.from_dict(SYNTHETIC_TREE)
    cfg = AnnotateConfig(backend="labels", labels=LabelsConfig(label_field="topic"), max_failed_share=0.6)
    with caplog.at_level(logging.WARNING, logger="skilldistill.attribution"):
        result = run_annotate(corpus, tree, tmp_path / "ok", cfg, show_progress=False)
    rows = pq.read_table(result.skills_path).to_pylist()
    assert [r["skills_status"] for r in rows] == ["ok", "failed", "failed", "failed", "ok", "ok", "failed", "ok",
                                                  "ok", "ok"]
    assert [r["skills"] for r in rows] == [[["Algebra"]], [], [], [], [["Calculus"]], [["Algebra", "Polynomials"]], [],
                                           [["Calculus"]], [["Geometry"]], [["Geometry", "Circles"]]]
    s = result.summary
    assert s["labels"]["missing"] == 3
    assert s["labels"]["unmapped"] == {"items": 1, "labels": 1, "values": [["Topology", 1]]}
    assert s["items_incomplete"]["failed"] == 4 and s["top_unmatched"] == [["Topology", 1]]
    assert dict(s["failed_reasons"]) == {"no label in field 'topic' (missing, null or blank)": 3,
                                         f"a label naming no node of the tree {tree.root.name}": 1}
    warned = [r.getMessage() for r in caplog.records if "names no node" in r.getMessage()]
    assert len(warned) == 1 and "'Topology' (1)" in warned[0]
    # over max_failed_share (default 5%): the stage fails with the counts, nothing certified
    out = tmp_path / "strict"
    strict = AnnotateConfig(backend="labels", labels=LabelsConfig(label_field="topic"))
    with pytest.raises(InputError, match=r"4 of 10 items .*3 with no label in field 'topic', 1 with a label naming no "
                                         r"tree node: 'Topology' \(1\)"):
        run_annotate(corpus, tree, out, strict, show_progress=False)
    assert (out / "summary.json").exists() and not (out / "skills.parquet").exists()
    assert not (out / "manifest.json").exists()


def test_bad_label_maps_are_refused_naming_file_and_key(math, tmp_path):
    corpus = synthetic_corpus(tmp_path / "c.parquet", math, ["Algebra", "Geometry"])
    tree = SkillTree.from_dict(SYNTHETIC_TREE)

    def run(map_path: Path) -> None:
        cfg = AnnotateConfig(backend="labels", labels=LabelsConfig(label_field="topic", label_map=str(map_path)))
        run_annotate(corpus, tree, tmp_path / "out", cfg, show_progress=False)

    with pytest.raises(InputError, match="label map not found") as e:
        run(tmp_path / "absent.yaml")
    assert e.value.file == str(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    for text, match, key in [
        ("Algebra: [unclosed\n", "cannot parse", None),
        ("- Algebra\n- Geometry\n", "got list", None),
        ("", "empty file", None),
        ("Algebra: Algebra\nAlgebra: Geometry\n", "appears twice", None),
        ("Algebra: Algebra\nalgebra: Geometry\n", "name the same label", "algebra"),
        ("Algebra: Algebra->Groups\n", "has no node 'Algebra->Groups'", "Algebra"),
        ("Stats: Statistics\n", "has no node 'Statistics'", "Stats"),
        ("Stats: {a: b}\n", "a tree chain is text", "Stats"),
        ("Stats: 'Algebra->'\n", "empty step", "Stats"),
        ("null: Algebra\n", "is no label", "None"),
        ("Algebra: &a Algebra\nalgebra I: *a\n", "aliases", None),
    ]:
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(InputError, match=match) as e:
            run(bad)
        assert e.value.file == str(bad) and e.value.field == key, (text, e.value)
    bad.write_bytes(b"Algebra: \xff\xfe\n")
    with pytest.raises(InputError, match="cannot read the label map"):
        run(bad)
    assert not (tmp_path / "out" / "skills.parquet").exists()


def test_cli_failures_exit_2_with_one_error_line(math, tmp_path, skill_mix_path):
    corpus = synthetic_corpus(tmp_path / "c.parquet", math, ["Algebra", "Geometry", None])
    base = ["annotate", "run", str(corpus), "--tree", str(skill_mix_path), "--out", str(tmp_path / "out"),
            "--no-progress", "--backend", "labels"]
    assert "needs --label-field" in one_line_error(cli(*base))
    line = one_line_error(cli(*base, "--label-field", "subject"))
    assert str(corpus) in line and "'subject'" in line and "meta keys: level, topic" in line
    bad = write_map(tmp_path / "m.yaml", {"Algebra": "Algebra", "Geometry": "Geometry"})
    line = one_line_error(cli(*base, "--label-field", "topic", "--label-map", str(bad)))
    assert str(bad) in line and "field 'Geometry'" in line and "no node 'Geometry'" in line
    # a third of the items has no label: over max_failed_share, with the counts
    ok_map = write_map(tmp_path / "ok.yaml", {"Geometry": "Geometry understanding"})
    line = one_line_error(cli(*base, "--label-field", "topic", "--label-map", str(ok_map)))
    assert "1 of 3 items have no complete attribution (1 with no label in field 'topic', 0 with" in line
    line = one_line_error(cli(*base[:-2], "--label-field", "topic"))
    assert "--label-field and --label-map go with --backend labels" in line


# -- the reading rules -----------------------------------------------------------------------
def test_hierarchical_list_and_column_labels(math, tmp_path):
    """DeepMath-style topics: a separator with spaces, the root's name leading, case and spacing
    folded, a list of labels (several chains) in a list column, chains stopping above the
    leaves, and labels deeper than the tree stopping at their deepest node (counted)."""
    labels = [
        ["Mathematics -> Algebra -> Linear Algebra -> Matrices"],
        ["mathematics ->  algebra ->  polynomials", "Mathematics -> Geometry -> Circles"],
        ["Mathematics -> Calculus"],
        ["Mathematics -> Calculus -> Limits -> One-sided limits", "Mathematics -> Calculus -> Limits"],
        [],
        ["Mathematics -> Algebra -> Abstract Algebra -> Groups"],
    ]
    corpus = synthetic_corpus(tmp_path / "c.parquet", math, labels, column="topics")
    tree = SkillTree.from_dict(SYNTHETIC_TREE)
    cfg = AnnotateConfig(backend="labels", labels=LabelsConfig(label_field="topics", label_separator=" -> "),
                         max_failed_share=0.5)
    result = run_annotate(corpus, tree, tmp_path / "a", cfg, show_progress=False)
    rows = pq.read_table(result.skills_path).to_pylist()
    assert [r["skills"] for r in rows] == [
        [["Algebra", "Linear Algebra", "Matrices"]],
        [["Algebra", "Polynomials"], ["Geometry", "Circles"]],
        [["Calculus"]],
        [["Calculus", "Limits"]],  # the same chain twice: once
        [],
        [["Algebra"]],
    ]
    assert [r["skills_status"] for r in rows] == ["ok", "ok", "ok", "ok", "failed", "ok"]
    lab = result.summary["labels"]
    assert lab["cut_to_ancestor"] == {"labels": 2, "values": [
        ["Mathematics -> Calculus -> Limits -> One-sided limits", "Calculus->Limits", 1],
        ["Mathematics -> Algebra -> Abstract Algebra -> Groups", "Algebra", 1]]}
    assert lab["chains_per_depth"] == {"1": 2, "2": 3, "3": 1} and lab["missing"] == 1
    # a map on a label path prefix rewrites it; the parts below follow the tree from there
    label_map = write_map(tmp_path / "m.yaml", {"Mathematics -> Algebra -> Abstract Algebra": "Algebra->Polynomials",
                                                "Linear Algebra": "Algebra->Linear Algebra"})
    cfg = AnnotateConfig(backend="labels", labels=LabelsConfig(label_field="topics", label_separator=" -> ",
                                                               label_map=str(label_map)), max_failed_share=0.5,
                         max_depth=2)
    rows = pq.read_table(run_annotate(corpus, tree, tmp_path / "b", cfg, show_progress=False).skills_path).to_pylist()
    assert rows[5]["skills"] == [["Algebra", "Polynomials"]]
    assert rows[0]["skills"] == [["Algebra", "Linear Algebra"]]  # max_depth 2


# -- tree from-labels --------------------------------------------------------------------------
def test_tree_from_math_subjects_cli(math_corpus, math_types, tmp_path):
    out = tmp_path / "tree.json"
    proc = cli("tree", "from-labels", str(math_corpus), "--label-field", "type", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert cli("tree", "validate", str(out)).returncode == 0
    tree = SkillTree.load(out)
    assert tree.root.name == "Skills" and tree.depth == 1
    assert [c.name for c in tree.root.children] == [t for t, _ in math_types.most_common()]
    counts = read_json(tmp_path / "tree_counts.json")
    assert {n["node"]: n["items"] for n in counts["nodes"]} == dict(math_types)
    assert (counts["items"], counts["items_labelled"], counts["missing"], counts["merged"]) == (5000, 5000, 0, [])
    # the labels backend reads the same field onto that tree: every item on its subject
    ann = tmp_path / "annotate"
    proc = cli("annotate", str(math_corpus), "--backend", "labels", "--label-field", "type", "--tree", str(out),
               "--out", str(ann), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    rows = pq.read_table(ann / "skills.parquet").to_pylist()
    assert all(r["skills"] == [[json.loads(r["meta"])["type"]]] for r in rows)


def test_tree_from_hierarchical_labels_merges_small_nodes(math, tmp_path):
    labels = (["Math -> Algebra -> Linear"] * 10 + ["Math -> algebra -> Groups"] * 3 + ["Math -> Geometry"] * 6
              + ["Math -> Logic -> Sets"] * 2 + [None])
    corpus = synthetic_corpus(tmp_path / "c.parquet", math, labels)
    full = tree_from_labels(corpus, "topic", separator=" -> ")
    assert full.tree.root.name == "Math"
    assert [p for p, _ in full.tree.nodes()] == [(), ("Algebra",), ("Algebra", "Linear"), ("Algebra", "Groups"),
                                                 ("Geometry",), ("Logic",), ("Logic", "Sets")]
    merged = tree_from_labels(corpus, "topic", separator=" -> ", min_size=5)
    assert [p for p, _ in merged.tree.nodes()] == [(), ("Algebra",), ("Algebra", "Linear"), ("Geometry",)]
    c = merged.counts
    assert {n["node"]: (n["items"], n["ends_here"]) for n in c["nodes"]} == {
        "Algebra": (13, 3), "Algebra->Linear": (10, 10), "Geometry": (6, 6)}
    assert c["merged"] == [{"node": "Algebra->Groups", "items": 3, "into": "Algebra"},
                           {"node": "Logic", "items": 2, "into": ""}]
    assert (c["items"], c["items_labelled"], c["missing"], c["at_root"]) == (22, 21, 1, 2)
    tree_path, counts_path = write_label_tree(merged, tmp_path / "merged.yaml")
    assert counts_path.name == "merged_counts.json" and SkillTree.load(tree_path).to_dict() == merged.tree.to_dict()
    # the labels backend on the merged tree: small nodes' items stop at their parent
    cfg = AnnotateConfig(backend="labels", labels=LabelsConfig(label_field="topic"), max_failed_share=0.2)
    result = run_annotate(corpus, merged.tree, tmp_path / "a", cfg, show_progress=False)
    rows = pq.read_table(result.skills_path).to_pylist()
    assert [r["skills"] for r in rows][9:14] == [[["Algebra", "Linear"]], [["Algebra"]], [["Algebra"]], [["Algebra"]],
                                                  [["Geometry"]]]
    assert result.summary["labels"]["unmapped"]["values"] == [["Math -> Logic -> Sets", 2]]
    assert result.summary["labels"]["cut_to_ancestor"]["labels"] == 3


def test_tree_from_labels_refuses_bad_input(math, tmp_path):
    corpus = synthetic_corpus(tmp_path / "c.parquet", math, ["A -> B", "A -> C", None])
    line = one_line_error(cli("tree", "from-labels", str(corpus), "--label-field", "nope", "--out",
                              str(tmp_path / "t.json")))
    assert str(corpus) in line and "'nope'" in line
    line = one_line_error(cli("tree", "from-labels", str(corpus), "--label-field", "topic", "--min-size", "5",
                              "--out", str(tmp_path / "t.json")))
    assert "fewer than 5 items" in line and not (tmp_path / "t.json").exists()
    bad = synthetic_corpus(tmp_path / "bad.parquet", math, ["A -> \u200b", "A -> B"])
    with pytest.raises(InputError, match="cannot name a tree node") as e:
        tree_from_labels(bad, "topic")
    assert e.value.row == 1 and e.value.field == "topic"


def test_plan_counts_no_llm_call_for_the_labels_backend(tmp_path):
    from skilldistill.orchestration.plan import plan_recipe
    from skilldistill.orchestration.recipe import load_recipe

    recipe = load_recipe("recipes/qwen3-4b-openmathreasoning.yaml",
                         ["annotate={backend: labels, labels: {label_field: topic}}"])
    (annotate,) = [s for s in plan_recipe(recipe, run_dir=tmp_path / "run", sample=True).stages if s.kind == "annotate"]
    assert annotate.llm_calls == 0 and any("labels backend: no LLM calls" in n for n in annotate.notes)

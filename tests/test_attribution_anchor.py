"""Anchored walks (`annotate --anchor-field`): the decisions a label the corpus carries makes are
taken from it, the backend walks below. On MATH with the paper's tree (embedding backend), and
against an OpenAI-compatible stub that records every prompt."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from openai_stub import OpenAIStub, Reply, listed_skills  # noqa: E402
from skilldistill.artifacts import hash_obj, read_json  # noqa: E402
from skilldistill.attribution import AnnotateConfig, LabelsConfig, run_annotate  # noqa: E402
from skilldistill.attribution.config import AnchorConfig  # noqa: E402
from skilldistill.demo.generator import generate_corpus, write_corpus  # noqa: E402
from skilldistill.errors import InputError  # noqa: E402
from skilldistill.llm.base import BackendConfig, fingerprint_view  # noqa: E402
from skilldistill.tree import SkillTree  # noqa: E402
from test_labels_attribution import SKILL_MIX_MAP  # noqa: E402

REPO = Path(__file__).resolve().parents[1]



def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skilldistill.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=600)


def write_map(path: Path, mapping: dict) -> Path:
    path.write_text("".join(f"{json.dumps(k)}: {json.dumps(v)}\n" for k, v in mapping.items()), encoding="utf-8")
    return path


def math_rows(shared_data: Path, every: int, limit: int) -> list[dict]:
    rows = [json.loads(line) for line in (shared_data / "corpora" / "math_test" / "test.jsonl").open()]
    return rows[::every][:limit]


# -- MATH, the paper's tree, the embedding backend ---------------------------------------
@pytest.mark.slow
def test_math_anchored_on_subject_top_level_is_the_subject(shared_data, skill_mix_path, tmp_path):
    """200 MATH test problems (every 25th), ingested as users do (`type` in meta), through the CLI:
    every item's top level is its subject's node (100%), the walk below it is the embedding
    backend's, and no root decision is made: 200 calls saved."""
    src = tmp_path / "math200.jsonl"
    rows = math_rows(shared_data, 25, 200)
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    corpus = tmp_path / "corpus"
    proc = cli("ingest", str(src), "--preset", "math", "--out", str(corpus))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    label_map = write_map(tmp_path / "subjects.yaml", SKILL_MIX_MAP)
    out = tmp_path / "annotate"
    proc = cli("annotate", str(corpus), "--tree", str(skill_mix_path), "--out", str(out), "--anchor-field", "type",
               "--anchor-map", str(label_map), "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "walk anchored on field 'type'" in proc.stderr

    table = pq.read_table(out / "skills.parquet").to_pylist()
    assert len(table) == 200 and len({json.loads(r["meta"])["type"] for r in table}) == 7
    tree = SkillTree.load(skill_mix_path)
    for r in table:
        subject = SKILL_MIX_MAP[json.loads(r["meta"])["type"]]
        assert r["skills"] and {c[0] for c in r["skills"]} == {subject}, r["skills"]
        assert all(tuple(c) in tree and tree.node(tuple(c)).is_leaf for c in r["skills"])  # walked to the leaves
        assert r["skills_status"] == "ok"
    s = read_json(out / "summary.json")
    a = s["anchor"]
    assert (a["items_anchored"], a["unanchored"]["items"], a["walked_from_root"]) == (200, 0, 0)
    assert a["decisions_from_labels"] == a["calls_saved"] == 200
    assert a["chains_per_depth"] == {"1": 200}
    # the backend decided below the root only: one decision per item at depth 1, none at the root
    assert [row["depth"] for row in s["per_level"]] == [1]
    assert s["per_level"][0]["questions"] == 200 and s["decisions"] == 200
    # the labelled root decisions are no calls.jsonl records
    calls = [json.loads(line) for line in (out / "calls.jsonl").open()]
    assert len(calls) == 200 and all(c["node"] != "" and c.get("source") != "anchor" for c in calls)


# -- against a chat server: no root call, the cache below shared ---------------------------
def oracle(truth: dict[str, list[list[str]]], asked: list[str]):
    """Answers like a careful annotator (the listed skills on the item's true chains) and records
    the node each prompt asks about."""
    node_line = re.compile(r"sub-skills of: ([^\n]*)\n")

    def respond(request):
        prompt = request["messages"][0]["content"]
        asked.append(node_line.search(prompt)[1])
        chains = truth[max((q for q in truth if q in prompt), key=len)]
        on_chain = {name for chain in chains for name in chain}
        return Reply(content=json.dumps([n for n in listed_skills(request) if n in on_chain]))

    return respond


@pytest.fixture(scope="module")
def demo_corpus(tmp_path_factory):
    """60 demo items with their true top-level skills as a `domain` column (a list of labels)."""
    table = generate_corpus(60, seed=5)
    rows = table.to_pylist()
    domains = [list(dict.fromkeys(c[0] for c in r["true_skills"])) for r in rows]
    path = tmp_path_factory.mktemp("anchor") / "corpus.parquet"
    write_corpus(table.append_column("domain", pa.array(domains, type=pa.list_(pa.string()))), path)
    return path, {r["question"]: r["true_skills"] for r in rows}, domains


def _chat(url: str, **anchor) -> AnnotateConfig:
    llm = BackendConfig(kind="openai", model="stub-model", base_urls=[url], api_key="k", max_retries=1,
                        request_timeout_s=5)
    return AnnotateConfig(backend="openai", llm=llm, **({"anchor": AnchorConfig(**anchor)} if anchor else {}))


def test_anchored_chat_walk_asks_no_root_question_and_shares_the_cache_below(demo_corpus, tmp_path):
    path, truth, domains = demo_corpus
    root = SkillTree.resolve("demo").root.name
    asked: list[str] = []
    with OpenAIStub(responder=oracle(truth, asked)) as stub:
        anchored = run_annotate(path, "demo", tmp_path / "a", _chat(stub.base_url, label_field="domain"),
                                show_progress=False)
        calls_anchored, nodes_anchored = stub.chat_calls, list(asked)
        plain = run_annotate(path, "demo", tmp_path / "p", _chat(stub.base_url), show_progress=False)
        calls_plain = stub.chat_calls - calls_anchored
        # the plain walk in the anchored run's folder: only the root questions are new, the
        # decisions below them are the very questions the anchored walk asked
        before = stub.chat_calls
        again = run_annotate(path, "demo", tmp_path / "a", _chat(stub.base_url), show_progress=False)
        calls_again = stub.chat_calls - before
    assert root not in nodes_anchored and nodes_anchored  # never the root question
    assert all(n.startswith(f"{root} -> ") for n in nodes_anchored)
    s = anchored.summary
    assert s["anchor"]["items_anchored"] == 60 and s["anchor"]["calls_saved"] == 60
    texts = len(truth)  # items with the same text share their decisions
    assert calls_plain - calls_anchored == texts  # exactly the root questions
    assert s["calls_this_run"] == calls_anchored and plain.summary["calls_this_run"] == calls_plain
    assert calls_again == texts and again.summary["decisions_cached"] == calls_anchored
    rows_a = pq.read_table(tmp_path / "a" / "skills.parquet").to_pylist()
    rows_p = pq.read_table(tmp_path / "p" / "skills.parquet").to_pylist()
    for ra, rp, dom in zip(rows_a, rows_p, domains, strict=True):
        assert [c[0] for c in ra["skills"]] and {c[0] for c in ra["skills"]} == set(dom)
        assert set(map(tuple, ra["skills"])) == set(map(tuple, truth[ra["question"]]))
        assert set(map(tuple, rp["skills"])) == set(map(tuple, ra["skills"]))  # the oracle agrees with the labels


def test_anchored_distilled_walk_asks_the_llm_below_the_anchor_only(demo_corpus, tmp_path):
    """The distilled backend anchored: its LLM sample walk and its classifiers' walk start below
    the labels; the root classifier learns the anchor labels of the training items."""
    path, truth, domains = demo_corpus
    root = SkillTree.resolve("demo").root.name
    asked: list[str] = []
    with OpenAIStub(responder=oracle(truth, asked)) as stub:
        llm = BackendConfig(kind="openai", model="stub-model", base_urls=[stub.base_url], api_key="k", max_retries=1,
                            request_timeout_s=5)
        cfg = AnnotateConfig(backend="distilled", llm=llm, anchor=AnchorConfig(label_field="domain"),
                             distilled={"sample_size": 30, "holdout_fraction": 0.2, "min_examples": 5, "strata": 4})
        res = run_annotate(path, "demo", tmp_path / "out", cfg, show_progress=False)
    assert asked and root not in asked
    rows = pq.read_table(res.skills_path).to_pylist()
    assert all({c[0] for c in r["skills"]} == set(dom) for r, dom in zip(rows, domains, strict=True))
    d = res.summary["distilled"]
    assert res.summary["anchor"]["calls_saved"] == 60 and d["held_out_agreement"]["with_fallback"]["top_precision"] == 1.0
    assert d["llm_calls"]["total"] == res.summary["calls_this_run"] == stub.chat_calls


def test_a_hierarchical_anchor_decides_every_level_it_names(demo_corpus, tmp_path):
    """The true chains themselves as the anchor (a list of chains per item, already split): every
    decision is the label's, the server is never asked, the chains are the labels."""
    path, truth, _ = demo_corpus
    asked: list[str] = []
    with OpenAIStub(responder=oracle(truth, asked)) as stub:
        res = run_annotate(path, "demo", tmp_path / "out", _chat(stub.base_url, label_field="true_skills"),
                           show_progress=False)
        assert stub.chat_calls == 0
    rows = pq.read_table(res.skills_path).to_pylist()
    assert all(set(map(tuple, r["skills"])) == set(map(tuple, r["true_skills"])) for r in rows)
    a = res.summary["anchor"]
    assert a["chains_per_depth"] == {"2": sum(len({tuple(c) for c in r["true_skills"]}) for r in rows)}
    # per item: the root, and each chosen domain
    assert a["calls_saved"] == sum(1 + len({c[0] for c in r["true_skills"]}) for r in rows)
    assert res.summary["decisions"] == 0 and res.summary["per_level"] == []


# -- bad input: counted and listed, never silent ------------------------------------------
def small_math_corpus(path: Path, shared_data: Path, types: list) -> Path:
    """Real MATH problems with made-up `type` labels in their meta (``...``: no key)."""
    rows = math_rows(shared_data, 1, len(types))
    metas = [json.dumps({"level": r["level"]} | ({} if t is ... else {"type": t})) for r, t in zip(rows, types, strict=True)]
    pq.write_table(pa.table({"id": [f"math-{k}" for k in range(len(rows))], "question": [r["problem"] for r in rows],
                             "response": [r["solution"] for r in rows], "meta": metas}), path)
    return path


BAD_TYPES = ["Algebra", "Geometry", ..., "Calculus", "Number Theory", "  ", "Calculus", "Precalculus", "Prealgebra",
             "Algebra", "Counting & Probability", "Intermediate Algebra"]


def test_missing_and_unmapped_labels_are_walked_from_the_root_and_counted(shared_data, skill_mix_path, tmp_path,
                                                                            caplog):
    corpus = small_math_corpus(tmp_path / "c.parquet", shared_data, BAD_TYPES)
    label_map = write_map(tmp_path / "m.yaml", SKILL_MIX_MAP)
    cfg = AnnotateConfig(anchor=AnchorConfig(label_field="type", label_map=str(label_map)))
    with caplog.at_level(logging.WARNING):
        res = run_annotate(corpus, skill_mix_path, tmp_path / "out", cfg, show_progress=False)
    a = res.summary["anchor"]
    assert a["items_anchored"] == 8 and a["walked_from_root"] == 4
    assert a["unanchored"] == {"items": 4, "missing": 2, "unmapped": 2, "values": [["Calculus", 2]]}
    assert a["calls_saved"] == 8
    assert "4 of 12 items have no anchor in 'type'" in caplog.text and "'Calculus' (2)" in caplog.text
    depth0 = [row for row in res.summary["per_level"] if row["depth"] == 0]
    assert depth0 == [{"depth": 0, "questions": 4, "new": 4}]  # only the unanchored items' root decisions
    rows = pq.read_table(res.skills_path).to_pylist()
    assert all(r["skills"] and r["skills_status"] == "ok" for r in rows)  # the unanchored ones walked normally
    for r, t in zip(rows, BAD_TYPES, strict=True):
        if t in SKILL_MIX_MAP:
            assert {c[0] for c in r["skills"]} == {SKILL_MIX_MAP[t]}


def test_required_anchor_fails_the_unanchored_items(shared_data, skill_mix_path, tmp_path):
    corpus = small_math_corpus(tmp_path / "c.parquet", shared_data, BAD_TYPES)
    label_map = write_map(tmp_path / "m.yaml", SKILL_MIX_MAP)
    anchor = AnchorConfig(label_field="type", label_map=str(label_map), required=True)
    with pytest.raises(InputError) as e:
        run_annotate(corpus, skill_mix_path, tmp_path / "out", AnnotateConfig(anchor=anchor), show_progress=False)
    msg = str(e.value)
    assert "4 of 12 items have no complete attribution" in msg and "2 without a label" in msg
    assert "'Calculus' (2)" in msg and "--anchor-map" in msg
    assert not (tmp_path / "out" / "skills.parquet").exists()

    res = run_annotate(corpus, skill_mix_path, tmp_path / "out", AnnotateConfig(anchor=anchor, max_failed_share=0.5),
                       show_progress=False)
    rows = pq.read_table(res.skills_path).to_pylist()
    for r, t in zip(rows, BAD_TYPES, strict=True):
        ok = t in SKILL_MIX_MAP
        assert (r["skills_status"] == "ok") == ok and bool(r["skills"]) == ok
    assert res.summary["items_incomplete"]["failed"] == 4
    assert res.summary["anchor"]["walked_from_root"] == 0
    assert all(row["depth"] == 1 for row in res.summary["per_level"])  # nobody walked from the root


def test_a_map_naming_no_tree_node_is_refused_before_any_work(shared_data, skill_mix_path, tmp_path):
    corpus = small_math_corpus(tmp_path / "c.parquet", shared_data, BAD_TYPES)
    label_map = write_map(tmp_path / "m.yaml", {"Algebra": "Linear Algebra"})
    with pytest.raises(InputError, match="no node 'Linear Algebra'") as e:
        run_annotate(corpus, skill_mix_path, tmp_path / "out",
                     AnnotateConfig(anchor=AnchorConfig(label_field="type", label_map=str(label_map))),
                     show_progress=False)
    assert str(e.value.file) == str(label_map) and e.value.field == "Algebra"


# -- config, fingerprints, command line ---------------------------------------------------
def test_anchor_config_is_checked_and_in_the_fingerprint_only_when_set():
    def fp(cfg: AnnotateConfig) -> str:
        return hash_obj(fingerprint_view(cfg.public_dict()))

    assert fp(AnnotateConfig()) == "70f1b473efe79feeb03849e1eace9266d13d70354d92899142b0c3dccdbef7ef"  # as before
    assert fp(AnnotateConfig(anchor=AnchorConfig(label_map="m.yaml"))) == fp(AnnotateConfig())  # no field: no anchor
    anchored = AnnotateConfig(anchor=AnchorConfig(label_field="type"))
    assert anchored.public_dict()["anchor"] == {"label_field": "type", "label_separator": "->", "label_map": None,
                                                "required": False}
    assert fp(anchored) != fp(AnnotateConfig())
    assert fp(AnnotateConfig(anchor=AnchorConfig(label_field="type", required=True))) != fp(anchored)
    with pytest.raises(ValidationError, match="anchor goes with a backend that walks the tree"):
        AnnotateConfig(backend="labels", labels=LabelsConfig(label_field="t"), anchor=AnchorConfig(label_field="t"))
    with pytest.raises(ValidationError):
        AnchorConfig(label_field="t", requried=True)  # extra=forbid


def test_an_edited_anchor_map_reruns_the_stage(shared_data, skill_mix_path, tmp_path):
    corpus = small_math_corpus(tmp_path / "c.parquet", shared_data, ["Algebra", "Geometry", "Prealgebra"])
    label_map = write_map(tmp_path / "m.yaml", SKILL_MIX_MAP)
    cfg = AnnotateConfig(anchor=AnchorConfig(label_field="type", label_map=str(label_map)))
    run_annotate(corpus, skill_mix_path, tmp_path / "out", cfg, show_progress=False)
    assert run_annotate(corpus, skill_mix_path, tmp_path / "out", cfg, show_progress=False).skipped
    write_map(label_map, SKILL_MIX_MAP | {"Prealgebra": "Algebra"})
    res = run_annotate(corpus, skill_mix_path, tmp_path / "out", cfg, show_progress=False)
    assert not res.skipped
    assert [r[0][0] for r in pq.read_table(res.skills_path).column("skills").to_pylist()] == ["Algebra",
                                                                                              "Geometry understanding",
                                                                                              "Algebra"]


@pytest.mark.parametrize(("args", "message"), [
    (["--anchor-map", "m.yaml"], "--anchor-map and --anchor-required go with --anchor-field"),
    (["--anchor-required"], "--anchor-map and --anchor-required go with --anchor-field"),
    (["--backend", "labels", "--label-field", "type", "--anchor-field", "type"],
     "--anchor-field goes with a backend that walks the tree"),
])
def test_cli_refuses_anchor_flags_that_do_not_go_together(tmp_path, args, message):
    proc = cli("annotate", str(tmp_path / "corpus.parquet"), "--out", str(tmp_path / "out"), *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in " ".join(proc.stderr.split())

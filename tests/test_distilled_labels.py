"""The distilled backend learning its classifiers from a labels file (`--train-labels`) instead
of an LLM-labelled sample, with TF-IDF or MiniLM features; no LLM, or an LLM for the unsure ones."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from openai_stub import OpenAIStub, Reply, listed_skills  # noqa: E402
from skilldistill.artifacts import hash_obj  # noqa: E402
from skilldistill.attribution import AnnotateConfig, DistilledConfig, annotate, chain_agreement  # noqa: E402
from skilldistill.attribution.config import AnchorConfig  # noqa: E402
from skilldistill.attribution.train_labels import read_train_labels  # noqa: E402
from skilldistill.demo.generator import generate_corpus, write_corpus  # noqa: E402
from skilldistill.errors import InputError  # noqa: E402
from skilldistill.llm.base import BackendConfig, fingerprint_view  # noqa: E402
from skilldistill.tree import SkillTree  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """400 demo items (templated problems with their true skills) and a seeded 40% of them as labels."""
    table = generate_corpus(400, seed=3)
    rows = table.to_pylist()
    folder = tmp_path_factory.mktemp("distilled_labels")
    path = folder / "corpus.parquet"
    write_corpus(table, path)
    picked = sorted(np.random.default_rng(0).choice(400, size=160, replace=False).tolist())
    labels = folder / "labels.jsonl"
    labels.write_text("".join(json.dumps({"id": rows[i]["id"], "skills": ["->".join(c) for c in rows[i]["true_skills"]]})
                              + "\n" for i in picked), encoding="utf-8")
    return path, rows, picked, labels


def _cfg(labels: Path, features: str = "tfidf", llm: BackendConfig | None = None, **distilled) -> AnnotateConfig:
    d = {"holdout_fraction": 0.25, "min_examples": 10, "train_labels": str(labels), "features": features} | distilled
    return AnnotateConfig(backend="distilled", llm=llm, distilled=DistilledConfig(**d))


def _truth(rows: list[dict]) -> dict[str, set]:
    return {r["id"]: {tuple(c) for c in r["true_skills"]} for r in rows}


def test_tfidf_classifiers_learn_a_labels_file_with_no_llm(corpus, tmp_path):
    path, rows, picked, labels = corpus
    res = annotate(path, "demo", tmp_path / "out", _cfg(labels), show_progress=False)
    d, s = res.summary["distilled"], res.summary
    assert d["sample"]["source"] == "labels file"
    assert (d["sample"]["items"], d["sample"]["train"], d["sample"]["held_out"]) == (160, 120, 40)
    assert d["labels"] == {"file": str(labels), "rows": 160, "items": 160,
                           "chains": sum(len({tuple(c) for c in rows[i]["true_skills"]}) for i in picked),
                           "skipped": {"status_not_ok": 0, "no_chain": 0}}
    assert d["classifiers"]["features"].startswith("tfidf-word12-sublinear-v1:")
    assert d["classifiers"]["nodes_llm_only"] == 0  # no LLM: every node with labels below it decides
    assert d["decisions"]["llm"] == 0 and d["llm_calls"]["total"] == 0 and s["calls_this_run"] == 0
    assert d["llm_calls"]["all_llm_estimate"] is None  # no LLM sample to estimate from
    assert s["model"].startswith("distilled:labels:")
    agree = d["held_out_agreement"]["with_fallback"]
    assert agree["items"] == 40 and agree["top_precision"] >= 0.85 and agree["top_recall"] >= 0.8, agree
    assert agree["leaf_precision"] >= 0.6, agree

    out = pq.read_table(res.skills_path).to_pylist()
    truth = _truth(rows)
    labelled = {rows[i]["id"] for i in picked}
    for r in out:  # labelled items keep their labels; every other item gets classifier chains, in the tree
        if r["id"] in labelled:
            assert {tuple(c) for c in r["skills"]} == truth[r["id"]]
        assert r["skills"] and r["skills_status"] == "ok"
    rest = [r for r in out if r["id"] not in labelled]
    score = chain_agreement([r["skills"] for r in rest], [sorted(truth[r["id"]]) for r in rest])
    assert score["top_precision"] >= 0.85 and score["leaf_recall"] >= 0.6, score
    sample = json.loads((tmp_path / "out" / "sample.json").read_text())
    assert set(sample["train"]) | set(sample["held_out"]) == labelled

    # deterministic: a rebuild from scratch gives the same labels
    again = annotate(path, "demo", tmp_path / "again", _cfg(labels), show_progress=False)
    assert pq.read_table(again.skills_path).to_pylist() == out
    # up to date until the labels file changes
    assert annotate(path, "demo", tmp_path / "out", _cfg(labels), show_progress=False).skipped
    edited = tmp_path / "edited.jsonl"
    edited.write_text("".join(labels.read_text().splitlines(keepends=True)[:-5]))
    labels_copy = tmp_path / "labels.jsonl"
    labels_copy.write_text(labels.read_text())
    annotate(path, "demo", tmp_path / "copy", _cfg(labels_copy), show_progress=False)
    labels_copy.write_text(edited.read_text())
    assert not annotate(path, "demo", tmp_path / "copy", _cfg(labels_copy), show_progress=False).skipped


def test_minilm_features_from_a_labels_file(corpus, tmp_path):
    path, rows, picked, labels = corpus
    res = annotate(path, "demo", tmp_path / "out", _cfg(labels, "minilm"), show_progress=False)
    d = res.summary["distilled"]
    assert "MiniLM" in d["classifiers"]["features"] or "minilm" in d["classifiers"]["features"].lower()
    with np.load(tmp_path / "out" / "features.npz", allow_pickle=False) as z:
        assert z["vectors"].shape == (400, 384)
    agree = d["held_out_agreement"]["classifier_only"]
    assert agree["top_precision"] >= 0.7 and agree["top_recall"] >= 0.7, agree


def test_top_level_labels_end_the_chains_at_the_top_level(corpus, tmp_path):
    """Labels that name only the top level (as MATH's subject): with no LLM nothing decides below
    it, so every chain ends there; the held-out agreement is measured at that depth."""
    path, rows, picked, _ = corpus
    labels = tmp_path / "top.jsonl"
    labels.write_text("".join(json.dumps({"id": rows[i]["id"], "skills": sorted({c[0] for c in rows[i]["true_skills"]})})
                              + "\n" for i in picked), encoding="utf-8")
    res = annotate(path, "demo", tmp_path / "out", _cfg(labels), show_progress=False)
    out = pq.read_table(res.skills_path).to_pylist()
    assert all(r["skills"] and all(len(c) == 1 for c in r["skills"]) for r in out)
    d = res.summary["distilled"]
    assert d["decisions"]["no_examples"] > 0 and d["classifiers"]["nodes"] == 1  # the root alone learnt
    top = d["held_out_agreement"]["with_fallback"]
    assert top["leaf_precision"] == top["top_precision"] >= 0.85


def test_an_llm_decides_what_the_classifiers_are_unsure_of(corpus, tmp_path):
    path, rows, picked, labels = corpus
    truth = {r["question"]: r["true_skills"] for r in rows}

    def oracle(request):
        prompt = request["messages"][0]["content"]
        chains = truth[max((q for q in truth if q in prompt), key=len)]
        return Reply(content=json.dumps([n for n in listed_skills(request) if n in {x for c in chains for x in c}]))

    with OpenAIStub(responder=oracle) as stub:
        llm = BackendConfig(kind="openai", model="stub-model", base_urls=[stub.base_url], api_key="k", max_retries=1,
                            request_timeout_s=5)
        res = annotate(path, "demo", tmp_path / "out", _cfg(labels, llm=llm, uncertain_band=(0.3, 0.7)),
                       show_progress=False)
        calls = stub.chat_calls
    d = res.summary["distilled"]
    assert d["llm_calls"]["sample"] == 0  # the labels file replaced the LLM's sample
    assert d["llm_calls"]["total"] == d["llm_calls"]["fallback"] + d["llm_calls"]["held_out_check"] == calls
    assert d["decisions"]["llm"] == d["llm_calls"]["fallback"]
    assert 0 < calls < 240 * 2  # fewer than an LLM walk of the unlabelled items
    assert res.summary["model"] == "stub-model"
    assert d["held_out_agreement"]["with_fallback"]["leaf_precision"] >= 0.9


def test_anchored_distilled_walk_from_labels(corpus, tmp_path):
    """Anchor and labels file together: the anchor takes the root, the classifiers the rest."""
    path, rows, picked, labels = corpus
    table = pq.read_table(path)
    domains = [sorted({c[0] for c in r["true_skills"]}) for r in rows]
    anchored = tmp_path / "anchored.parquet"
    pq.write_table(table.append_column("domain", pa.array(domains, type=pa.list_(pa.string()))), anchored)
    cfg = _cfg(labels).model_copy(update={"anchor": AnchorConfig(label_field="domain")})
    res = annotate(anchored, "demo", tmp_path / "out", cfg, show_progress=False)
    out = pq.read_table(res.skills_path).to_pylist()
    assert all({c[0] for c in r["skills"]} == set(dom) for r, dom in zip(out, domains, strict=True))
    assert res.summary["anchor"]["calls_saved"] == 400
    assert res.summary["distilled"]["held_out_agreement"]["with_fallback"]["top_precision"] == 1.0


# -- formats -----------------------------------------------------------------------------
def test_labels_file_formats_read_alike(corpus, tmp_path):
    """JSONL, a previous annotate's skills.parquet (rows not ok skipped) and CSV (one row per chain,
    or a JSON list in a cell) give the same chains."""
    path, rows, picked, labels = corpus
    tree = SkillTree.resolve("demo")
    ids = [r["id"] for r in rows]
    want = read_train_labels(labels, ids, tree).chains
    assert {i: set(c) for i, c in want.items()} == {i: {tuple(c) for c in rows[i]["true_skills"]} for i in picked}

    skills = pq.read_table(path).select(["id", "question"]).to_pylist()
    status = ["ok" if k in picked else "failed" for k in range(400)]
    chains = [[list(c) for c in rows[k]["true_skills"]] if k in picked else [] for k in range(400)]
    parquet = tmp_path / "skills.parquet"
    pq.write_table(pa.table({"id": [r["id"] for r in skills], "question": [r["question"] for r in skills],
                             "skills": pa.array(chains, type=pa.list_(pa.list_(pa.string()))),
                             "skills_status": status}), parquet)
    got = read_train_labels(parquet, ids, tree)
    assert got.chains == want and got.section["skipped"] == {"status_not_ok": 240, "no_chain": 0}

    per_chain = tmp_path / "per_chain.csv"
    with per_chain.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "skills"])
        for i in picked:
            for c in rows[i]["true_skills"]:
                w.writerow([rows[i]["id"], " -> ".join(c).lower()])  # spacing and case aside
    got = read_train_labels(per_chain, ids, tree)
    assert got.chains == want and got.section["items"] == 160

    json_cells = tmp_path / "json_cells.csv"
    with json_cells.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "chains"])
        for i in picked:
            w.writerow([rows[i]["id"], json.dumps([["Mathematics", *c] for c in rows[i]["true_skills"]])])  # root named
    assert read_train_labels(json_cells, ids, tree).chains == want


# -- bad input ---------------------------------------------------------------------------
def test_ids_that_do_not_match_the_corpus_are_refused_with_examples(corpus, tmp_path):
    path, rows, picked, labels = corpus
    wrong = tmp_path / "wrong.jsonl"
    lines = labels.read_text().splitlines()
    wrong.write_text("\n".join(lines[:150] + [json.dumps({"id": f"item-{k}", "skills": ["Algebra"]}) for k in range(7)]))
    with pytest.raises(InputError) as e:
        annotate(path, "demo", tmp_path / "out", _cfg(wrong), show_progress=False)
    msg = str(e.value)
    assert "7 of the 157 ids in the labels file are not ids of the corpus" in msg
    assert "'item-0', 'item-1', 'item-2', 'item-3', 'item-4'" in msg and "'item-5'" not in msg
    assert f"like {rows[0]['id']!r}" in msg and "(400 items)" in msg
    assert e.value.row == 151 and e.value.field == "id"
    assert not (tmp_path / "out" / "skills.parquet").exists()


def test_chains_not_in_the_tree_are_refused_naming_the_row(corpus, tmp_path):
    path, rows, picked, _ = corpus
    ids = [r["id"] for r in rows]
    tree = SkillTree.resolve("demo")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": ids[0], "skills": ["Algebra->Linear equations"]}) + "\n"
                   + json.dumps({"id": ids[1], "skills": ["Algebra->Matrices"]}) + "\n")
    with pytest.raises(InputError, match="chain 'Algebra->Matrices' is not in the tree .*no node 'Algebra->Matrices'") as e:
        read_train_labels(bad, ids, tree)
    assert (e.value.row, e.value.field) == (2, "skills")
    bad.write_text(json.dumps({"id": ids[0], "skills": ["Calculus"]}) + "\n")
    with pytest.raises(InputError, match="no node 'Calculus' \\(its top level: Arithmetic"):
        read_train_labels(bad, ids, tree)
    for text, match in ((json.dumps({"id": "", "skills": ["Algebra"]}), "empty id"),
                        (json.dumps({"item": ids[0], "skills": []}), "needs 'id' and 'skills'"),
                        (json.dumps({"id": ids[0], "skills": 3}), "skills is a list of chains"),
                        ("not json", "not JSON"),
                        (json.dumps({"id": ids[0], "skills": ["Algebra->->x"]}), "empty step")):
        bad.write_text(text + "\n")
        with pytest.raises(InputError, match=match):
            read_train_labels(bad, ids, tree)
    with pytest.raises(InputError, match="labels file not found"):
        read_train_labels(tmp_path / "nope.jsonl", ids, tree)
    bad.write_text(json.dumps({"id": ids[0], "skills": []}) + "\n")
    with pytest.raises(InputError, match="no labelled item"):
        read_train_labels(bad, ids, tree)


# -- config and command line ---------------------------------------------------------------
def test_config_fingerprints_and_checks():
    def fp(cfg: AnnotateConfig) -> str:
        return hash_obj(fingerprint_view(cfg.public_dict()))

    qwen = BackendConfig(kind="openai", model="Qwen/Qwen2.5-32B-Instruct")
    # the settings added later leave a distilled run's fingerprint as it was at their defaults
    assert fp(AnnotateConfig(backend="distilled", llm=qwen)) == \
        "8acc1da10ec5ee2ce9a8d53bc533f6f9803e9b0731647dd823a68abde7691d67"
    tfidf = AnnotateConfig(backend="distilled", llm=qwen, distilled=DistilledConfig(features="tfidf"))
    assert tfidf.public_dict()["distilled"]["features"] == "tfidf" and fp(tfidf) != fp(AnnotateConfig(backend="distilled", llm=qwen))
    no_llm = AnnotateConfig(backend="distilled", distilled=DistilledConfig(train_labels="l.jsonl"))
    assert no_llm.llm is None and no_llm.public_dict()["distilled"]["train_labels"] == "l.jsonl"
    with pytest.raises(ValidationError, match="needs an 'llm' section .* or distilled.train_labels"):
        AnnotateConfig(backend="distilled")
    with pytest.raises(ValidationError):
        DistilledConfig(features="bow")


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skilldistill.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300, env={**os.environ, "COLUMNS": "200", **(env or {})})


def test_command_line_learns_from_a_labels_file(corpus, tmp_path):
    path, rows, picked, labels = corpus
    proc = cli("annotate", str(path), "--tree", "demo", "--out", str(tmp_path / "out"), "--backend", "distilled",
               "--train-labels", str(labels), "--features", "tfidf", "--holdout-fraction", "0.25", "--min-examples", "10",
               "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout + proc.stderr
    assert "labels file (rows / items / chains)" in text and "held-out agreement" in text, text
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["distilled"]["labels"]["items"] == 160 and s["calls_this_run"] == 0

    for args, message in ((["--backend", "embedding", "--train-labels", str(labels)], "--train-labels goes with --backend distilled"),
                          (["--backend", "distilled", "--train-labels", str(labels), "--model", "m"], "give --llm-backend too"),
                          (["--backend", "distilled", "--model", "m"], "--llm-backend openai, vllm or transformers"),
                          (["--backend", "distilled", "--train-labels", str(labels), "--features", "bow"], "features")):
        proc = cli("annotate", str(path), "--tree", "demo", "--out", str(tmp_path / "x"), *args)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert message in " ".join(proc.stderr.split()), proc.stderr

"""The distilled attribution backend against an OpenAI-compatible stub whose answers follow
each demo item's known skills: the classifiers learn them from the LLM-labelled sample."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from openai_stub import OpenAIStub, Reply, listed_skills  # noqa: E402
from skilldistill.attribution import (  # noqa: E402
    AnnotateConfig,
    DistilledConfig,
    annotate,
    chain_agreement,
    load_node_models,
    stratified_sample,
)
from skilldistill.demo.generator import generate_corpus, write_corpus  # noqa: E402
from skilldistill.llm.base import BackendConfig  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rows = generate_corpus(400, seed=3, as_table=False)
    path = tmp_path_factory.mktemp("distilled") / "corpus.parquet"
    write_corpus(generate_corpus(400, seed=3), path)
    return path, {r["question"]: r["true_skills"] for r in rows}


def oracle(truth: dict[str, list[list[str]]]):
    """Answers like a careful annotator: the listed skills on the item's true chains."""
    def respond(request):
        prompt = request["messages"][0]["content"]
        chains = truth[max((q for q in truth if q in prompt), key=len)]  # one question can be part of another
        on_chain = {name for chain in chains for name in chain}
        return Reply(content=json.dumps([n for n in listed_skills(request) if n in on_chain]))

    return respond


def _cfg(url, **distilled):
    d = {"sample_size": 160, "holdout_fraction": 0.25, "min_examples": 10, "strata": 8} | distilled
    return AnnotateConfig(backend="distilled", llm=BackendConfig(kind="openai", model="stub-model", base_urls=[url],
                                                                 api_key="k", max_retries=1, request_timeout_s=5),
                          distilled=DistilledConfig(**d))


def test_classifiers_learn_the_llm_labels_and_save_calls(corpus, tmp_path):
    path, truth = corpus
    out = tmp_path / "out"
    with OpenAIStub(responder=oracle(truth)) as stub:
        res = annotate(path, "demo", out, _cfg(stub.base_url), show_progress=False)
        calls_first = stub.chat_calls
        d = res.summary["distilled"]
        assert d["sample"] == {"items": 160, "train": 120, "held_out": 40, "strata": 8,
                               "llm_calls_per_item": d["sample"]["llm_calls_per_item"]}
        assert 1.5 <= d["sample"]["llm_calls_per_item"] <= 3  # root + each chosen domain
        assert d["decisions"]["items"] == 240
        assert d["decisions"]["fallback_share"] < 0.3
        calls = d["llm_calls"]
        assert calls["total"] == calls["sample"] + calls["fallback"] + calls["held_out_check"]
        assert calls["total"] == res.summary["calls_this_run"] == calls_first  # every request the stub saw, counted
        assert d["llm_calls"]["saved_share"] > 0.4  # the LLM labelled 40% of the items, plus a few fallbacks
        agree = d["held_out_agreement"]
        assert agree["with_fallback"]["items"] == 40
        assert agree["with_fallback"]["top_precision"] >= 0.9 and agree["with_fallback"]["top_recall"] >= 0.9
        assert agree["classifier_only"]["leaf_recall"] >= 0.7

        rows = pq.read_table(out / "skills.parquet").to_pylist()
        sample = json.loads((out / "sample.json").read_text())
        in_sample = set(sample["train"]) | set(sample["held_out"])
        assert len(in_sample) == 160
        for r in rows:  # sample items carry the LLM's own labels
            if r["id"] in in_sample:
                assert set(map(tuple, r["skills"])) == set(map(tuple, truth[r["question"]]))  # (true_skills can repeat a chain)
        rest = [r for r in rows if r["id"] not in in_sample]
        score = chain_agreement([r["skills"] for r in rest], [truth[r["question"]] for r in rest])
        assert score["leaf_precision"] >= 0.8 and score["leaf_recall"] >= 0.8, score

        # the decisions are cached: a rebuild asks nothing and gives the same labels
        again = annotate(path, "demo", out, _cfg(stub.base_url), show_progress=False, force=True)
        assert stub.chat_calls == calls_first and again.summary["calls_this_run"] == 0
        assert pq.read_table(out / "skills.parquet").to_pylist() == rows

    # the classifiers are plain arrays with their training-set hash, and load without pickle
    index = json.loads((out / "classifiers.json").read_text())
    assert index["training_set"] == d["classifiers"]["training_set"]
    assert {tuple(n["path"]) for n in index["nodes"]} >= {()}
    t_hash, models = load_node_models(out)
    assert t_hash == index["training_set"] and models[()].weights is not None
    with np.load(out / "features.npz", allow_pickle=False) as z:
        assert z["vectors"].shape == (400, 384)


def test_nodes_without_enough_examples_leave_every_decision_to_the_llm(corpus, tmp_path):
    path, truth = corpus
    with OpenAIStub(responder=oracle(truth)) as stub:
        res = annotate(path, "demo", tmp_path / "out", _cfg(stub.base_url, min_examples=10_000), show_progress=False)
    d = res.summary["distilled"]
    assert d["classifiers"]["nodes_with_classifier"] == 0
    assert d["decisions"]["fallback_share"] == 1.0 and d["decisions"]["classifier"] == 0
    assert d["held_out_agreement"]["with_fallback"]["leaf_precision"] == 1.0  # the LLM's own cached answers
    assert res.summary["items_with_skills"] == 400


def test_the_sample_follows_the_clusters():
    rng = np.random.default_rng(0)
    big = rng.normal(0, 0.1, (900, 8)) + np.eye(8)[0]
    small = rng.normal(0, 0.1, (100, 8)) + np.eye(8)[1]
    picked = stratified_sample(np.vstack([big, small]), 100, strata=2, seed=0)
    assert len(picked) == 100 and len(set(picked.tolist())) == 100
    assert sum(i >= 900 for i in picked) == 10  # the small cluster gets its 10%
    assert (stratified_sample(big, 5000, 4, 0) == np.arange(900)).all()  # asked for more than there is: all


def test_chain_agreement_by_hand():
    pred = [[["A", "a1"], ["B", "b1"]], [["A", "a2"]]]
    ref = [[["A", "a1"]], [["A", "a1"], ["C", "c1"]]]
    s = chain_agreement(pred, ref)
    # item 1: leaf P 1/2 R 1/1, top P 1/2 R 1/1; item 2: leaf P 0 R 0, top P 1 R 1/2
    assert s["leaf_precision"] == 0.25 and s["leaf_recall"] == 0.5
    assert s["top_precision"] == 0.75 and s["top_recall"] == 0.75


def test_a_bad_band_or_a_missing_llm_is_refused():
    with pytest.raises(ValueError, match="uncertain_band"):
        DistilledConfig(uncertain_band=(0.6, 0.9))
    with pytest.raises(ValueError, match="needs an 'llm' section"):
        AnnotateConfig(backend="distilled")


def test_the_command_line_runs_it_end_to_end(corpus, tmp_path):
    path, truth = corpus
    with OpenAIStub(responder=oracle(truth)) as stub:
        r = subprocess.run([sys.executable, "-m", "skilldistill.cli", "annotate", str(path), "--tree", "demo",
                            "--out", str(tmp_path / "out"), "--backend", "distilled", "--llm-backend", "openai",
                            "--model", "stub-model", "--base-url", stub.base_url, "--sample-size", "160",
                            "--holdout-fraction", "0.25", "--min-examples", "10", "--strata", "8", "--no-progress"],
                           capture_output=True, text=True, timeout=300,
                           env={**os.environ, "COLUMNS": "200", "OPENAI_API_KEY": "k"})
    assert r.returncode == 0, r.stderr[-3000:]
    text = r.stdout + r.stderr
    assert "held-out agreement" in text and "LLM calls saved" in text, text
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["backend"] == "distilled" and s["distilled"]["sample"]["items"] == 160


def test_other_backends_fingerprints_do_not_see_the_distilled_section():
    """Run folders made before the backend existed stay up to date."""
    assert "distilled" not in AnnotateConfig().public_dict()
    assert AnnotateConfig().public_dict() == AnnotateConfig(distilled=DistilledConfig(sample_size=7)).public_dict()
    cfg = AnnotateConfig(backend="distilled", llm=BackendConfig(kind="openai", model="m"))
    assert cfg.public_dict()["distilled"]["sample_size"] == 2000


KILL_SCRIPT = """
import sys
from skilldistill.attribution import AnnotateConfig, DistilledConfig, annotate
from skilldistill.llm.base import BackendConfig
llm = BackendConfig(kind="openai", model="stub-model", base_urls=[sys.argv[3]], api_key="k", max_concurrency=4)
cfg = AnnotateConfig(backend="distilled", llm=llm, distilled=DistilledConfig(
    sample_size=160, holdout_fraction=0.25, min_examples=10_000, strata=8))
if __name__ == "__main__":
    annotate(sys.argv[1], "demo", sys.argv[2], cfg, show_progress=False)
"""


@pytest.mark.slow
def test_killed_in_the_fall_back_walk_then_rerun_repeats_no_call(corpus, tmp_path):
    """kill -9 while the fall-backs are being asked: the rerun asks exactly the calls that
    had not finished and gives the labels of an uninterrupted run."""
    import signal
    import time

    from skilldistill.artifacts import AppendLog

    path, truth = corpus
    cfg = _cfg("http://x", min_examples=10_000)  # every decision outside the sample goes to the LLM
    with OpenAIStub(responder=oracle(truth), latency_s=0.02) as stub:
        cfg.llm.base_urls = [stub.base_url]
        ref = annotate(path, "demo", tmp_path / "ref", cfg, show_progress=False)
        uninterrupted = stub.chat_calls
        sample_calls = ref.summary["distilled"]["llm_calls"]["sample"]
        out = tmp_path / "killed"
        proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(path), str(out), stub.base_url],
                                env={**os.environ, "OPENAI_API_KEY": "k"})
        log = out / "calls.jsonl"

        def calls_done() -> int:
            return sum(r.get("calls", 0) for r in AppendLog(log).read()) if log.exists() else 0

        deadline = time.time() + 240
        while time.time() < deadline and calls_done() < sample_calls + 40:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        finished = calls_done()
        assert sample_calls + 40 <= finished < uninterrupted  # killed in the distilled walk
        before = stub.chat_calls
        res = annotate(path, "demo", out, cfg, show_progress=False)
        assert stub.chat_calls - before == uninterrupted - finished
    assert pq.read_table(res.skills_path).to_pylist() == pq.read_table(ref.skills_path).to_pylist()

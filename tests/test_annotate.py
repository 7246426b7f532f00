"""Skill attribution: parsing, matching, the top-down walk, the cache and resume, the
embedding backend on real MATH problems, and the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from openai_stub import OpenAIStub, Reply, listed_skills, pick_listed_skills  # noqa: E402
from skilldistill.artifacts import AppendLog, hash_obj, read_json  # noqa: E402
from skilldistill.attribution import (  # noqa: E402
    AnnotateConfig,
    EmbeddingDecider,
    PromptTemplate,
    annotate,
    annotate_stats,
    item_text,
    match_names,
    parse_answer,
)
from skilldistill.errors import ConfigError, InputError  # noqa: E402
from skilldistill.llm.base import BackendConfig  # noqa: E402
from skilldistill.llm.embedding import EmbeddingConfig  # noqa: E402
from skilldistill.llm.openai_backend import OpenAIBackend  # noqa: E402
from skilldistill.tree import SkillNode, SkillTree  # noqa: E402

SECRET = "sk-annotate-SECRET-7"

TREE = {
    "name": "Mathematics",
    "children": [
        {"name": "Algebra", "description": "equations and expressions", "children": [
            {"name": "Linear equations"}, {"name": "Quadratic equations"}, {"name": "Inequalities"}]},
        {"name": "Geometry", "children": [
            {"name": "Triangles"},
            {"name": "Circles", "children": [{"name": "Area of circles"}, {"name": "Arc length"}]}]},
        {"name": "Counting"},
    ],
}


# -- fixtures ---------------------------------------------------------------------------
def math_rows(shared_data: Path, n: int, per_subject: int | None = None) -> list[dict]:
    rows = [json.loads(line) for line in (shared_data / "corpora" / "math_test" / "test.jsonl").open()]
    if per_subject is None:
        return rows[:n]
    out, seen = [], {}
    for r in rows:
        if seen.get(r["type"], 0) < per_subject:
            seen[r["type"]] = seen.get(r["type"], 0) + 1
            out.append(r)
    return out


def write_corpus(rows: list[dict], path: Path, *, think: bool = False) -> Path:
    responses = [f"<think>scratch work {r['idx']}</think>{r['solution']}" if think else r["solution"] for r in rows]
    pq.write_table(pa.table({
        "id": [f"math-{r['idx']}" for r in rows],
        "question": [r["problem"] for r in rows],
        "response": responses,
        "answer": ["" for _ in rows],
        "source": ["math_test" for _ in rows],
        "meta": [json.dumps({"type": r["type"]}) for r in rows],
    }), path)
    return path


@pytest.fixture
def tree() -> SkillTree:
    return SkillTree.from_dict(TREE)


@pytest.fixture
def corpus(tmp_path, shared_data) -> Path:
    return write_corpus(math_rows(shared_data, 24), tmp_path / "corpus.parquet", think=True)


def openai_cfg(url: str, **kw) -> AnnotateConfig:
    llm = BackendConfig(kind="openai", model="stub-model", base_urls=[url], api_key=SECRET, max_concurrency=16, max_retries=2)
    return AnnotateConfig(backend="openai", llm=llm, **kw)


def make_backend(url: str) -> OpenAIBackend:
    return OpenAIBackend(openai_cfg(url).llm, backoff_base_s=0.01, backoff_max_s=0.05)


def node_of(request: dict) -> str:
    text = request["messages"][0]["content"]
    return text.split("The skills below are sub-skills of: ", 1)[1].split("\n", 1)[0]


def read_skills(path: Path) -> list:
    return pq.read_table(path).to_pylist()


# -- parsing and matching ---------------------------------------------------------------
@pytest.mark.parametrize("answer, names", [
    ('["Algebra", "Geometry"]', ["Algebra", "Geometry"]),
    ("Sure! The skills are ['Algebra', 'Counting'] as needed.", ["Algebra", "Counting"]),
    ('```json\n["Algebra"]\n```', ["Algebra"]),
    ("<think>maybe [\"Counting\"]?</think>\n[\"Geometry\"]", ["Geometry"]),
    ("- Algebra\n- **Geometry**\n", ["Algebra", "Geometry"]),
    ("1. Algebra\n2) Counting,", ["Algebra", "Counting"]),
    ("[]", []),
    ('[{"name": "Algebra"}]', ["Algebra"]),
])
def test_parse_answer_accepts_lists_literals_and_bullets(answer, names):
    assert parse_answer(answer) == names


@pytest.mark.parametrize("answer", [
    "I think algebra is needed.",
    "[__import__('os').system('touch /tmp/skilldistill-pwned')]",
    "[1, 2",
    "",
])
def test_parse_answer_rejects_unreadable_and_never_executes(answer):
    assert parse_answer(answer) is None
    assert not Path("/tmp/skilldistill-pwned").exists()


def test_match_names_exact_folded_fuzzy_and_unmatched():
    children = [SkillNode("Linear equations"), SkillNode("Quadratic equations"), SkillNode("Inequalities")]
    matched, unmatched = match_names(
        ["  linear   EQUATIONS ", "Quadratic equation", "Algebra->Inequalities", "Topology", "Linear equations"], children
    )
    assert matched == ["Linear equations", "Quadratic equations", "Inequalities"]
    assert unmatched == ["Topology"]
    assert match_names(["Quad"], children) == ([], ["Quad"])  # too far for the threshold


def test_a_fuzzy_match_must_be_clearly_the_closest_sibling():
    # an answer naming no child, closest to one of two similar siblings, is no match
    ab = [SkillNode("Algebra I"), SkillNode("Algebra II")]
    assert match_names(["Algebra"], ab) == ([], ["Algebra"])
    assert match_names(["Algebra III"], ab) == ([], ["Algebra III"])
    solving = [SkillNode("Solving linear inequalities"), SkillNode("Solving quadratic equations")]
    assert match_names(["Solving linear equations"], solving) == ([], ["Solving linear equations"])
    # a typo of one name, far from the others, still matches it
    children = [SkillNode("Linear equations"), SkillNode("Quadratic equations"), SkillNode("Inequalities")]
    assert match_names(["Linear equatons"], children) == (["Linear equations"], [])


def test_an_answer_cut_off_by_the_token_cap_is_not_read():
    from skilldistill.attribution import read_complete_answer
    from skilldistill.llm.base import Completion

    rec: dict = {}
    assert read_complete_answer(Completion('["Algebra", "Geometry"', finish_reason="length"), rec) is None
    assert rec == {"finish_reason": "length"}
    # reasoning that never ended: its list is no answer
    assert parse_answer('<think>Options: ["Algebra", "Geometry"]. Geometry is clearly not') is None
    assert parse_answer('<think>hmm</think>["Algebra"]') == ["Algebra"]


def test_a_truncated_answer_is_repaired_not_taken(tmp_path, tree, corpus):
    def cut_first(request):
        if len(request["messages"]) == 1:  # the first ask: cut off at the cap
            return Reply(content='Not only ["Algebra"]: on reflection also "Geom', finish_reason="length")
        return Reply(content='["Counting"]')  # the repair

    with OpenAIStub(responder=cut_first) as stub:
        res = annotate(corpus, tree, tmp_path / "out", openai_cfg(stub.base_url), show_progress=False)
    rows = read_skills(res.skills_path)
    assert all(r["skills"] == [["Counting"]] for r in rows)
    records = AppendLog(tmp_path / "out" / "calls.jsonl").read()
    pending = [r for r in records if r.get("status") == "pending_repair"]
    final = [r for r in records if r.get("status") == "ok"]
    assert pending and all(r["finish_reason"] == "length" for r in pending)  # the cut-off first answers
    assert len(final) == len(pending) and all(r["calls"] == 2 for r in final)


def test_changed_sampling_settings_ask_again_client_settings_do_not(tmp_path, tree, corpus):
    with OpenAIStub(responder=pick_listed_skills) as stub:
        annotate(corpus, tree, tmp_path / "out", openai_cfg(stub.base_url), show_progress=False)
        first = stub.chat_calls
        # concurrency and retries are how requests are sent: the cached decisions stand
        llm = openai_cfg(stub.base_url).llm.model_copy(update={"max_concurrency": 3, "max_retries": 5})
        annotate(corpus, tree, tmp_path / "out", AnnotateConfig(backend="openai", llm=llm), show_progress=False)
        assert stub.chat_calls == first
        # a new temperature or token cap decides answers: every decision is asked again
        res = annotate(corpus, tree, tmp_path / "out", openai_cfg(stub.base_url, temperature=1.0, max_tokens=64),
                       show_progress=False)
        assert not res.skipped and stub.chat_calls == 2 * first
        res = annotate(corpus, tree, tmp_path / "out", openai_cfg(stub.base_url, match_threshold=0.95),
                       show_progress=False)
        assert stub.chat_calls == 3 * first


def test_a_kill_before_the_manifest_leaves_no_stale_certificate(tmp_path, tree, corpus, monkeypatch):
    import skilldistill.attribution.stage as annotate_mod

    with OpenAIStub(responder=pick_listed_skills) as stub:
        annotate(corpus, tree, tmp_path / "out", openai_cfg(stub.base_url), show_progress=False)

        def killed(*a, **k):
            raise KeyboardInterrupt  # after skills.parquet of the new settings, before their manifest

        monkeypatch.setattr(annotate_mod, "write_manifest", killed)
        with pytest.raises(KeyboardInterrupt):
            annotate(corpus, tree, tmp_path / "out", openai_cfg(stub.base_url, temperature=1.0), show_progress=False)
        monkeypatch.undo()
        # the first settings again: their old manifest must not vouch for the other run's output
        res = annotate(corpus, tree, tmp_path / "out", openai_cfg(stub.base_url), show_progress=False)
        assert not res.skipped and read_json(tmp_path / "out" / "manifest.json")["config"]["temperature"] == 0.3


def test_match_names_on_evaltree_near_twins(shared_data):
    """EvalTree names end in "." and three sibling pairs differ only by it: an exact answer
    reaches its own sibling, not the twin (the old period-stripping lookup picked the twin)."""
    tree = SkillTree.load(shared_data / "skill_trees" / "evaltree_math_full.json")
    twins = []
    for _, node in tree.nodes():
        names = {c.name for c in node.children}
        twins += [(node.children, n) for n in names if n.endswith(".") and n[:-1] in names]
    assert len(twins) == 3
    for children, dotted in twins:
        bare = dotted[:-1]
        assert match_names([dotted], children) == ([dotted], [])
        assert match_names([bare], children) == ([bare], [])
        assert match_names([f'"{dotted}"', f"**{bare}**"], children) == ([dotted, bare], [])
        # folded (case, spacing): one of the two, not a fuzzy guess elsewhere
        folded, _ = match_names(["  " + dotted.upper() + " "], children)
        assert folded and folded[0] in (dotted, bare)
    # an exact answer on EvalTree never needs the fuzzy step: every child name maps to itself
    for _, node in tree.nodes():
        if node.children:
            names = [c.name for c in node.children]
            assert match_names(names, node.children) == (names, [])


def test_item_text_uses_final_solution_and_caps_it():
    assert item_text("Q?", "<think>long scratch</think> final answer 4") == "Q?\nfinal answer 4"
    assert item_text("Q?", "x" * 50, max_chars=10) == "Q?\n" + "x" * 10
    assert item_text("Q?", "<think>cut off reasoning") == "Q?\ncut off reasoning"
    assert item_text("Q?", None) == "Q?"


def test_prompt_template_shows_descriptions_and_keeps_braces(tree, tmp_path):
    t = PromptTemplate.load()
    text = t.render("Solve {{skills}} $x^{2}$", (), tree.root.children, "Mathematics")
    assert "- Algebra: equations and expressions\n- Geometry\n- Counting" in text
    assert "Solve {{skills}} $x^{2}$" in text  # item text is never re-substituted
    assert "sub-skills of: Mathematics" in text
    custom = tmp_path / "mine.txt"
    custom.write_text("Item: {{item}}\nPick from:\n{{skills}}\n")
    c = PromptTemplate.load(custom)
    assert c.version.startswith("mine@") and c.version != t.version
    (tmp_path / "bad.txt").write_text("{{item}} {{skils}}")
    with pytest.raises(ConfigError, match="skils"):
        PromptTemplate.load(tmp_path / "bad.txt")


# -- the walk with a real HTTP backend --------------------------------------------------
def test_annotate_openai_end_to_end(tmp_path, tree, corpus):
    with OpenAIStub(responder=pick_listed_skills) as stub:
        res = annotate(corpus, tree, tmp_path / "out", openai_cfg(stub.base_url), show_progress=False)
        calls = stub.chat_calls
        first_prompt = stub.requests[0]["body"]["messages"][0]["content"]
    rows = read_skills(res.skills_path)
    assert [r["id"] for r in rows] == [f"math-{i}" for i in range(24)]
    assert {"question", "response", "answer", "source", "meta", "skills"} <= set(rows[0])
    leaves = set(tree.leaves())
    for r in rows:
        assert r["skills"], r["id"]
        assert all(tuple(c) in leaves for c in r["skills"])
        assert len({tuple(c) for c in r["skills"]}) == len(r["skills"])
    assert "scratch work" not in first_prompt and "</think>" not in first_prompt
    s = res.summary
    assert s["calls_this_run"] == calls == s["decisions"] == s["calls_total"]
    assert s["prompt_tokens_this_run"] > 0 and s["completion_tokens_this_run"] > 0
    assert s["failures"] == {"unparseable": 0, "failed": 0} and s["items_with_skills"] == 24
    assert s["chains"] == sum(len(r["skills"]) for r in rows)
    records = AppendLog(tmp_path / "out" / "calls.jsonl").read()
    assert len(records) == calls and all(r["status"] == "ok" for r in records)
    for f in ("calls.jsonl", "summary.json", "manifest.json"):
        assert SECRET not in (tmp_path / "out" / f).read_text()
    assert read_json(tmp_path / "out" / "manifest.json")["counts"]["items"] == 24
    # Per-node counts agree with the table.
    stats = {r["node"]: r for r in annotate_stats(tmp_path / "out", tree)}
    assert set(stats) == {"->".join(p) for p, _ in tree.nodes() if p}
    assert stats["Algebra"]["items"] == sum(any(c[0] == "Algebra" for c in r["skills"]) for r in rows)


def test_chains_follow_answer_order_and_depth_limit(tmp_path, tree, corpus):
    answers = {"Mathematics": '["Geometry", "Counting", "Algebra"]', "Mathematics -> Geometry": '["Circles", "Triangles"]',
               "Mathematics -> Geometry -> Circles": '["Arc length"]', "Mathematics -> Algebra": '["Inequalities"]'}
    with OpenAIStub(responder=lambda req: answers[node_of(req)]) as stub:
        res = annotate(corpus, tree, tmp_path / "a", openai_cfg(stub.base_url), show_progress=False)
        chains = read_skills(res.skills_path)[0]["skills"]
        assert chains == [["Geometry", "Circles", "Arc length"], ["Geometry", "Triangles"], ["Counting"], ["Algebra", "Inequalities"]]
        res2 = annotate(corpus, tree, tmp_path / "b", openai_cfg(stub.base_url, max_depth=1), show_progress=False)
        assert read_skills(res2.skills_path)[0]["skills"] == [["Geometry"], ["Counting"], ["Algebra"]]


def test_malformed_answers_repair_unmatched_and_drop(tmp_path, tree, corpus):
    def responder(req):
        node, msgs = node_of(req), req["messages"]
        if node == "Mathematics":
            return '["Algebra", "Topology"]'  # one unknown name
        if node == "Mathematics -> Algebra":
            if len(msgs) == 1:
                return "I would say linear equations are involved."  # unreadable
            # the repair turn: readable for the first half of the items only
            idx = int(msgs[0]["content"].split("ITEM ", 1)[1].split()[0])
            return '["Linear equations"]' if idx < 12 else "still no list"
        return "[]"

    rows = [{"problem": f"ITEM {i} What is x if 2x = {2 * i}?", "solution": f"x = {i}", "type": "Algebra", "idx": i} for i in range(24)]
    path = write_corpus(rows, tmp_path / "c.parquet")
    with OpenAIStub(responder=responder) as stub:
        # half the items stay unreadable: over the default max_failed_share, the stage fails
        # with the counts, certifies nothing and keeps every decision
        with pytest.raises(InputError, match=r"12 of 24 items have no complete attribution \(0 with a call the server "
                                             r"refused, 12 with an answer that stayed unreadable"):
            annotate(path, tree, tmp_path / "out", openai_cfg(stub.base_url), show_progress=False)
        assert not (tmp_path / "out" / "manifest.json").exists() and not (tmp_path / "out" / "skills.parquet").exists()
        calls = stub.chat_calls
        # allowed by the config, the same decisions (from the cache) give the output
        res = annotate(path, tree, tmp_path / "out", openai_cfg(stub.base_url, max_failed_share=0.5), show_progress=False)
        assert stub.chat_calls == calls
    s = res.summary
    assert calls == 24 + 24 * 2  # root, then Algebra + one repair each
    assert s["calls_total"] == calls and s["repaired"] == 24
    assert s["failures"]["unparseable"] == 12
    assert s["unmatched_names"] == 24 and s["top_unmatched"] == [["Topology", 24]]
    out = read_skills(res.skills_path)
    assert all(r["skills"] == [["Algebra", "Linear equations"]] for r in out[:12])
    assert all(r["skills"] == [] for r in out[12:])  # dropped branch: nothing recorded
    # ... and said so: those items are not items without skills
    assert [r["skills_status"] for r in out] == ["ok"] * 12 + ["unparseable"] * 12
    assert s["items_incomplete"] == {"failed": 0, "unparseable": 12}


class CrashAfter:
    """Wraps a backend; the (k+1)-th finished result raises, like a kill mid-batch."""

    def __init__(self, inner, k: int) -> None:
        self.inner, self.k, self.seen = inner, k, 0
        self.name, self.model = inner.name, inner.model

    def chat(self, conversations, params, *, on_result=None, progress=None, **kw):
        def cb(i, comps):
            if self.seen >= self.k:
                raise RuntimeError("simulated crash")
            self.seen += 1
            on_result(i, comps)

        return self.inner.chat(conversations, params, on_result=cb, progress=progress, **kw)

    def close(self):
        self.inner.close()


def test_crash_and_rerun_repeats_no_finished_call(tmp_path, tree, corpus):
    with OpenAIStub(responder=pick_listed_skills) as stub:
        ref = annotate(corpus, tree, tmp_path / "ref", openai_cfg(stub.base_url), show_progress=False)
        uninterrupted = stub.chat_calls
        for k in (5, 30):  # mid level 0, and mid level 1
            out = tmp_path / f"crash{k}"
            backend = CrashAfter(make_backend(stub.base_url), k)
            with pytest.raises(RuntimeError, match="simulated crash"):
                annotate(corpus, tree, out, openai_cfg(stub.base_url), backend=backend, show_progress=False)
            backend.close()
            assert len(AppendLog(out / "calls.jsonl").read()) == k
            assert not (out / "skills.parquet").exists()
            before = stub.chat_calls
            res = annotate(corpus, tree, out, openai_cfg(stub.base_url), show_progress=False)
            assert stub.chat_calls - before == uninterrupted - k  # nothing finished was asked again
            assert read_skills(res.skills_path) == read_skills(ref.skills_path)
            assert res.summary["decisions_cached"] == k
        # Done: a rerun is skipped; a forced rebuild answers everything from the cache.
        before = stub.chat_calls
        assert annotate(corpus, tree, out, openai_cfg(stub.base_url), show_progress=False).skipped
        forced = annotate(corpus, tree, out, openai_cfg(stub.base_url), force=True, show_progress=False)
        assert stub.chat_calls == before and forced.summary["calls_this_run"] == 0
        assert read_skills(forced.skills_path) == read_skills(ref.skills_path)


def test_crash_between_answer_and_repair_resumes_at_the_repair(tmp_path, tree, corpus):
    def responder(req):
        if len(req["messages"]) == 1 and node_of(req) == "Mathematics":
            return "no list here"
        # the repair turn answers from the first message's list (the repair text lists none:
        # an empty pick is itself unreadable)
        return pick_listed_skills({"messages": req["messages"][:1]})

    class CrashOnSecondBatch(CrashAfter):
        def chat(self, conversations, params, **kw):
            self.seen += 1
            if self.seen == 2:
                raise RuntimeError("simulated crash")
            return self.inner.chat(conversations, params, **kw)

    with OpenAIStub(responder=responder) as stub:
        backend = CrashOnSecondBatch(make_backend(stub.base_url), 0)
        with pytest.raises(RuntimeError):
            annotate(corpus, tree, tmp_path / "o", openai_cfg(stub.base_url), backend=backend, show_progress=False)
        backend.close()
        assert [r["status"] for r in AppendLog(tmp_path / "o" / "calls.jsonl").read()] == ["pending_repair"] * 24
        n = len(stub.requests)
        res = annotate(corpus, tree, tmp_path / "o", openai_cfg(stub.base_url), show_progress=False)
        root_requests = [r["body"]["messages"] for r in stub.requests[n:] if node_of(r["body"]) == "Mathematics"]
        second_run = len(stub.requests) - n
    assert len(root_requests) == 24 and all(len(m) == 3 for m in root_requests)  # only the repair turns
    # the counts: this run's requests only, and every request of both runs in the total
    assert res.summary["calls_this_run"] == second_run
    assert res.summary["calls_total"] == len(stub.requests)


def test_retried_decisions_keep_their_earlier_calls_in_the_total(tmp_path, tree, corpus):
    with OpenAIStub(responder=lambda req: "no list here") as stub:
        with pytest.raises(InputError):  # every answer unreadable: over max_failed_share
            annotate(corpus, tree, tmp_path / "o", openai_cfg(stub.base_url), show_progress=False)
        first = len(stub.requests)  # 24 root questions x (answer + repair)
    with OpenAIStub(responder=pick_listed_skills) as stub:
        res = annotate(corpus, tree, tmp_path / "o", openai_cfg(stub.base_url), show_progress=False, retry_failed=True)
        assert res.summary["calls_this_run"] == len(stub.requests)
    root = [r for r in AppendLog(tmp_path / "o" / "calls.jsonl").read() if r["node"] == "" and r["status"] == "ok"]
    assert len(root) == 24 and all(r["calls"] == 3 for r in root)  # 2 before the retry, 1 with it
    assert res.summary["calls_total"] == first + len(stub.requests)


KILL_SCRIPT = textwrap.dedent("""
    import sys
    from skilldistill.attribution import AnnotateConfig, annotate
    from skilldistill.llm.base import BackendConfig
    from skilldistill.tree import SkillTree
    import json
    tree = SkillTree.from_dict(json.loads(sys.argv[3]))
    llm = BackendConfig(kind="openai", model="stub-model", base_urls=[sys.argv[4]], api_key="k", max_concurrency=4)
    annotate(sys.argv[1], tree, sys.argv[2], AnnotateConfig(backend="openai", llm=llm), show_progress=False)
""")


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_gives_identical_output(tmp_path, tree, corpus):
    with OpenAIStub(responder=pick_listed_skills, latency_s=0.05) as stub:
        ref = annotate(corpus, tree, tmp_path / "ref", openai_cfg(stub.base_url), show_progress=False)
        uninterrupted = stub.chat_calls
        out = tmp_path / "killed"
        proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(corpus), str(out), json.dumps(TREE), stub.base_url])
        log = out / "calls.jsonl"
        deadline = time.time() + 60
        while time.time() < deadline and (not log.exists() or len(AppendLog(log).read()) < 15):
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        finished = len(AppendLog(log).read())
        assert 15 <= finished < uninterrupted
        before = stub.chat_calls
        res = annotate(corpus, tree, out, openai_cfg(stub.base_url), show_progress=False)
        assert stub.chat_calls - before == uninterrupted - finished
    assert read_skills(res.skills_path) == read_skills(ref.skills_path)


def test_bad_corpus_rows_are_named(tmp_path, tree):
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "a"], "question": ["q1", "q2", "q3"]}), path)
    with pytest.raises(InputError, match="duplicate id 'a'") as e:
        annotate(path, tree, tmp_path / "o", AnnotateConfig(), show_progress=False)
    assert e.value.row == 3 and e.value.field == "id"
    pq.write_table(pa.table({"id": ["a", "b"], "question": ["q1", " "]}), path)
    with pytest.raises(InputError) as e:
        annotate(path, tree, tmp_path / "o", AnnotateConfig(), show_progress=False)
    assert e.value.row == 2 and e.value.field == "question"
    with pytest.raises(ValueError, match="needs an 'llm' section"):
        AnnotateConfig(backend="openai")


def test_annotate_stats_counts_items_per_node(tree):
    table = pa.table({"skills": [[["Algebra", "Linear equations"], ["Algebra", "Inequalities"]], [["Counting"]], []]})
    rows = {r["node"]: r for r in annotate_stats(table, tree)}
    assert rows["Algebra"]["items"] == 1 and rows["Algebra"]["chains"] == 2
    assert rows["Algebra->Linear equations"] == {"node": "Algebra->Linear equations", "depth": 2, "leaf": True, "items": 1, "chains": 1, "share": round(1 / 3, 4)}
    assert rows["Counting"]["items"] == 1 and rows["Geometry"]["items"] == 0
    assert [r["node"] for r in annotate_stats(table, tree, max_depth=1)] == ["Algebra", "Geometry", "Counting"]


# -- the CLI ------------------------------------------------------------------------------
def test_cli_annotate_default_command_and_stats(tmp_path, tree, corpus):
    from typer.testing import CliRunner

    from skilldistill.cli import app

    tree_file = tmp_path / "tree.json"
    tree.save(tree_file)
    runner = CliRunner()
    with OpenAIStub(responder=pick_listed_skills) as stub:
        env = {"STUB_KEY": SECRET}
        args = ["annotate", str(corpus), "--tree", str(tree_file), "--out", str(tmp_path / "cli"), "--backend", "openai",
                "--model", "stub-model", "--base-url", stub.base_url, "--api-key-env", "STUB_KEY", "--concurrency", "8",
                "--no-progress"]
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 0, result.output
        assert all(r["authorized"] for r in stub.requests)
        # The slower request path, asked for on the command line, gives the same output.
        slow = [a if a != str(tmp_path / "cli") else str(tmp_path / "cli-sdk") for a in args]
        result = runner.invoke(app, [*slow, "--http-transport", "httpx", "--sdk-requests"], env=env)
        assert result.exit_code == 0, result.output
    assert len(read_skills(tmp_path / "cli" / "skills.parquet")) == 24
    assert read_skills(tmp_path / "cli-sdk" / "skills.parquet") == read_skills(tmp_path / "cli" / "skills.parquet")
    manifest = json.loads((tmp_path / "cli-sdk" / "manifest.json").read_text())
    # how requests went out is recorded, but it is no part of what the manifest matches on
    assert manifest["client"]["fast_requests"] is False and manifest["client"]["http_transport"] == "httpx"
    assert "fast_requests" not in manifest["config"]["llm"] and "max_concurrency" not in manifest["config"]["llm"]
    assert SECRET not in (tmp_path / "cli" / "manifest.json").read_text()
    result = runner.invoke(app, ["annotate", "stats", str(tmp_path / "cli"), "--tree", str(tree_file), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {r["node"] for r in rows} >= {"Algebra", "Geometry->Circles->Arc length"}
    bad = runner.invoke(app, ["annotate", str(corpus), "--out", str(tmp_path / "x"), "--backend", "openai"])
    assert bad.exit_code == 2 and "needs --model" in bad.output


# -- the embedding backend on real MATH problems -------------------------------------------
@pytest.mark.slow
def test_embedding_backend_on_math_problems(tmp_path, shared_data, skill_mix_path):
    rows = math_rows(shared_data, 0, per_subject=4)  # 28 problems, 4 per subject
    corpus = write_corpus(rows, tmp_path / "math.parquet")
    tree = SkillTree.load(skill_mix_path)
    res = annotate(corpus, tree, tmp_path / "emb", AnnotateConfig(), show_progress=False)
    out = read_skills(res.skills_path)
    leaves = set(tree.leaves())
    assert all(r["skills"] and all(tuple(c) in leaves for c in r["skills"]) for r in out)
    assert all(1 <= len(r["skills"]) <= 4 for r in out)  # top_k 2 per level
    subject = {"Prealgebra": "Pre-Algebra", "Algebra": "Algebra", "Intermediate Algebra": "Inter-Algebra",
               "Geometry": "Geometry understanding", "Number Theory": "Number Theory", "Precalculus": "Precalculus",
               "Counting & Probability": "Probability"}
    hits = sum(subject[json.loads(r["meta"])["type"]] == r["skills"][0][0] for r in out)
    assert hits / len(out) >= 0.4  # chance is 1/7; the full-set rate is in bench/attribution_quality.py
    assert res.summary["calls_total"] == 0 and res.summary["decisions"] == len(AppendLog(tmp_path / "emb" / "calls.jsonl").read())
    # Cached rerun: identical output without loading the model.
    again = annotate(corpus, tree, tmp_path / "emb", AnnotateConfig(), force=True, show_progress=False)
    assert read_skills(again.skills_path) == out and again.summary["decisions_this_run"] == 0


def test_listed_skills_helper_reads_the_bundled_template(tree):
    prompt = PromptTemplate.load().render("x", ("Geometry",), tree.node(("Geometry",)).children, "Mathematics")
    assert listed_skills({"messages": [{"role": "user", "content": prompt}]}) == ["Triangles", "Circles"]
    assert pick_listed_skills({"messages": [{"role": "user", "content": prompt}]}).content.startswith("[")
    assert isinstance(Reply().content, str)


# -- the authors' EvalTree, and the node-embedding disk cache --------------------------------
def test_node_embeddings_cached_on_disk(tmp_path, shared_data, skill_mix_path):
    tree = SkillTree.load(skill_mix_path)
    first = write_corpus(math_rows(shared_data, 6), tmp_path / "a.parquet")
    other = write_corpus(math_rows(shared_data, 12)[6:], tmp_path / "b.parquet")
    cache = tmp_path / "cache"
    cfg = AnnotateConfig(embedding=EmbeddingConfig(cache_dir=str(cache)))
    annotate(first, tree, tmp_path / "a", cfg, show_progress=False)
    files = list(cache.glob("*-leaves.npz"))
    assert len(files) == 1
    with np.load(files[0]) as z:
        assert z["vectors"].shape == (len(tree.leaves()), 384)
    # New items, same tree: the leaves come from disk; decisions equal an uncached run's
    decider = EmbeddingDecider(cfg.embedding, tree_key=hash_obj(tree.to_dict()))
    encoded = []
    real = decider.attributor.encode
    decider.attributor.encode = lambda texts: (encoded.append(len(texts)), real(texts))[1]
    decider.attributor.select([("What is 2+3?", (), tree.root.children)])
    assert decider.attributor.disk_hits > 0 and encoded == [1]  # only the item text was encoded
    cached = annotate(other, tree, tmp_path / "b", cfg, show_progress=False)
    uncached = annotate(other, tree, tmp_path / "c", AnnotateConfig(embedding=EmbeddingConfig(cache_dir="off")),
                        show_progress=False)
    assert read_skills(cached.skills_path) == read_skills(uncached.skills_path)
    assert len(list(cache.glob("*.npz"))) == 1  # 'off' wrote nothing; same tree, same file
    # the cache location changes no decision: a rerun elsewhere is up to date
    moved = annotate(other, tree, tmp_path / "b", AnnotateConfig(embedding=EmbeddingConfig(cache_dir=str(tmp_path / "x"))),
                     show_progress=False)
    assert moved.skipped
    # a damaged cache file is recomputed, not trusted
    files[0].write_bytes(b"not an npz")
    again = annotate(other, tree, tmp_path / "d", cfg, show_progress=False)
    assert read_skills(again.skills_path) == read_skills(uncached.skills_path)
    with np.load(files[0]) as z:
        assert len(z["keys"]) == len(tree.leaves())


@pytest.mark.slow
def test_evaltree_annotates_with_embedding_and_openai_backends(tmp_path, shared_data):
    """The authors' tree as shipped (15 duplicate siblings merged), both backends."""
    tree = SkillTree.load(shared_data / "skill_trees" / "evaltree_math_full.json")
    leaves = set(tree.leaves())
    corpus = write_corpus(math_rows(shared_data, 0, per_subject=1), tmp_path / "c.parquet")  # 7 problems
    emb = annotate(corpus, tree, tmp_path / "emb", AnnotateConfig(), show_progress=False)
    with OpenAIStub(responder=pick_listed_skills) as stub:
        llm = annotate(corpus, tree, tmp_path / "llm", openai_cfg(stub.base_url), show_progress=False)
    for res in (emb, llm):
        rows = read_skills(res.skills_path)
        assert len(rows) == 7 and all(r["skills"] for r in rows)
        assert all(tuple(c) in leaves for r in rows for c in r["skills"])
    # the listed names come back exactly (trailing periods included): nothing fuzzy, nothing lost
    assert llm.summary["unmatched_names"] == 0
    assert max(len(c) for r in read_skills(llm.skills_path) for c in r["skills"]) >= 5


def _item_of(request: dict) -> str:
    """The item a decision is about: the prompt opens with the item text (prefix-cache friendly)."""
    return request["messages"][0]["content"].split("The skills below are sub-skills of: ", 1)[0]


def test_affinity_sends_every_call_about_an_item_to_one_server_round_robin_does_not(tmp_path, corpus, tree):
    """Item affinity (issue 16): all of an item's decisions share its text as the prompt's
    prefix, so they go to one server, whose prefix cache then serves the repeats."""
    seen = {}
    for routing in ("affinity", "round-robin"):
        with OpenAIStub(responder=pick_listed_skills) as a, OpenAIStub(responder=pick_listed_skills) as b:
            llm = BackendConfig(kind="openai", model="stub-model", base_urls=[a.base_url, b.base_url], api_key=SECRET,
                                max_concurrency=8, max_retries=1, routing=routing)
            annotate(corpus, tree, tmp_path / routing, AnnotateConfig(backend="openai", llm=llm), show_progress=False)
            servers: dict[str, set[int]] = {}
            for k, stub in enumerate((a, b)):
                for r in stub.requests:
                    if r["path"].endswith("/chat/completions"):
                        servers.setdefault(_item_of(r["body"]), set()).add(k)
            assert a.chat_calls and b.chat_calls  # both servers work in either mode
            seen[routing] = servers
    assert len(seen["affinity"]) == 24 and all(len(s) == 1 for s in seen["affinity"].values())
    assert sum(len(s) == 2 for s in seen["round-robin"].values()) >= 6  # round-robin splits items

"""`skilldistill tree build`: chains read from untrusted answers, proposals asked once and
resumed after a kill, near-duplicate names merged with the real MiniLM embedder, the cap on
children, and a result `tree validate` accepts."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import openai
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from openai_stub import OpenAIStub, Reply  # noqa: E402
from skilldistill.cli import app  # noqa: E402
from skilldistill.errors import BackendError, InputError  # noqa: E402
from skilldistill.llm.base import BackendConfig  # noqa: E402
from skilldistill.tree import SkillTree  # noqa: E402
from skilldistill.tree_build import TreeBuildConfig, run_tree_build  # noqa: E402
from skilldistill.tree_build.chains import ChainRules, read_chains  # noqa: E402
from skilldistill.tree_build.merge import MergeRules, merge_chains  # noqa: E402

# A chain answer per topic: the stub answers by the topic word in the item's question.
ANSWERS = {
    "lin": "Algebra -> Linear equations -> Isolating the variable\nArithmetic -> Division -> Dividing integers",
    "quad": "1. Algebra -> Quadratic equations -> Factoring\n2. algebra -> Quadratic Equations -> Discriminant",
    "tri": "- Geometry -> Triangles -> Pythagorean theorem\n- Geometry -> Area -> Area of a triangle",
    "dice": "Counting and probability -> Probability -> Probability as a ratio\nCounting & probability -> Counting -> Listing outcomes",
    "prime": "Number theory -> Primes -> Prime factorisation\nNumber Theory -> Divisibility -> Remainders",
}
TOPIC = re.compile(r"topic (\w+) item (\d+)")


def _topic(request: dict) -> tuple[str, int]:
    last = request["messages"][-1]["content"]
    m = TOPIC.findall(last)
    return (m[-1][0], int(m[-1][1])) if m else ("", -1)


def answer_by_topic(request: dict) -> Reply:
    return Reply(content=ANSWERS.get(_topic(request)[0], "no idea"))


def write_corpus(path: Path, n_per_topic: int = 4) -> Path:
    rows = [(t, k) for k in range(n_per_topic) for t in ANSWERS]
    pq.write_table(pa.table({
        "id": [f"{t}-{k}" for t, k in rows],
        "question": [f"A problem on topic {t} item {i}." for i, (t, _) in enumerate(rows)],
        "response": [f"A solution of item {i}. </think> The final solution." for i in range(len(rows))],
    }), path)
    return path


def config(url: str, **kw) -> TreeBuildConfig:
    llm = BackendConfig(kind="openai", model="stub-model", base_urls=[url], max_concurrency=4, max_retries=0)
    return TreeBuildConfig(llm=llm, **kw)


def items_rows(out: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, (out / "items.jsonl").read_text().splitlines())}


RULES = ChainRules(max_chains=3, max_depth=3, max_name_chars=40, strip_leading=frozenset({"mathematics", "skills"}))


# -- reading answers ---------------------------------------------------------------------
def test_hostile_answer_lines_are_dropped_and_counted():
    text = ("Here are the chains:\n"
            "**1. Mathematics -> Algebra -> Linear equations.**\n"
            "Algebra -> Lin\x07ear\n"                        # a control character
            "Algebra -> \u202eevil\n"                        # a bidirectional override
            "Algebra ->  -> Empty\n"
            f"Algebra -> {'x' * 41}\n"                       # a name too long
            "Step 2: Geometry \u2192 Circles > Area\n"
            "Algebra -> Linear equations\n"                  # seen (after the root's name is dropped)
            "A -> B -> C -> D -> E\n"                        # cut to max_depth
            "Number theory -> Primes\n"                      # over max_chains
            "__import__('os').system('echo hacked') -> x\n")  # only ever text
    r = read_chains(text, "stop", RULES)
    assert r.chains == [("Algebra", "Linear equations"), ("Geometry", "Circles", "Area"), ("A", "B", "C")]
    assert r.cut_to_depth == 1
    assert dict(r.dropped) == {"no_arrow": 1, "bad_name": 2, "empty_step": 1, "name_too_long": 1, "over_max_chains": 2}


def test_cut_empty_and_unfinished_answers():
    assert read_chains("A -> B\nC -> D", "length", RULES).chains == [("A", "B")]  # the cut last line is dropped
    for text, finish in (("", "stop"), (None, "stop"), ("<think>A -> B", "stop"), ("A -> B", "content_filter")):
        r = read_chains(text, finish, RULES)
        assert r.chains == [] and r.dropped["no_answer"] == 1
    assert read_chains("<think>x -> y</think>\nA -> B", "stop", RULES).chains == [("A", "B")]
    huge = "Algebra -> Linear equations\n" * 200_000  # 5 MB of one line repeated
    r = read_chains(huge, "stop", RULES)
    assert r.chains == [("Algebra", "Linear equations")]


# -- merging -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def embed():
    from skilldistill.llm.embedding import EmbeddingAttributor

    return EmbeddingAttributor().encode


def test_near_duplicate_names_merge_with_minilm_and_are_recorded(embed):
    chains = [[("Counting and probability", "Probability")], [("Counting & probability", "Probability")],
              [("counting and  Probability", "Counting")], [("Geometry", "Triangles")], [("Geometry", "Circles")],
              [("Number theory", "Primes")], [("Number theory", "Prime numbers")]]
    rules = MergeRules(threshold=0.85, max_children=10, overflow="similar", min_count=1)
    m = merge_chains(chains, "Skills", embed, rules)
    top = {p[0]: n for p, n in m.items.items() if len(p) == 1}
    assert top == {"Counting and probability": 3, "Geometry": 2, "Number theory": 2}
    # equal counts: the first name in order heads the group
    assert ("Number theory", "Prime numbers") in m.kept and ("Number theory", "Primes") not in m.kept  # 0.87
    assert ("Geometry", "Circles") in m.kept and ("Geometry", "Triangles") in m.kept
    merged = {(x["into"], x["name"]) for x in m.merges}
    assert merged == {("Counting and probability", "Counting & probability"), ("Prime numbers", "Primes")}
    assert m.merges[0]["similarity"] >= 0.85
    # deterministic: the same chains give the same tree
    again = merge_chains(chains, "Skills", embed, rules)
    assert (again.kept, again.items, again.merges) == (m.kept, m.items, m.merges)
    # threshold 1: only names equal ignoring case and spacing merge
    strict = merge_chains(chains, "Skills", embed, MergeRules(1.0, 10, "similar", 1))
    assert sum(1 for p in strict.kept if len(p) == 1) == 4


@pytest.mark.parametrize("overflow", ["similar", "other"])
def test_children_cap_is_respected(embed, overflow):
    names = ["Algebra", "Geometry", "Number theory", "Probability", "Calculus", "Statistics", "Trigonometry",
             "Linear algebra"]
    chains = [[(name, f"Skill {k}")] for i, name in enumerate(names) for k in range(len(names) - i)]
    m = merge_chains(chains, "Skills", embed, MergeRules(threshold=0.99, max_children=3, overflow=overflow, min_count=1))
    top = sorted(p[0] for p in m.kept if len(p) == 1)
    assert len(top) == 3
    assert all(sum(1 for p in m.kept if len(p) == 2 and p[0] == t) <= 3 for t in top)  # every node, not only the root
    # "Other" is one of the three
    assert len({r["node"] for r in m.folded if r["parent"] == "Skills"}) == (6 if overflow == "other" else 5)
    if overflow == "other":
        assert top == ["Algebra", "Geometry", "Other"]
    else:
        assert top == ["Algebra", "Geometry", "Number theory"]
        assert all(r["into"] in top for r in m.folded if r["parent"] == "Skills")
    assert sum(1 for e in m.item_ends if any(p for p in e)) == len(chains)  # folded items are still placed


def test_min_count_drops_small_nodes_into_their_parent(embed):
    chains = [[("Algebra", "Linear equations")], [("Algebra", "Linear equations")], [("Algebra", "Matrices")],
              [("Geometry", "Circles")]]
    m = merge_chains(chains, "Skills", embed, MergeRules(0.85, 10, "similar", 2))
    assert m.kept == {("Algebra",), ("Algebra", "Linear equations")}
    assert {(d["parent"], d["node"]) for d in m.dropped} == {("Skills", "Geometry"), ("Algebra", "Matrices")}
    assert m.item_ends[3] == {()} and m.item_ends[2] == {("Algebra",)} and m.ends[("Algebra",)] == 1


# -- the stage through the stub server -------------------------------------------------------
def test_build_writes_a_valid_tree_with_counts(tmp_path):
    corpus = write_corpus(tmp_path / "c.parquet")
    with OpenAIStub(responder=answer_by_topic) as stub:
        result = run_tree_build(corpus, tmp_path / "b", config(stub.base_url, min_count=2), show_progress=False)
        assert stub.chat_calls == 20
        again = run_tree_build(corpus, tmp_path / "b", config(stub.base_url, min_count=2), show_progress=False)
        assert again.skipped and stub.chat_calls == 20  # the manifest says done: nothing asked
    tree = SkillTree.load(result.tree_path, on_duplicate="error")
    assert {c.name for c in tree.root.children} == {"Algebra", "Arithmetic", "Geometry", "Counting & probability",
                                                     "Number theory"}
    assert ("Algebra", "Quadratic equations", "Factoring") in tree
    counts = json.loads(result.counts_path.read_text())
    by_node = {n["node"]: n for n in counts["nodes"]}
    assert by_node["Algebra"]["items"] == 8 and by_node["Geometry->Triangles"]["items"] == 4
    s = result.summary
    assert s["items"] == 20 and s["items_with_chains"] == 20 and s["calls_this_run"] == 20
    assert items_rows(tmp_path / "b")["tri-0"]["nodes"] == ["Geometry->Area->Area of a triangle",
                                                            "Geometry->Triangles->Pythagorean theorem"]


def test_hostile_server_answers_are_counted_and_the_tree_stays_valid(tmp_path):
    corpus = write_corpus(tmp_path / "c.parquet", n_per_topic=6)
    hostile = {0: "", 1: "A -> B\x00C -> D\n\x1b[31mred -> alert\x1b[0m", 2: "x -> y\n" + "garbage\n" * 100_000,
               3: "->->->\n-> ->", 4: "Algebra -> " + "very " * 50 + "long", 5: "\u200b -> \u200b"}

    def responder(request: dict) -> Reply:
        topic, i = _topic(request)
        if i in hostile:
            return Reply(content=hostile[i])
        if i == 6:
            return Reply(content="Algebra -> Linear equations\nGeometry -> Circ", finish_reason="length")
        return Reply(content=ANSWERS[topic])

    with OpenAIStub(responder=responder) as stub:
        with pytest.raises(InputError, match=r"5 of 30 items gave no usable skill chain"):
            run_tree_build(corpus, tmp_path / "b", config(stub.base_url, max_failed_share=0.1), show_progress=False)
        result = run_tree_build(corpus, tmp_path / "b", config(stub.base_url), show_progress=False)
        assert stub.chat_calls == 30  # the failed run's answers were kept: none asked twice
    s = result.summary
    assert s["items_failed"] == {"refused": 0, "no_chain": 5}
    assert s["lines_dropped"]["no_answer"] == 1 and s["lines_dropped"]["cut_off"] == 1
    assert s["lines_dropped"]["bad_name"] >= 2 and s["lines_dropped"]["empty_step"] >= 1
    # the 800 KB answer: stored cut to its head, its lines read up to a bound, all counted
    assert s["lines_dropped"]["no_arrow"] + s["lines_dropped"]["over_max_chains"] >= 2000
    assert (tmp_path / "b" / "proposals.jsonl").stat().st_size < 200_000
    assert items_rows(tmp_path / "b")["tri-0"]["chains"] == ["x->y"]
    assert items_rows(tmp_path / "b")["quad-1"]["chains"] == ["Algebra->Linear equations"]
    assert CliRunner().invoke(app, ["tree", "validate", str(result.tree_path)]).exit_code == 0


def test_resume_after_a_kill_asks_no_item_twice(tmp_path):
    corpus = write_corpus(tmp_path / "c.parquet")
    asked: list[str] = []

    def dies_after_seven(request: dict) -> Reply:
        asked.append(request["messages"][-1]["content"])
        if len(asked) > 7:
            return Reply(status=0)  # the server dies: the connection drops, no retries left
        return answer_by_topic(request)

    with OpenAIStub(responder=dies_after_seven) as stub:
        cfg = config(stub.base_url, items=15, seed=3)
        cfg.llm.max_concurrency = 1
        with pytest.raises((BackendError, openai.APIConnectionError)):
            run_tree_build(corpus, tmp_path / "b", cfg, show_progress=False)
    log = tmp_path / "b" / "proposals.jsonl"
    kept = log.read_text().splitlines()
    assert len(kept) == 7
    log.write_text("\n".join(kept[:6]) + "\n" + kept[6][:30])  # a kill mid-write leaves a torn last line
    with OpenAIStub(responder=answer_by_topic) as stub:
        result = run_tree_build(corpus, tmp_path / "b", config(stub.base_url, items=15, seed=3), show_progress=False)
        second = [r["body"]["messages"][-1]["content"] for r in stub.requests]
    assert len(second) == 15 - 6  # the torn record is asked again, the six before it are not
    assert not set(second) & set(asked[:6])
    assert result.summary["answers_cached"] == 6 and result.summary["items"] == 15
    # the same sample: seeded
    assert set(items_rows(tmp_path / "b")) == {r["id"] for r in map(json.loads, log.read_text().splitlines())}


def test_a_larger_sample_holds_the_smaller_one_and_reuses_its_answers(tmp_path):
    corpus = write_corpus(tmp_path / "c.parquet")
    with OpenAIStub(responder=answer_by_topic) as stub:
        small = run_tree_build(corpus, tmp_path / "b", config(stub.base_url, items=8, seed=1), show_progress=False)
        large = run_tree_build(corpus, tmp_path / "b", config(stub.base_url, items=12, seed=1), show_progress=False)
        assert stub.chat_calls == 12
    assert small.summary["calls_this_run"] == 8 and large.summary["answers_cached"] == 8


# -- the CLI ---------------------------------------------------------------------------------
def test_cli_build_then_tree_validate(tmp_path):
    corpus = write_corpus(tmp_path / "c.parquet")
    out = tmp_path / "trees" / "induced.json"
    runner = CliRunner()
    with OpenAIStub(responder=answer_by_topic) as stub:
        r = runner.invoke(app, ["tree", "build", str(corpus), "--backend", "openai", "--model", "stub-model",
                                "--base-url", stub.base_url, "--out", str(out), "--items", "12", "--max-children", "3",
                                "--overflow", "other", "--no-progress"], env={"COLUMNS": "160"})
        assert r.exit_code == 0, r.output
        assert stub.chat_calls == 12
    assert (tmp_path / "trees" / "induced_counts.json").exists() and (tmp_path / "trees" / "induced_build").is_dir()
    tree = SkillTree.load(out)
    assert len(tree.root.children) <= 3 and all(len(n.children) <= 3 for _, n in tree.nodes())
    r = runner.invoke(app, ["tree", "validate", str(out)])
    assert r.exit_code == 0 and "valid" in r.output
    r = runner.invoke(app, ["tree", "build", str(corpus), "--backend", "transformers", "--model", "x", "--out", str(out)])
    assert r.exit_code == 2 and "openai or vllm" in r.output

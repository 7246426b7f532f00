"""Decontamination: exact, n-gram and fuzzy matches against real benchmark files."""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skilldistill.corpus.config import IngestConfig
from skilldistill.corpus.stage import ingest
from skilldistill.decontaminate.config import DecontaminationConfig
from skilldistill.decontaminate.matcher import Decontaminator
from skilldistill.decontaminate.problems import BenchmarkProblems, load_benchmark_problems
from skilldistill.errors import InputError


def _math500(shared_data) -> list[dict]:
    return [json.loads(line) for line in (shared_data / "benchmarks" / "math500" / "test.jsonl").open()]


def _edits(problem: str, rng: random.Random) -> dict[str, str]:
    """Three near-copies of a problem, as they circulate in teacher corpora."""
    words = problem.split(" ")
    long_words = [i for i, w in enumerate(words) if w.isalpha() and len(w) > 3]
    one_word = list(words)
    one_word[rng.choice(long_words)] = "banana"
    return {
        "whitespace": "  " + "\n".join(problem.split(" ")) + "\t",
        "punctuation": problem.replace(",", "").replace("?", ".").rstrip(".") + "!",
        "one word": " ".join(one_word),
    }


def test_near_copies_removed_distinct_problems_sharing_a_phrase_kept(tmp_path, shared_data):
    rng = random.Random(0)
    bench = [r for r in _math500(shared_data) if len(r["problem"].split()) >= 25][:40]
    rows = []
    for r in bench:
        for kind, text in _edits(r["problem"], rng).items():
            rows.append({"id": f"{r['unique_id']}|{kind}", "problem": text, "solution": "\\boxed{1}"})
    phrase = "Let $a,$ $b,$ and $c$ be positive real numbers such that"
    assert sum(r["problem"].startswith("Let $a,$ $b,$ and $c$ be positive real numbers") for r in _math500(shared_data)) >= 1
    kept = [
        f"{phrase} $a + b + c = 7.$ Find the largest possible number of lattice points on the sphere through them.",
        f"{phrase} $abc = 64.$ How many ordered triples of primes are there whose product is a perfect cube?",
        "Find the number of ordered pairs of positive integers $(m, n)$ such that the number of trees in an orchard "
        "is $m^2 + n^2 = 2026$ and each tree bears an odd number of apples.",
    ]
    rows += [{"id": f"distinct-{i}", "problem": q, "solution": "\\boxed{2}"} for i, q in enumerate(kept)]
    src = tmp_path / "corpus.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    ingest(IngestConfig(source=str(src), preset="math", id_field="id",
                        exclude=[str(shared_data / "benchmarks" / "math500" / "test.jsonl")]), out, progress=False)
    left = pq.read_table(out / "corpus.parquet").column("id").to_pylist()
    assert left == [f"distinct-{i}" for i in range(3)]
    report = json.loads((out / "decontamination.json").read_text())
    m500 = report["benchmarks"]["math500"]
    assert report["items_removed"] == 120 and m500["problems_hit"] == 40
    assert m500["items_removed"]["exact"] == 40  # whitespace edits normalise away
    # punctuation edits: every word n-gram kept; one-word edits: most of them, or a 95+ ratio
    assert m500["items_removed"]["ngram"] + m500["items_removed"]["fuzzy"] == 80
    assert all(e["score"] >= 0.5 for e in m500["examples"]["ngram"])
    ex = m500["examples"]["exact"][0]
    assert ex["corpus_id"].split("|")[0] == ex["benchmark_id"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["decontaminated"] == 120
    assert manifest["counts"]["dropped"]["in an excluded benchmark (exact)"] == 40


def _problems(*qs: str) -> BenchmarkProblems:
    p = BenchmarkProblems()
    for i, q in enumerate(qs):
        p.add("b", str(i), q)
    return p


def test_each_method_on_a_hand_made_case():
    words = " ".join(f"w{i}" for i in range(20))  # 20 words: 13 distinct 8-grams
    d = Decontaminator(_problems(words, "Compute 2+2."))
    # one word changed in the middle: 8 of the 13 n-grams broken -> 5/13 = 0.38 < 0.5
    mid = words.replace("w10", "x")
    end = words.replace("w19", "x")  # at the end: 1 broken -> 12/13
    matches = d.find([words.upper(), end, mid, "compute  2+2", "Compute 2+2!", "compute 3+3."])
    # short problems: exact, or a ratio of 95.7 (one character in 23), not 81.8 (two digits)
    assert [m and m.method for m in matches] == ["exact", "ngram", "fuzzy", "exact", "fuzzy", None]
    assert matches[1].score == pytest.approx(12 / 13, abs=1e-4)
    assert matches[2].score >= 95
    # open-r1's rule: any shared n-gram
    anyone = Decontaminator(_problems(words), DecontaminationConfig(ngram_min_overlap=0, methods=["ngram"]))
    assert anyone.find(["w0 w1 w2 w3 w4 w5 w6 w7 then something else"])[0].method == "ngram"
    assert anyone.find(["w0 w1 w2 w3 w4 w5 w6 then something else"]) == [None]  # 7 words: no 8-gram
    only_exact = Decontaminator(_problems(words), DecontaminationConfig(methods=["exact"]))
    assert only_exact.find([end]) == [None]


def test_benchmarks_by_name_from_a_data_dir(shared_data):
    p = load_benchmark_problems(["aime24", "amc23"], data_dir=shared_data / "benchmarks")
    assert p.counts() == {"aime24": 30, "amc23": 40}
    with pytest.raises(InputError, match="nor a benchmark name"):
        load_benchmark_problems(["nope.jsonl"])
    bad = shared_data / "corpora" / "gsm8k"
    assert load_benchmark_problems([bad]).counts()  # a folder of files with a 'question' field


def test_ingest_refuses_a_missing_benchmark_before_writing(tmp_path, shared_data):
    out = tmp_path / "out"
    src = tmp_path / "c.parquet"
    pq.write_table(pa.table({"problem": ["What is 1+1?"], "solution": ["\\boxed{2}"]}), src)
    ingest(IngestConfig(source=str(src), preset="math"), out, progress=False)
    before = (out / "corpus.parquet").read_bytes()
    with pytest.raises(InputError, match="exclusion file not found"):
        ingest(IngestConfig(source=str(src), preset="math", exclude=[str(tmp_path / "missing.jsonl")]), out, progress=False)
    assert (out / "corpus.parquet").read_bytes() == before


def test_an_exclusion_file_mixing_question_fields_excludes_every_row(tmp_path):
    from skilldistill.decontaminate.problems import load_benchmark_problems
    from skilldistill.errors import InputError

    bench = tmp_path / "mixed.jsonl"
    bench.write_text(json.dumps({"problem": "What is 1+1?"}) + "\n" + json.dumps({"question": "What is 2+2?"}) + "\n")
    assert load_benchmark_problems([bench]).questions == ["What is 1+1?", "What is 2+2?"]  # the second was skipped
    bench.write_text(json.dumps({"problem": "What is 1+1?"}) + "\n" + json.dumps({"answer": "4"}) + "\n")
    with pytest.raises(InputError, match=r"mixed.jsonl.*2.*no question"):
        load_benchmark_problems([bench])

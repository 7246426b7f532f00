"""Corpus ingestion on the real MATH / GSM8K / MATH-500 files and on fixtures in the
exact schemas of the other presets."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from skilldistill.corpus.config import IngestConfig
from skilldistill.corpus.presets import PRESETS, detect_preset
from skilldistill.corpus.stage import ingest
from skilldistill.corpus.table import read_corpus
from skilldistill.errors import InputError
from skilldistill.textutil import last_boxed, normalize_question

FIXTURES = Path(__file__).parent / "fixtures" / "presets"


def _ingest(tmp_path: Path, **kw) -> tuple[pd.DataFrame, dict]:
    out = tmp_path / "corpus"
    ingest(IngestConfig(**kw), out, progress=False)
    return pd.read_parquet(out / "corpus.parquet"), json.loads((out / "manifest.json").read_text())


def test_math_test_answers_are_the_gold_boxed(tmp_path, shared_data):
    src = shared_data / "corpora" / "math_test" / "test.jsonl"
    df, manifest = _ingest(tmp_path, source=str(src), preset="math")
    raw = [json.loads(line) for line in src.read_text().splitlines()]
    assert manifest["counts"]["rows_read"] == 5000
    # MATH test has a handful of repeated problems; every written row is unique.
    assert df["question"].map(normalize_question).is_unique
    by_q = {r["problem"].strip(): r for r in raw}
    mismatches = [q for q, a in zip(df["question"], df["answer"], strict=True) if last_boxed(by_q[q]["solution"]) != a]
    assert mismatches == []
    assert len(df) >= 4990
    assert list(df.columns) == ["id", "question", "response", "answer", "source", "meta"]
    meta = json.loads(df["meta"].iloc[0])
    assert meta["type"] == raw[0]["type"] and meta["level"] == raw[0]["level"]


def test_spot_answers_with_nested_braces(tmp_path, shared_data):
    df, _ = _ingest(tmp_path, source=str(shared_data / "corpora" / "math_test" / "test.jsonl"), preset="math")
    fracs = df[df["answer"].str.startswith("\\frac")]
    assert len(fracs) > 100
    assert all(a.count("{") == a.count("}") for a in fracs["answer"])


def test_math500_uses_answer_field_and_unique_id(tmp_path, shared_data):
    src = shared_data / "benchmarks" / "math500" / "test.jsonl"
    df, _ = _ingest(tmp_path, source=str(src), preset="math")
    raw = [json.loads(line) for line in src.read_text().splitlines()]
    assert len(df) == 500
    assert df["id"].tolist() == [r["unique_id"] for r in raw]
    assert df["answer"].tolist() == [r["answer"].strip() for r in raw]


def test_gsm8k_train(tmp_path, shared_data):
    src = shared_data / "corpora" / "gsm8k" / "train.jsonl"
    df, manifest = _ingest(tmp_path, source=str(src))  # preset detected from the columns
    assert manifest["preset"] == "gsm8k"
    raw = [json.loads(line) for line in src.read_text().splitlines()]
    assert manifest["counts"]["rows_read"] == len(raw) == 7473
    golds = {r["question"].strip(): r["answer"].split("####")[-1].strip().replace(",", "") for r in raw}
    assert all(golds[q] == a for q, a in zip(df["question"], df["answer"], strict=True))
    first = df.iloc[0]
    assert first["answer"] == "72"
    assert "<<" not in first["response"] and first["response"].endswith("$\\boxed{72}$.")


def test_decontamination_against_math500(tmp_path, shared_data):
    df, manifest = _ingest(
        tmp_path,
        source=str(shared_data / "corpora" / "math_test" / "test.jsonl"),
        preset="math",
        exclude=[str(shared_data / "benchmarks" / "math500" / "test.jsonl")],
    )
    counts = manifest["counts"]
    by_method = counts["decontaminated_by_method"]
    assert by_method["exact"] == 500  # MATH-500 is a subset of MATH test
    # ... and MATH's templated twins of them (same problem, other numbers) go too
    assert 0 < by_method["ngram"] + by_method["fuzzy"] < 100
    assert counts["decontaminated"] == sum(by_method.values()) == 5000 - counts["rows_written"] - sum(
        v for k, v in counts["dropped"].items() if "excluded" not in k)
    bench = {normalize_question(json.loads(line)["problem"]) for line in (shared_data / "benchmarks" / "math500" / "test.jsonl").open()}
    assert not bench & set(df["question"].map(normalize_question))
    report = json.loads((tmp_path / "corpus" / "decontamination.json").read_text())
    assert report["benchmarks"]["math500"]["problems"] == 500
    assert report["benchmarks"]["math500"]["items_removed"] == by_method


@pytest.mark.parametrize(
    ("fixture", "preset", "expected"),
    [
        ("openmathreasoning.jsonl", "openmathreasoning", [("What is $3 \\times 4$?", "12", "aops_c4_high_school_math"),
                                                         ("Compute $\\sin 30^\\circ$.", "\\frac{1}{2}", "aops_c6_high_school_olympiads")]),
        ("openr1_math.parquet", "openr1-math", [("Find $x$ if $2x+3=11$.", "4", "olympiads"),
                                                ("How many primes are less than 10?", "4", "cn_contest")]),
        ("deepmath.jsonl", "deepmath", [("Evaluate $\\lim_{x\\to 0} \\frac{\\sin x}{x}$.", "1", "presets/deepmath")]),
        ("numinamath.jsonl", "numinamath", [("What is $15\\%$ of $80$?", "12", "synthetic_math")]),
        ("s1k.json", "s1k", [("Find the number of ordered pairs ... (AIME-style).", "128", "qq8933/AIME_1983_2024"),
                             ("Minimum of $a^2+1$?", "1", "AI-MO/NuminaMath-CoT/aops_forum")]),
        ("limo.jsonl", "limo", [("Find the remainder when $2^{10}$ is divided by $7$.", "2", "presets/limo")]),
    ],
)
def test_presets_on_their_schemas(tmp_path, fixture, preset, expected):
    df, manifest = _ingest(tmp_path, source=str(FIXTURES / fixture), preset=preset)
    assert [(r.question, r.answer, r.source) for r in df.itertuples()] == expected
    assert manifest["preset"] == preset


def test_openr1_takes_first_verified_generation(tmp_path):
    df, _ = _ingest(tmp_path, source=str(FIXTURES / "openr1_math.parquet"), preset="openr1-math")
    assert df["response"].iloc[0] == "<think>\n2x = 8\n</think>\n\nSo $x=\\boxed{4}$."
    assert df["id"].tolist() == ["5e7c1f0a-1", "5e7c1f0a-2"]
    meta = json.loads(df["meta"].iloc[0])
    assert meta["problem_type"] == "Algebra" and "generations" not in meta


def test_think_blocks_are_kept_and_s1k_wraps_trajectory(tmp_path):
    df, _ = _ingest(tmp_path, source=str(FIXTURES / "openmathreasoning.jsonl"), preset="openmathreasoning")
    assert df["response"].iloc[0].startswith("<think>\nThree groups")
    df, _ = _ingest(tmp_path, source=str(FIXTURES / "s1k.json"), preset="s1k")
    assert df["response"].iloc[0] == "<think>\nLet me count the pairs carefully.\n</think>\n\nThere are $\\boxed{128}$ ordered pairs."


def test_bad_rows_are_counted_with_their_location(tmp_path):
    df, manifest = _ingest(tmp_path, source=str(FIXTURES / "openmathreasoning.jsonl"), preset="openmathreasoning")
    assert len(df) == 2
    assert manifest["counts"]["dropped"] == {"empty question": 1}
    assert manifest["dropped_examples"]["empty question"][0].endswith("openmathreasoning.jsonl:3 (problem)")
    df, manifest = _ingest(tmp_path, source=str(FIXTURES / "numinamath.jsonl"), preset="numinamath")
    assert manifest["counts"]["dropped"] == {"no extractable answer": 1}


def test_on_error_fail_names_file_line_field(tmp_path):
    with pytest.raises(InputError) as e:
        _ingest(tmp_path, source=str(FIXTURES / "openmathreasoning.jsonl"), preset="openmathreasoning", on_error="fail")
    assert (e.value.row, e.value.field) == (3, "problem")
    assert "openmathreasoning.jsonl" in str(e.value) and "line 3" in str(e.value)


def test_unreadable_line_is_skipped_and_located(tmp_path):
    src = tmp_path / "broken.jsonl"
    src.write_text('{"problem": "1+1?", "solution": "$\\\\boxed{2}$"}\n{"problem": "oops", \n{"problem": "2+2?", "solution": "\\\\boxed{4}"}\n')
    df, manifest = _ingest(tmp_path, source=str(src), preset="numinamath")
    assert df["answer"].tolist() == ["2", "4"]
    assert manifest["counts"]["dropped"] == {"unreadable line": 1}
    assert manifest["dropped_examples"]["unreadable line"] == [f"{src}:2"]


def test_missing_column_fails_and_keeps_previous_output(tmp_path, shared_data):
    out = tmp_path / "corpus"
    ingest(IngestConfig(source=str(FIXTURES / "limo.jsonl"), preset="limo"), out, progress=False)
    before = (out / "corpus.parquet").read_bytes()
    with pytest.raises(InputError) as e:
        ingest(IngestConfig(source=str(FIXTURES / "limo.jsonl"), preset="deepmath"), out, progress=False)
    assert e.value.field == "r1_solution_1" and e.value.row == 1
    assert (out / "corpus.parquet").read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_explicit_field_mapping(tmp_path):
    src = tmp_path / "custom.jsonl"
    src.write_text(json.dumps({"prompt_text": "2+3?", "trace": "<think>add</think> so \\boxed{5}", "key": 42, "lvl": 2}) + "\n")
    df, manifest = _ingest(tmp_path, source=str(src), question_field="prompt_text", response_field="trace", id_field="key")
    assert df.iloc[0][["id", "question", "answer"]].tolist() == ["42", "2+3?", "5"]
    assert json.loads(df.iloc[0]["meta"]) == {"lvl": 2}


def test_folder_of_mixed_files_and_dedup(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    rows = [{"problem": "What is 1+1?", "solution": "\\boxed{2}"}, {"problem": "what is  1+1?", "solution": "\\boxed{2}"}]
    (folder / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    pq.write_table(pd.DataFrame([{"problem": "What is 2+2?", "solution": "\\boxed{4}"}]).pipe(lambda d: __import__("pyarrow").Table.from_pandas(d)), folder / "b.parquet")
    df, manifest = _ingest(tmp_path, source=str(folder), preset="numinamath")
    assert df["question"].tolist() == ["What is 1+1?", "What is 2+2?"]
    assert manifest["counts"]["dropped"] == {"duplicate question": 1}


def test_ids_are_stable_content_hashes(tmp_path, shared_data):
    src = str(shared_data / "corpora" / "gsm8k" / "test.jsonl")
    a, _ = _ingest(tmp_path / "a", source=src, preset="gsm8k")
    b, _ = _ingest(tmp_path / "b", source=src, preset="gsm8k", limit=50)
    assert a["id"].is_unique and a["id"].head(50).tolist() == b["id"].tolist()


def test_detect_preset_and_read_back(tmp_path):
    assert detect_preset(["question", "final_answer", "r1_solution_1", "r1_solution_2"]) == "deepmath"
    assert detect_preset(["problem", "generated_solution", "expected_answer"]) == "openmathreasoning"
    assert detect_preset(["foo"]) is None
    _ingest(tmp_path, source=str(FIXTURES / "limo.jsonl"), preset="limo")
    assert read_corpus(tmp_path / "corpus").num_rows == 1
    with pytest.raises(InputError):
        read_corpus(tmp_path / "nowhere")


def test_every_preset_has_a_fixture_or_real_file():
    covered = {"openmathreasoning", "openr1-math", "deepmath", "numinamath", "math", "gsm8k", "s1k", "limo"}
    assert set(PRESETS) == covered


def test_openmathreasoning_keeps_the_pass_rate_for_the_difficulty_baseline(tmp_path):
    df, _ = _ingest(tmp_path, source=str(FIXTURES / "openmathreasoning.jsonl"), preset="openmathreasoning")
    rates = [json.loads(m).get("pass_rate_72b_tir") for m in df["meta"]]
    raw = [json.loads(line).get("pass_rate_72b_tir") for line in (FIXTURES / "openmathreasoning.jsonl").open()]
    assert rates == raw[: len(rates)] and any(r not in (None, "n/a") for r in rates)


def test_rows_are_never_mapped_onto_a_wrong_gold_or_a_duplicate_id(tmp_path):
    """Found in review: each of these was written silently."""
    from skilldistill.textutil import gsm8k_final

    # an explicit (required) answer field missing in a row: dropped, not the teacher's box
    src = tmp_path / "noans.jsonl"
    rows = [{"q": "1+2?", "r": "\\boxed{3}", "a": "3"}, {"q": "3+4?", "r": "teacher wrong \\boxed{8}"},
            {"q": "4+4?", "r": "\\boxed{8}", "a": None}]
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    df, manifest = _ingest(tmp_path, source=str(src), question_field="q", response_field="r", answer_field="a")
    assert df["answer"].tolist() == ["3"] and manifest["counts"]["dropped"] == {"missing answer": 2}
    # the same problem twice with --no-dedup: two rows, two ids
    src = tmp_path / "twice.jsonl"
    src.write_text("\n".join(json.dumps({"problem": "What is 1+1?", "solution": f"trace {k} \\boxed{{2}}"})
                             for k in range(3)) + "\n")
    df, _ = _ingest(tmp_path, source=str(src), preset="numinamath", dedup=False)
    assert len(df) == 3 and df["id"].is_unique
    # OpenR1 rows whose generations were all verified wrong have no teacher solution
    src = tmp_path / "openr1.jsonl"
    src.write_text(json.dumps({"problem": "2x = 8?", "generations": ["wrong \\boxed{5}", "wrong \\boxed{3}"],
                               "correctness_math_verify": [False, False], "answer": "4", "uuid": "u1",
                               "source": "s"}) + "\n" + json.dumps({
        "problem": "x + 1 = 2?", "generations": ["\\boxed{1}"], "correctness_math_verify": [True], "answer": "1",
        "uuid": "u2", "source": "s"}) + "\n")
    df, manifest = _ingest(tmp_path, source=str(src), preset="openr1-math")
    assert df["id"].tolist() == ["u2"] and manifest["counts"]["dropped"] == {"no teacher response": 1}
    # "#### Step 1" headings are not GSM8K's final-answer marker; the last line's is
    assert gsm8k_final("#### Step 1\nCompute 2 + 2.\n#### Step 2\nDone, no answer line here.") is None
    assert gsm8k_final("Half of 10 is 5.\n#### 5") == "5" and gsm8k_final("so\n#### 1,234\n") == "1234"


def test_multi_part_answers_in_dollars_keep_every_part(tmp_path):
    from skilldistill.rows import strip_dollars

    assert strip_dollars("$69$,$84$") == "69,84"
    assert strip_dollars("$\\frac{1}{2}$") == "\\frac{1}{2}" and strip_dollars("$5") == "$5"

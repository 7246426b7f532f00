"""Formatting: the paper's skill-aware target, depth windows, exports (TRL, datasets, LLaMA-Factory), lengths."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skilldistill.errors import ConfigError, InputError
from skilldistill.format import (
    DEFAULT_INSTRUCTION,
    ExampleFormat,
    FormatConfig,
    assistant_target,
    build_messages,
    build_user_prompt,
    count_tokens,
    plan_lines,
    run_format,
    skill_plan_lines,
)

SKILLS_TYPE = pa.list_(pa.list_(pa.string()))
CHAINS = [["Algebra", "solving equations"], ["Pre-Algebra", "fractions"], ["Algebra", "linear functions"]]
RESPONSE = "<think>\nMultiply both sides by 2.\n</think>\nSo $x = \\boxed{3}$."




def write_selection(path: Path, rows: list[dict]) -> Path:
    table = pa.table({
        "id": pa.array([r["id"] for r in rows]),
        "question": pa.array([r["question"] for r in rows]),
        "response": pa.array([r["response"] for r in rows]),
        "answer": pa.array([r.get("answer", "3") for r in rows]),
        "skills": pa.array([r.get("skills", []) for r in rows], SKILLS_TYPE),
        "selected_leaf": pa.array([None] * len(rows), pa.string()),
        "draw_order": pa.array(list(range(len(rows))), pa.int64()),
    })
    pq.write_table(table, path)
    return path


# -- the target text ----------------------------------------------------------------
def test_skill_aware_target_matches_the_paper_form():
    fmt = ExampleFormat(style="skill-aware")
    got = assistant_target(RESPONSE, CHAINS[:2], fmt)
    assert got == "Skills:\nAlgebra->solving equations\nPre-Algebra->fractions\n" + RESPONSE
    assert got.startswith("Skills:\nAlgebra->solving equations\nPre-Algebra->fractions\n<think>\n")
    assert assistant_target(RESPONSE, CHAINS, ExampleFormat(style="plain")) == RESPONSE


def test_depth_windows_and_separator():
    assert skill_plan_lines(CHAINS, "full") == ["Algebra->solving equations", "Pre-Algebra->fractions", "Algebra->linear functions"]
    assert skill_plan_lines(CHAINS, "top") == ["Algebra", "Pre-Algebra"]  # repeated top levels once
    assert skill_plan_lines(CHAINS, "leaf") == ["solving equations", "fractions", "linear functions"]
    assert skill_plan_lines(CHAINS[:1], "full", " > ") == ["Algebra > solving equations"]
    deep = [["A", "B", "C", "D"]]
    assert assistant_target("<think>x</think>y", deep, ExampleFormat(depth="top")) == "Skills:\nA\n<think>x</think>y"
    assert assistant_target("<think>x</think>y", deep, ExampleFormat(depth="leaf")) == "Skills:\nD\n<think>x</think>y"


def test_plan_inside_think_and_no_skills():
    fmt = ExampleFormat(plan_position="inside_think")
    assert assistant_target(RESPONSE, CHAINS[:1], fmt) == (
        "<think>\nSkills:\nAlgebra->solving equations\nMultiply both sides by 2.\n</think>\nSo $x = \\boxed{3}$."
    )
    # a response without <think>: the plan simply comes first
    assert assistant_target("x = 3", CHAINS[:1], fmt) == "Skills:\nAlgebra->solving equations\nx = 3"
    # nothing to plan with: the response is left unchanged
    assert assistant_target(RESPONSE, [], ExampleFormat()) == RESPONSE


def test_messages_carry_the_shared_instruction_and_optional_system():
    msgs = build_messages("  Solve $2x = 6$. ", RESPONSE, CHAINS[:1], ExampleFormat())
    assert [m["role"] for m in msgs] == ["user", "assistant"]
    assert msgs[0]["content"] == "Solve $2x = 6$.\n\n" + DEFAULT_INSTRUCTION
    assert "\\boxed{}" in DEFAULT_INSTRUCTION
    msgs = build_messages("Q", RESPONSE, None, ExampleFormat(system_prompt="Be brief.", instruction=None, style="plain"))
    assert msgs == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q"},
                    {"role": "assistant", "content": RESPONSE}]
    assert build_user_prompt("Q", "") == "Q"


def test_user_turn_is_the_prompt_of_profiling_and_evaluation():
    from skilldistill.generate import GenerationConfig
    from skilldistill.llm.base import BackendConfig

    gen = GenerationConfig(backend=BackendConfig(kind="openai", model="student"))
    for q in ("  Solve $2x = 6$.\n", "What is 1+1?"):
        assert build_messages(q, RESPONSE, CHAINS, ExampleFormat())[0]["content"] == gen.user_prompt(q)


# -- the stage ---------------------------------------------------------------------------
@pytest.mark.slow  # importing datasets and trl (torch) takes seconds
def test_exports_are_readable_by_datasets_trl_and_llamafactory(tmp_path: Path):
    from datasets import load_from_disk
    from trl.data_utils import is_conversational

    rows = [{"id": f"q{i}", "question": f"Solve {i}x = {2 * i}.", "response": RESPONSE, "skills": CHAINS[: 1 + i % 3]}
            for i in range(1, 6)]
    sel = write_selection(tmp_path / "selection.parquet", rows)
    res = run_format(sel, tmp_path / "fmt", FormatConfig(system_prompt="You are a careful solver.", dataset_name="sd1k"),
                     progress=False)
    out = res.out_dir
    assert res.n_written == 5 and res.report["counts"]["dropped_overlong"] == 0

    lines = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert [r["id"] for r in lines] == [f"q{i}" for i in range(1, 6)]
    for r in lines:
        assert is_conversational(r)
        assert [m["role"] for m in r["messages"]] == ["system", "user", "assistant"]
    assert lines[1]["messages"][2]["content"] == (
        "Skills:\nAlgebra->solving equations\nPre-Algebra->fractions\nAlgebra->linear functions\n" + RESPONSE
    )

    ds = load_from_disk(str(out / "hf"))
    assert ds.num_rows == 5 and set(ds.column_names) == {"id", "messages", "n_tokens"}
    assert ds[0]["messages"] == lines[0]["messages"]

    lf = json.loads((out / "llamafactory" / "sd1k.json").read_text())
    assert lf[0] == {
        "conversations": [
            {"from": "human", "value": lines[0]["messages"][1]["content"]},
            {"from": "gpt", "value": lines[0]["messages"][2]["content"]},
        ],
        "system": "You are a careful solver.",
    }
    info = json.loads((out / "llamafactory" / "dataset_info.json").read_text())
    assert info == {"sd1k": {
        "file_name": "sd1k.json", "formatting": "sharegpt",
        "columns": {"messages": "conversations", "system": "system"},
        "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"},
    }}
    report = json.loads((out / "report.json").read_text())
    assert report["exports"] == {"jsonl": "train.jsonl", "hf": "hf", "llamafactory": "llamafactory/sd1k.json"}
    # a rerun with the same inputs is skipped; another config is not
    assert run_format(sel, out, FormatConfig(system_prompt="You are a careful solver.", dataset_name="sd1k"), progress=False).skipped
    assert not run_format(sel, out, FormatConfig(style="plain"), progress=False).skipped
    assert json.loads((out / "train.jsonl").read_text().splitlines()[0])["messages"][-1]["content"] == RESPONSE


def test_bad_selection_rows_are_named(tmp_path: Path):
    sel = write_selection(tmp_path / "s.parquet", [
        {"id": "a", "question": "Q", "response": RESPONSE}, {"id": "b", "question": "Q", "response": "  "},
    ])
    with pytest.raises(InputError, match=r"line 2.*response"):
        run_format(sel, tmp_path / "o", FormatConfig(), progress=False)
    pq.write_table(pq.read_table(sel).drop_columns(["skills"]), tmp_path / "noskills.parquet")
    with pytest.raises(InputError, match="skills"):
        run_format(tmp_path / "noskills.parquet", tmp_path / "o", FormatConfig(), progress=False)
    with pytest.raises(ConfigError, match="tokenizer"):
        run_format(sel, tmp_path / "o", FormatConfig(max_length=100), progress=False)


@pytest.mark.slow
def test_overlong_examples_are_dropped_with_a_real_tokenizer(tmp_path: Path, smollm_tokenizer):
    long_resp = "<think>" + "let us check every case carefully once more. " * 80 + "</think> 3"
    rows = [{"id": f"q{i}", "question": "Solve 2x = 6.", "response": long_resp if i in (1, 3) else RESPONSE,
             "skills": CHAINS[:2]} for i in range(5)]
    sel = write_selection(tmp_path / "s.parquet", rows)
    res = run_format(sel, tmp_path / "o", FormatConfig(max_length=200), tokenizer=smollm_tokenizer, progress=False)
    assert res.n_written == 3 and res.n_dropped_overlong == 2
    assert [d["id"] for d in res.report["dropped"]] == ["q1", "q3"]
    assert all(d["n_tokens"] > 200 for d in res.report["dropped"])
    kept = [json.loads(line) for line in (res.out_dir / "train.jsonl").read_text().splitlines()]
    assert [k["id"] for k in kept] == ["q0", "q2", "q4"]
    # the counts are the lengths the trainer sees: the training template with the model's
    # implicit system turn, which is exactly what SmolLM2's own template renders
    from skilldistill.train import (
        implicit_system_prompt,
        resolve_chat_template,
        with_implicit_system,
    )

    template, name = resolve_chat_template(smollm_tokenizer, "auto")
    system = implicit_system_prompt(smollm_tokenizer)
    assert name == "chatml" and system.startswith("You are a helpful AI assistant named SmolLM")
    direct = smollm_tokenizer.apply_chat_template(with_implicit_system(kept[0]["messages"], system), tokenize=True,
                                                  return_dict=True, chat_template=template)["input_ids"]
    own = smollm_tokenizer.apply_chat_template(kept[0]["messages"], tokenize=True, return_dict=True)["input_ids"]
    assert own == direct
    lengths = pq.read_table(res.out_dir / "examples.parquet").to_pylist()
    assert lengths[0]["n_tokens"] == len(direct) and lengths[1]["kept"] is False
    assert res.report["tokens"]["max"] <= 200
    # keep mode: nothing dropped, the over-long ones are counted
    res = run_format(sel, tmp_path / "k", FormatConfig(max_length=200, overlong="keep"), tokenizer=smollm_tokenizer, progress=False)
    assert res.n_written == 5 and res.report["counts"]["kept_overlong"] == 2
    assert count_tokens(smollm_tokenizer, [kept[0]["messages"]]) == [len(direct)]


@pytest.mark.slow
def test_trl_sft_trainer_takes_the_hf_export(tmp_path: Path, smollm_tokenizer):
    """The ``hf/`` folder goes straight into TRL's SFTTrainer (tiny random model, no training)."""
    from datasets import load_from_disk
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    sel = write_selection(tmp_path / "s.parquet", [
        {"id": f"q{i}", "question": f"Solve {i}x = 6.", "response": RESPONSE, "skills": CHAINS[:2]} for i in range(4)
    ])
    run_format(sel, tmp_path / "o", FormatConfig(), progress=False)
    cfg = LlamaConfig(vocab_size=len(smollm_tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2)
    trainer = SFTTrainer(
        model=LlamaForCausalLM(cfg),
        args=SFTConfig(output_dir=str(tmp_path / "trl"), max_length=256, report_to="none",
                       per_device_train_batch_size=2, use_cpu=True),
        train_dataset=load_from_disk(str(tmp_path / "o" / "hf")),
        processing_class=smollm_tokenizer,
    )
    text = smollm_tokenizer.decode(trainer.train_dataset[0]["input_ids"])
    assert "<|im_start|>assistant\nSkills:\nAlgebra->solving equations\nPre-Algebra->fractions\n<think>" in text
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[0] == 2


@pytest.mark.slow
def test_plan_position_against_trl_qwen3_training_template(smollm_tokenizer):
    """Qwen3's template keeps only the text inside <think> and after </think>: the paper's
    position loses the plan there, ``inside_think`` keeps it."""
    import trl

    template = (Path(trl.__file__).parent / "chat_templates" / "qwen3_training.jinja").read_text()
    for position, kept in (("before_think", False), ("inside_think", True)):
        msgs = build_messages("Solve 2x = 6.", RESPONSE, CHAINS[:1], ExampleFormat(plan_position=position))
        text = smollm_tokenizer.apply_chat_template(msgs, chat_template=template, tokenize=False)
        assert ("Skills:\nAlgebra->solving equations" in text) is kept, text
        assert "Multiply both sides by 2." in text


# -- end to end on the real MATH test set ---------------------------------------------------
_SUBJECT = {"Prealgebra": "Pre-Algebra", "Algebra": "Algebra", "Intermediate Algebra": "Inter-Algebra",
            "Geometry": "Geometry understanding", "Number Theory": "Number Theory", "Precalculus": "Precalculus",
            "Counting & Probability": "Probability"}


@pytest.mark.slow
def test_math_corpus_select_then_format_end_to_end(tmp_path: Path, shared_data: Path, skill_mix_path: Path, smollm_tokenizer):
    """MATH test problems with synthetic skills (the gold subject's leaves) -> skill selection -> skill-aware SFT."""
    from skilldistill.select import SelectConfig, run_select
    from skilldistill.textutil import normalize_question
    from skilldistill.tree import SkillTree

    tree = SkillTree.load(skill_mix_path)
    by_subject: dict[str, list[tuple[str, ...]]] = {}
    for leaf in tree.leaves():
        by_subject.setdefault(leaf[0], []).append(leaf)
    raw = [json.loads(line) for line in (shared_data / "corpora" / "math_test" / "test.jsonl").read_text().splitlines()]
    ids, questions, responses, answers, skills, metas = [], [], [], [], [], []
    for r in raw:
        leaves = by_subject[_SUBJECT[r["type"]]]
        h = int(hashlib.sha256(r["problem"].encode()).hexdigest(), 16)
        chosen = {leaves[h % len(leaves)], leaves[(h // 7) % len(leaves)]} if h % 3 == 0 else {leaves[h % len(leaves)]}
        ids.append(f"math-{r['idx']}")
        questions.append(r["problem"])
        responses.append(f"<think>\n{r['solution']}\n</think>\n{r['solution']}")
        answers.append("")
        skills.append([list(c) for c in sorted(chosen)])
        metas.append(json.dumps({"level": r["level"], "subject": r["type"]}))
    pool = tmp_path / "skills.parquet"
    pq.write_table(pa.table({"id": ids, "question": questions, "response": responses, "answer": answers,
                             "source": ["math_test"] * len(raw), "meta": metas,
                             "skills": pa.array(skills, SKILLS_TYPE)}), pool)
    rng = np.random.default_rng(0)
    nodes = [{"path": [], "chain": "", "depth": 0, "is_leaf": False, "graded": 5000, "correct": 3000,
              "accuracy": 0.6, "smoothed_accuracy": 0.6, "ci_low": 0.58, "ci_high": 0.62}]
    for leaf in tree.leaves():
        acc = float(rng.choice([0.0, 0.2, 0.5, 0.9])) if rng.random() > 0.1 else None  # some leaves ungraded
        nodes.append({"path": list(leaf), "chain": "->".join(leaf), "depth": 2, "is_leaf": True,
                      "graded": 0 if acc is None else 20, "correct": 0 if acc is None else round(acc * 20),
                      "accuracy": acc, "smoothed_accuracy": acc, "ci_low": 0.0, "ci_high": 1.0})
    (tmp_path / "skill_profile.json").write_text(json.dumps({"nodes": nodes}))

    math500 = shared_data / "benchmarks" / "math500" / "test.jsonl"
    res = run_select(pool, tmp_path / "select", SelectConfig(strategy="skill", budget=200, seed=1, exclude=[str(math500)]),
                     profile_json=tmp_path / "skill_profile.json", progress=False)
    assert res.n_selected == 200
    assert res.report["pool"]["excluded_by_question"] == 500  # MATH-500 sits inside the MATH test set
    bench_q = {normalize_question(json.loads(line)["problem"]) for line in math500.read_text().splitlines()}
    sel = pq.read_table(res.out_dir / "selection.parquet")
    assert not {normalize_question(q) for q in sel.column("question").to_pylist()} & bench_q
    assert set(res.report["by_difficulty"]["selected"]) <= {f"Level {i}" for i in range(1, 6)} | {"Level ?"}
    assert res.report["leaves"]["accuracy_source"].get("global", 0) > 0  # ungraded leaves fell back

    fmt = run_format(res.out_dir / "selection.parquet", tmp_path / "format", FormatConfig(max_length=1024),
                     tokenizer=smollm_tokenizer, progress=False)
    assert fmt.n_written + fmt.n_dropped_overlong == 200 and fmt.n_written > 150
    by_id = {r["id"]: r for r in sel.to_pylist()}
    for line in (fmt.out_dir / "train.jsonl").read_text().splitlines()[:50]:
        ex = json.loads(line)
        item = by_id[ex["id"]]
        target = ex["messages"][-1]["content"]
        plan, rest = target.split("\n<think>\n", 1)
        assert plan.split("\n")[0] == "Skills:"
        assert plan.split("\n")[1:] == ["->".join(c) for c in item["skills"]]
        assert "<think>\n" + rest == item["response"]
        assert ex["messages"][0]["content"] == item["question"].strip() + "\n\n" + DEFAULT_INSTRUCTION


def test_cli_format(tmp_path: Path):
    from typer.testing import CliRunner

    from skilldistill.cli import app

    sel = write_selection(tmp_path / "s.parquet", [{"id": "a", "question": "Q?", "response": RESPONSE, "skills": CHAINS[:1]}])
    runner = CliRunner()
    res = runner.invoke(app, ["format", str(sel), "--out", str(tmp_path / "o"), "--depth", "leaf", "--export", "jsonl"])
    assert res.exit_code == 0, res.output
    ex = json.loads((tmp_path / "o" / "train.jsonl").read_text())
    assert ex["messages"][-1]["content"] == "Skills:\nsolving equations\n" + RESPONSE
    assert not (tmp_path / "o" / "hf").exists()
    args = ["format", str(sel), "--out", str(tmp_path / "o"), "--depth", "leaf", "--export", "jsonl"]
    assert "up to date" in runner.invoke(app, args).output
    assert "up to date" not in runner.invoke(app, args + ["--force"]).output
    res = runner.invoke(app, ["format", str(sel), "--out", str(tmp_path / "o2"), "--depth", "middle"])
    assert res.exit_code == 2 and "depth" in res.output
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"solving equations": ["equations"]}))
    res = runner.invoke(app, ["format", str(sel), "--out", str(tmp_path / "o3"), "--export", "jsonl", "--short-names",
                              str(names), "--max-shown-depth", "2", "--short-chains", "drop",
                              "--prompt-template", "{instruction}\\n\\nQuestion: {question}"])
    assert res.exit_code == 0, res.output
    ex = json.loads((tmp_path / "o3" / "train.jsonl").read_text())
    assert ex["messages"][-1]["content"] == "Skills:\nAlgebra->equations\n" + RESPONSE
    assert ex["messages"][0]["content"].endswith("\n\nQuestion: Q?")
    assert "short names: 1 of 2 names shown were in the map" in res.output


def test_depth_window_short_chains_and_short_names(tmp_path: Path):
    chains = [["A", "b", "c", "d"], ["A", "e"], ["F", "g", "h"]]
    fmt = ExampleFormat(min_shown_depth=1, max_shown_depth=3)
    assert plan_lines(chains, fmt) == ["b->c", "e", "g->h"]  # chain[1:3]; the short chain kept in part
    drop = ExampleFormat(min_shown_depth=1, max_shown_depth=3, short_chains="drop")
    assert plan_lines(chains, drop) == ["b->c", "g->h"]  # ["A", "e"] is shorter than 3
    names = tmp_path / "short.json"
    names.write_text(json.dumps({"b": ["B!", "other"], "c": "C!", "g": "G!"}))
    assert plan_lines(chains, drop.model_copy(update={"short_names": str(names)})) == ["B!->C!", "G!->h"]
    with pytest.raises(ValueError, match="must be above"):
        ExampleFormat(min_shown_depth=2, max_shown_depth=2)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"b": "x->y"}))
    with pytest.raises(InputError, match="holds a line break or '->'"):
        plan_lines(chains, ExampleFormat(short_names=str(bad)))


def test_evaltree_skill_aware_export_in_the_authors_format(tmp_path: Path, shared_data: Path):
    """On EvalTree, with the authors' map and window: the user turn is '{instruction}\\n\\nQuestion: q',
    the target 'Skills:\\n' + one 'short->short->...' line per chain (levels 0-4, chains shorter
    than 5 dropped) + the solution."""
    from skilldistill.tree import SkillTree

    tree = SkillTree.load(shared_data / "skill_trees" / "evaltree_math_full.json")
    c2d = json.loads((shared_data / "skill_trees" / "capability_to_distinction.json").read_text())
    # the map holds mostly leaf-level names (none of the top two levels): two depth-5 leaves it shortens
    deep = [list(c) for c in tree.leaves() if len(c) == 5 and c[-1] in c2d][:2]
    shallow = next(list(c) for c in tree.leaves() if len(c) == 3)
    rows = [{"id": "e1", "question": "What is $1+1$?", "response": "<think>1+1=2</think>The answer is $\\boxed{2}$.",
             "skills": deep + [shallow]}]
    sel = write_selection(tmp_path / "sel.parquet", rows)
    cfg = FormatConfig(style="skill-aware", short_names=str(shared_data / "skill_trees" / "capability_to_distinction.json"),
                       min_shown_depth=0, max_shown_depth=5, short_chains="drop",
                       prompt_template="{instruction}\n\nQuestion: {question}", exports=["jsonl"])
    res = run_format(sel, tmp_path / "out", cfg, progress=False)
    msgs = json.loads((tmp_path / "out" / "train.jsonl").read_text().splitlines()[0])["messages"]
    assert msgs[0]["content"] == f"{DEFAULT_INSTRUCTION}\n\nQuestion: What is $1+1$?"
    want = ["->".join(c2d[n][0] if n in c2d else n for n in chain[:5]) for chain in deep]
    assert msgs[1]["content"] == "Skills:\n" + "\n".join(want) + "\n" + rows[0]["response"]
    assert all(c2d[chain[-1]][0] in msgs[1]["content"] and chain[-1] not in msgs[1]["content"] for chain in deep)
    sn = res.report["short_names"]
    assert sn["names_shown"] == 10 and sn["shortened"] == sum(n in c2d for c in deep for n in c[:5])
    # the authors' defaults on skill_mix (depth 2): every chain dropped, said so
    mix = write_selection(tmp_path / "mix.parquet", [{"id": "m", "question": "q", "response": "r",
                                                       "skills": [["Algebra", "Solving linear equations"]]}])
    empty = run_format(mix, tmp_path / "mix", cfg.model_copy(update={"short_names": None}), progress=False)
    assert empty.report["counts"]["plan_emptied_by_window"] == 1

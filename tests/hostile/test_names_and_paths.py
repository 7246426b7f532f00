"""Names that become paths are validated; nothing is written outside the run folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from skilldistill.errors import ConfigError
from skilldistill.orchestration.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]
QUICK = REPO / "recipes" / "demo-quick.yaml"


@pytest.mark.parametrize("name", ["..", "../x", "/abs", "a/b", ".hidden", "a..b", "", "x" * 200, "new\nline",
                                  "trailing-newline\n"])
def test_arm_and_recipe_names_that_are_paths_are_refused(name, tmp_path):
    for key in ("arms.0.name", "name"):
        with pytest.raises(ConfigError) as e:
            load_recipe(QUICK, [f"{key}={yaml.safe_dump(name).strip()}" if name else f"{key}=''"])
        assert key.split(".")[-1] in str(e.value) and str(QUICK) in str(e.value)


def test_a_good_name_passes():
    r = load_recipe(QUICK, ["arms.0.name=random_plain.v2-1", "report.baseline=random_plain.v2-1"])
    assert r.arms[0].name == "random_plain.v2-1"


@pytest.mark.parametrize("bad", ["../../escape", "/tmp/abs", "a/b"])
def test_dataset_and_benchmark_names_that_are_paths_are_refused(bad, tmp_path):
    from skilldistill.evaluate import get_spec
    from skilldistill.format import FormatConfig

    with pytest.raises(ValueError, match="dataset_name"):
        FormatConfig(dataset_name=bad)
    with pytest.raises(ConfigError, match="benchmark name"):
        get_spec(bad, custom=True)
    with pytest.raises(ConfigError, match="benchmark name"):
        load_recipe(QUICK, [f"evaluate.benchmarks=[{bad!r}]"])


def test_an_unknown_key_in_an_arms_train_override_is_found_at_load():
    # before: found only when that arm trained, after annotate and profile had run
    with pytest.raises(ConfigError) as e:
        load_recipe(QUICK, ["arms.1.train={learning_rat: 0.1}"])
    assert "learning_rat" in str(e.value)


def test_the_demo_held_out_set_cannot_be_silently_replaced():
    with pytest.raises(ConfigError, match="demo_eval is the demo's own held-out set"):
        load_recipe(QUICK, ["evaluate.files={demo_eval: /tmp/other.jsonl}"])

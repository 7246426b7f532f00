"""Arms from another pool (an arm's ``corpus`` section): recipe checks, the pools' folders, the
check before any stage runs, and a run where one arm trains on its own attributed pool."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from skilldistill.errors import ConfigError
from skilldistill.orchestration.arm_corpora import arm_corpora, corpus_of_arm
from skilldistill.orchestration.pipeline import Pipeline
from skilldistill.orchestration.recipe import load_recipe
from test_pipeline import TINY

REPO = Path(__file__).resolve().parents[1]
QUICK = REPO / "recipes" / "demo-quick.yaml"
FIELDS = {"question_field": "question", "response_field": "response", "answer_field": "answer"}


def other_pool(path: Path, n: int = 14, seed: int = 5) -> Path:
    """A teacher corpus other than the demo's pool: demo problems of another seed, as JSON lines."""
    from skilldistill.demo.generator import generate_corpus

    rows = generate_corpus(n, seed=seed, as_table=False)
    path.write_text("".join(json.dumps({k: r[k] for k in ("id", "question", "response", "answer")}) + "\n"
                            for r in rows), encoding="utf-8")
    return path


def with_arm(arm: dict, *extra: str) -> list[str]:
    return [*TINY, f"arms.+={json.dumps(arm)}", *extra]


def test_a_preset_name_is_a_corpus_whose_source_is_the_presets_dataset():
    r = load_recipe(QUICK, with_arm({"name": "limo", "corpus": "limo", "select": {"strategy": "all"}}))
    cfg = r.arm_corpus(r.arm("limo"))
    assert (cfg.source, cfg.preset) == ("GAIR/LIMO", "limo")
    r = load_recipe(QUICK, with_arm({"name": "s1k", "corpus": {"preset": "s1k", "limit": 5}}))
    assert (r.arm_corpus(r.arm("s1k")).source, r.arm_corpus(r.arm("s1k")).limit) == ("simplescaling/s1K-1.1", 5)
    assert r.arm_corpus(r.arm("random-plain")) is None


@pytest.mark.parametrize(("arm", "message"), [
    ({"name": "x", "corpus": "nosuch"}, "arms.2.corpus: Value error, unknown preset 'nosuch'"),
    ({"name": "x", "corpus": {"source": "a.jsonl", "limit": 0}}, "arms.2.corpus.limit"),
    ({"name": "x", "corpus": "limo", "rounds": 2}, "arms.2 (x).rounds: an arm with its own corpus runs one round"),
    ({"name": "x", "corpus": "limo", "select": {"correct_portion": 0.5}},
     "arms.2 (x).select.correct_portion: needs the student's answer on every item"),
])
def test_bad_arm_corpora_fail_the_recipe_naming_the_arm_and_field(arm, message):
    with pytest.raises(ConfigError) as e:
        load_recipe(QUICK, with_arm(arm))
    assert message in str(e.value)


def test_an_arm_pool_is_decontaminated_as_the_recipes_unless_it_says_otherwise(tmp_path):
    recipe = REPO / "recipes" / "qwen3-4b-openmathreasoning.yaml"
    r = load_recipe(recipe, [f"arms.+={json.dumps({'name': 'limo', 'corpus': 'limo'})}"])
    main = r.corpus
    assert main.exclude and r.arm_corpus(r.arm("limo")).exclude == main.exclude
    assert r.arm_corpus(r.arm("limo")).decontamination == main.decontamination
    own = {"name": "mine", "corpus": {"preset": "limo", "exclude": ["aime24"]}}
    r = load_recipe(recipe, [f"arms.+={json.dumps(own)}"])
    assert r.arm_corpus(r.arm("mine")).exclude == ["aime24"]


def test_arms_naming_the_same_pool_share_its_folder_and_different_pools_get_distinct_ones(tmp_path):
    a, b = str(tmp_path / "pool.jsonl"), str(tmp_path / "other" / "pool.jsonl")
    r = load_recipe(QUICK, [*TINY,
                            f"arms.+={json.dumps({'name': 'p1', 'corpus': {'source': a, **FIELDS}})}",
                            f"arms.+={json.dumps({'name': 'p2', 'corpus': {'source': a, **FIELDS}})}",
                            f"arms.+={json.dumps({'name': 'p3', 'corpus': {'source': b, **FIELDS}})}",
                            f"arms.+={json.dumps({'name': 'l', 'corpus': 'limo'})}"])
    corpora = arm_corpora(r)
    assert [c.arms for c in corpora] == [("p1", "p2"), ("p3",), ("l",)]
    names = [c.name for c in corpora]
    assert names[2] == "limo" and len(set(names)) == 3
    assert names[0].startswith("pool-") and names[1].startswith("pool-")  # the same stem twice: hashes added
    assert corpus_of_arm(r, r.arm("p2")).name == names[0] and corpus_of_arm(r, r.arm("random-plain")) is None


@pytest.mark.parametrize("source", ["missing.jsonl", "no-such-org/no-such-dataset"])
def test_an_arm_whose_corpus_cannot_load_fails_the_run_before_any_stage(tmp_path, source):
    corpus = {"source": str(tmp_path / source) if source.endswith(".jsonl") else source, **FIELDS}
    r = load_recipe(QUICK, with_arm({"name": "other", "corpus": corpus}))
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError) as e:
        Pipeline(r, run_dir=run_dir, show_progress=False).run()
    assert str(e.value).startswith(f"arms.2 (other).corpus.source: cannot load {corpus['source']!r}")
    assert not run_dir.exists()  # nothing ran, nothing was written


def test_a_file_without_the_named_columns_fails_before_any_stage(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "1+1?", "solution": "2"}\n', encoding="utf-8")
    r = load_recipe(QUICK, with_arm({"name": "other", "corpus": {"source": str(bad), **FIELDS}}))
    with pytest.raises(ConfigError) as e:
        Pipeline(r, run_dir=tmp_path / "run", show_progress=False).run()
    assert "arms.2 (other).corpus.source" in str(e.value) and "question" in str(e.value)


def test_plan_lists_the_pools_stages_before_profiling(tmp_path):
    src = other_pool(tmp_path / "other.jsonl")
    r = load_recipe(QUICK, with_arm({"name": "other-all", "corpus": {"source": str(src), **FIELDS},
                                     "select": {"strategy": "all"}}))
    keys = [st["key"] for st in Pipeline(r, run_dir=tmp_path / "run", show_progress=False).plan()]
    assert keys.index("annotate") < keys.index("pools/other/corpus") < keys.index("pools/other/annotate") \
        < keys.index("profile")


@pytest.mark.slow
def test_an_arm_trains_on_its_own_attributed_pool_and_the_report_places_its_budget(tmp_path):
    src = other_pool(tmp_path / "other.jsonl")
    arm = {"name": "other-all", "corpus": {"source": str(src), **FIELDS}, "select": {"strategy": "all"},
           "format": {"style": "skill-aware"}}
    r = load_recipe(QUICK, with_arm(arm, "arms.1.select.strategy=random"))  # jobs: 2, arm runs in workers
    run_dir = tmp_path / "run"
    first = Pipeline(r, run_dir=run_dir, show_progress=False)
    first.run()
    assert {"pools/other/corpus", "pools/other/annotate", "select/other-all/seed0", "train/other-all/seed0",
            "evaluate/other-all/seed0"} <= set(first.ran)
    pool = pq.read_table(run_dir / "pools" / "other" / "annotate" / "skills.parquet")
    selection = pq.read_table(run_dir / "select" / "other-all" / "seed0" / "selection.parquet")
    # the whole other pool, never an item of the recipe's own
    assert sorted(selection.column("id").to_pylist()) == sorted(pool.column("id").to_pylist())
    main_ids = set(pq.read_table(run_dir / "corpus" / "corpus.parquet").column("id").to_pylist())
    assert set(selection.column("id").to_pylist()) - main_ids
    # skill-aware targets from the pool's own attribution
    examples = [json.loads(line) for line in
                (run_dir / "format" / "other-all" / "seed0" / "train.jsonl").read_text().splitlines()]
    assert len(examples) == pool.num_rows and all("Skills:" in e["messages"][-1]["content"] for e in examples)
    summary = json.loads((run_dir / "report" / "summary.json").read_text())
    assert "other-all" in summary["benchmarks"]["arms"]
    # where its budget went, per leaf, read from its selection's attribution like any arm's
    shares = summary["selection"]["other-all"]
    assert shares and sum(shares.values()) >= 1.0 and all(leaf.count("->") >= 1 for leaf in shares)
    times = [t["stage"] for t in summary["stage_times"]]
    assert times.index("annotate") < times.index("pools/other/annotate") < times.index("profile")
    assert not summary.get("incomplete")
    again = Pipeline(r, run_dir=run_dir, show_progress=False)
    again.run()
    assert again.ran == []


@pytest.mark.parametrize("name", ["qwen3-4b-openmathreasoning.yaml", "qwen3-8b-openmathreasoning.yaml"])
def test_the_paper_recipes_commented_pool_rows_are_valid_arms_once_uncommented(tmp_path, name):
    text = (REPO / "recipes" / name).read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("  # - name:") or line.startswith("  #   ")]
    assert len(rows) == 8
    uncommented = text
    for line in rows:
        uncommented = uncommented.replace(line + "\n", line.replace("  # ", "  ", 1) + "\n", 1)
    path = tmp_path / name
    path.write_text(uncommented, encoding="utf-8")
    (tmp_path / "accelerate").symlink_to(REPO / "recipes" / "accelerate")
    r = load_recipe(path)
    assert {c.name: (c.config.source, c.arms) for c in arm_corpora(r)} == {
        "limo": ("GAIR/LIMO", ("limo",)), "s1k": ("simplescaling/s1K-1.1", ("s1k",))}
    assert all(c.config.exclude == r.corpus.exclude for c in arm_corpora(r))  # decontaminated alike
    assert [st["key"] for st in Pipeline(r, run_dir=tmp_path / "run", show_progress=False).plan()
            if st["key"].startswith("pools/")] == [
        "pools/limo/corpus", "pools/limo/annotate", "pools/s1k/corpus", "pools/s1k/annotate"]


def test_a_profile_rolled_up_by_another_attribution_keeps_every_grade_and_moves_only_the_chains(tmp_path):
    import pyarrow as pa

    from skilldistill.profile.reattribute import reattribute_profile
    from skilldistill.profile.stage import PROFILE_SCHEMA
    from skilldistill.tree import SkillTree

    tree = SkillTree.resolve("demo")
    a, b = (list(c) for c in tree.leaves()[:2])
    profile = tmp_path / "profile"
    profile.mkdir()
    rows = [{"id": "x", "n_samples": 4, "n_correct": 4, "accuracy": 1.0, "solved": True, "n_truncated": 0,
             "n_grading_errors": 0, "skills": [a]},
            {"id": "y", "n_samples": 4, "n_correct": 0, "accuracy": 0.0, "solved": False, "n_truncated": 0,
             "n_grading_errors": 0, "skills": [a]},
            {"id": "z", "n_samples": 4, "n_correct": 1, "accuracy": 0.25, "solved": False, "n_truncated": 0,
             "n_grading_errors": 0, "skills": [b]}]
    pq.write_table(pa.Table.from_pylist(rows, schema=PROFILE_SCHEMA), profile / "profile.parquet")
    (profile / "skill_profile.json").write_text(json.dumps({"prior_strength": 4.0, "counts": {"samples": 12},
                                                             "model": "m"}))
    skills = tmp_path / "skills.parquet"  # y moves to leaf b; z is not attributed at all
    pq.write_table(pa.table({"id": ["x", "y"], "skills": [[a], [b]]}), skills)
    counts = reattribute_profile(profile, skills, tmp_path / "out", tree)
    doc = json.loads((tmp_path / "out" / "skill_profile.json").read_text())
    nodes = {tuple(n["path"]): n for n in doc["nodes"]} if "path" in doc["nodes"][0] else None
    by_leaf = nodes or {tuple(n["chain"].split("->")): n for n in doc["nodes"]}
    assert (by_leaf[tuple(a)]["graded"], by_leaf[tuple(a)]["correct"]) == (4, 4)  # x alone
    assert (by_leaf[tuple(b)]["graded"], by_leaf[tuple(b)]["correct"]) == (4, 0)  # y, no longer z
    assert counts["items_not_attributed"] == 1 and counts["items_without_skills"] == 1 and counts["samples"] == 12
    out_rows = pq.read_table(tmp_path / "out" / "profile.parquet").to_pylist()
    assert [(r["id"], r["n_correct"], r["skills"]) for r in out_rows] == [("x", 4, [a]), ("y", 0, [b]), ("z", 1, [])]
    assert doc["grades_from"] == str(profile) and (tmp_path / "out" / "manifest.json").exists()


def test_an_arm_annotate_override_is_checked_and_named_at_load():
    with pytest.raises(ConfigError) as e:
        load_recipe(QUICK, with_arm({"name": "x", "annotate": {"backend": "nosuch"}}))
    assert "arms.2 (x).annotate.backend" in str(e.value)
    with pytest.raises(ConfigError) as e:  # a whole-section check: named without a key
        load_recipe(QUICK, with_arm({"name": "x", "annotate": {"backend": "labels"}}))
    assert "arms.2 (x).annotate: Value error, backend 'labels' needs labels.label_field" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_recipe(QUICK, with_arm({"name": "x", "annotate": {"backend": "labels", "labels": {"label_field": "t"}},
                                     "rounds": 2}))
    assert "arms.2 (x).rounds: an arm with its own annotate section runs one round" in str(e.value)
    r = load_recipe(QUICK, with_arm({"name": "x", "annotate": {"backend": "labels", "labels": {"label_field": "t"}},
                                     "select": {"correct_portion": 0.5}}))  # the recipe's pool: its items are profiled
    (pool,) = arm_corpora(r)
    assert (pool.name, pool.config, pool.profile_key) == ("labels", None, "pools/labels/profile")


@pytest.mark.slow
def test_an_arm_selects_from_the_recipes_pool_attributed_by_its_true_skills(tmp_path):
    arm = {"name": "skill-true", "annotate": {"backend": "labels", "labels": {"label_field": "true_skills"}},
           "select": {"strategy": "skill"}, "format": {"style": "plain"}}
    r = load_recipe(QUICK, with_arm(arm, "jobs=1"))
    run_dir = tmp_path / "run"
    first = Pipeline(r, run_dir=run_dir, show_progress=False)
    first.run()
    assert {"pools/labels/annotate", "pools/labels/profile", "select/skill-true/seed0"} <= set(first.ran)
    assert "pools/labels/corpus" not in first.ran  # the recipe's corpus, read where it is
    accuracy = json.loads((run_dir / "pools" / "labels" / "annotate" / "attribution_accuracy.json").read_text())
    assert accuracy["leaf_precision"] == accuracy["leaf_recall"] == 1.0
    main = json.loads((run_dir / "profile" / "skill_profile.json").read_text())
    rolled = json.loads((run_dir / "pools" / "labels" / "profile" / "skill_profile.json").read_text())
    assert rolled["counts"]["samples"] == main["counts"]["samples"]  # the same answers, no second pass
    assert rolled["overall"]["correct"] == main["overall"]["correct"]
    def inputs(arm):
        return json.loads((run_dir / "select" / arm / "seed0" / "manifest.json").read_text())["inputs"]

    # selected by the rolled-up profile, from the pool as the true skills place its items
    from skilldistill.artifacts import sha256_file

    assert inputs("skill-true")["profile"] == sha256_file(run_dir / "pools" / "labels" / "profile" / "skill_profile.json")
    assert inputs("skill-true")["profile"] != inputs("skill-skillaware")["profile"]
    selection = pq.read_table(run_dir / "select" / "skill-true" / "seed0" / "selection.parquet").to_pylist()
    assert all(row["skills"] == row["true_skills"] for row in selection)


def test_plan_counts_each_pools_attribution_and_its_arms_items(tmp_path):
    from skilldistill.orchestration.plan import plan_recipe
    from skilldistill.tree import SkillTree

    limo = {"name": "limo", "corpus": "limo", "select": {"strategy": "all"}, "format": {"style": "plain"}}
    s1k = {"name": "s1k", "corpus": {"preset": "s1k", "limit": 300}, "select": {"strategy": "all"}}
    recipe = load_recipe(REPO / "recipes" / "qwen3-4b-openmathreasoning.yaml",
                         [f"arms.+={json.dumps(limo)}", f"arms.+={json.dumps(s1k)}"])
    plan = plan_recipe(recipe, run_dir=tmp_path / "run", sample=False,
                       settings=recipe.plan.model_copy(update={"generation_tokens_per_s": 2500.0,
                                                               "training_tokens_per_s": 3000.0}))
    by = {s.key: s for s in plan.stages}
    leaves = SkillTree.resolve("math").leaves()
    per_item = sum(len(c) for c in leaves) / len(leaves)
    assert by["pools/limo/annotate"].items == 817 and by["pools/limo/annotate"].llm_calls == pytest.approx(817 * per_item)
    assert by["pools/s1k/annotate"].items == 300  # its limit, under the published 1,000
    assert by["annotate"].items == 100_000  # the recipe's pool is counted as before
    assert (by["select/limo/seed0"].items, by["train/limo/seed0"].items) == (817, 817)  # all: the whole other pool
    assert by["train/s1k/seed0"].items == 300 and by["train/full-pool/seed0"].items == 100_000
    assert by["pools/limo/annotate"].gpu_hours > 0 and by["pools/limo/corpus"].items == 817
    assert any("'limo' (GAIR/LIMO): 817 items, the published dataset's rows" in a for a in plan.assumptions)


def test_plan_counts_no_generation_for_an_attribution_of_the_recipes_pool(tmp_path):
    from skilldistill.orchestration.plan import plan_recipe

    arm = {"name": "skill-true", "annotate": {"backend": "labels", "labels": {"label_field": "true_skills"}},
           "select": {"strategy": "skill"}}
    recipe = load_recipe(QUICK, with_arm(arm))
    by = {s.key: s for s in plan_recipe(recipe, run_dir=tmp_path / "run", sample=False).stages}
    assert by["pools/labels/annotate"].llm_calls == 0 and by["pools/labels/annotate"].items == 60
    rolled = by["pools/labels/profile"]
    assert rolled.generated_tokens is None and "no generation" in " ".join(rolled.notes)
    assert by["profile"].generated_tokens > 0

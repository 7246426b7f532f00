"""``skilldistill run RECIPE.yaml``: every stage, in order, into one run folder.

    skilldistill run recipes/demo.yaml
    skilldistill run recipes/qwen3-4b-openmathreasoning.yaml --set select.budget=500 --from select

Stage order: corpus -> demo (held-out set, base student) -> annotate -> the arms' own
pools (pools/<name>/corpus, pools/<name>/annotate) -> profile (and pools/<name>/profile) ->
select/<arm>/seed<k> -> format/... -> train/... -> evaluate/base, evaluate/<arm>/seed<k>
-> report. A stage is skipped when it finished before with the same *fingerprint* (a
hash of its config and of the fingerprints of the stages it reads), recorded in
``pipeline_state.json``; change a setting and that stage and everything downstream of
it rerun, nothing else. A stage that crashed resumes from its own logs (annotation
cache, generation log, training checkpoints), or starts clean again when the attempt that
crashed was a clean restart (the state file records each attempt). ``--from STAGE``
forces a rerun from that stage on.

The run-wide stages run here; each arm run (:mod:`~skilldistill.orchestration.arm_runs`)
runs here too, or in an arm worker process when the recipe's ``jobs`` is above 1
(:mod:`~skilldistill.orchestration.arm_pool`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from ..artifacts import FolderLock, hash_obj, read_json, write_text
from ..demo.attribution_config import SEED_LABELS_KEY
from ..llm.base import fingerprint_view
from ..stages import STAGES
from ..tree import SkillTree
from . import arm_pool
from .arm_corpora import (
    ArmCorpus,
    arm_corpora,
    check_corpora_load,
    reads_seed_labels,
    uses_seed_labels,
)
from .arm_runs import evaluate_base, run_arm
from .launch_config import check_launch
from .recipe import DEMO_ATTRIBUTION_FIELDS, ArmConfig, Recipe
from .stage_calls import (
    ATTRIBUTION_SOURCES_JSON,
    annotate_stage,
    corpus_stage,
    demo_stage,
    pool_corpus_stage,
    profile_stage,
    reattributed_profile_stage,
    report_stage,
    seed_labels_stage,
)
from .stage_runner import StageRunner, UpstreamFingerprints, model_json
from .summary_tables import print_run_summary

ArmRun = tuple[ArmConfig, int]  # an arm and a seed


class Pipeline(StageRunner):
    """Runs a recipe's stages, skipping finished ones (see the module docstring)."""

    def plan(self) -> list[dict[str, Any]]:
        """Every stage a run would go through, in order, with its status (done / to run /
        stale and why) and config; nothing runs, nothing is written (``skilldistill plan``)."""
        self.dry_run = True
        self.planned = []
        self._run_stages()
        return self.planned

    def run(self) -> dict[str, Any]:
        """Every stage in order, holding the run folder (a second run on it is refused).
        The launcher is checked first, before the run folder is touched."""
        self._check_launcher()
        self._check_arm_corpora()
        with FolderLock(self.run_dir, what=f"skilldistill run {self.recipe.name}"):
            return self._run_stages()

    def _check_launcher(self) -> None:
        """A recipe that trains under ``accelerate launch`` has its launcher checked when a
        train stage is still to run (a finished run folder opens on any machine)."""
        r = self.recipe
        if r.launcher.accelerate_config is None:
            return
        planner = Pipeline(r, run_dir=self.run_dir, force_from=self.force_from, show_progress=False)
        to_train = [st for st in planner.plan() if st["kind"] == "train" and st["status"] != "done"]
        if to_train:
            arm_runs = len(r.arms) * len(r.seeds)
            check_launch(r.launcher.accelerate_config, r.launcher.extra_args, concurrent=min(r.jobs, arm_runs))

    def _check_arm_corpora(self) -> None:
        """The arms' own pools still to ingest are opened before any stage runs (one line naming the
        arm when one cannot load); ingested ones are not read again."""
        corpora = arm_corpora(self.recipe)
        if not corpora:
            return
        planner = Pipeline(self.recipe, run_dir=self.run_dir, force_from=self.force_from, show_progress=False)
        pending = {st["key"] for st in planner.plan() if st["status"] != "done"}
        check_corpora_load(self.recipe, [c for c in corpora if c.corpus_key in pending])

    def _run_stages(self) -> dict[str, Any]:
        """The stages in order, then the report (a dry run only records what each would do)."""
        r = self.recipe
        if r.threads:
            import torch

            torch.set_num_threads(r.threads)
        if not self.dry_run:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_text(self.path("recipe.yaml"), yaml.safe_dump(r.model_dump(mode="json"), sort_keys=False, allow_unicode=True))
        tree = SkillTree.resolve(r.tree, on_duplicate=r.on_duplicate)
        runs = [(arm, seed) for arm in r.arms for seed in r.seeds]
        # Workers start first: their imports overlap the stages below, and the base model's
        # evaluation, which needs only the base student, runs in one beside annotate/profile.
        pool = self._start_workers(runs)
        try:
            eval_cfg = self.evaluate_config()
            upstream = self._run_wide_stages(tree, eval_cfg, pool)
            self._run_arms(runs, upstream, eval_cfg, pool)
        finally:
            if pool is not None:
                pool.close()
        if self.dry_run:
            return {}
        # The report reads every artifact above and takes a second: always rebuilt.
        t0 = time.time()
        report_stage(self)
        self.timings["report"] = round(time.time() - t0, 2)
        self.console.print(f"[green]✓ report[/green] [dim]{self.timings['report']:.1f}s[/dim]")
        return self.summary()

    def _start_workers(self, runs: list[ArmRun]) -> arm_pool.ArmPool | None:
        """The arm workers of a parallel run (None: the arm runs go in this process)."""
        r = self.recipe
        todo = self._arm_runs_to_do(runs) if r.jobs > 1 and len(runs) > 1 and not self.dry_run else []
        if len(todo) <= 1:
            return None
        jobs = min(r.jobs, len(todo))
        self.console.print(f"[dim]{len(todo)} arm runs to do, {jobs} at a time in worker processes[/dim]")
        return arm_pool.ArmPool(jobs, threads=r.threads or _cores_per_job(jobs))

    def _run_wide_stages(self, tree: SkillTree, eval_cfg: Any, pool: arm_pool.ArmPool | None) -> UpstreamFingerprints:
        """corpus -> demo -> annotate (and the arms' own pools) -> profile, and the base student's evaluation."""
        r = self.recipe
        fp_corpus, fp_demo, fp_seed_labels = self._pool_and_demo_stages()
        fp_student = fp_demo or hash_obj(fingerprint_view(r.student.model_dump(mode="json")))
        base = UpstreamFingerprints(student=fp_student, demo=fp_demo)
        if r.evaluate.base and pool is not None:
            pool.submit("evaluate/base", "base", self._task(base))
        fp_annot = self.step("annotate", "annotate", r.annotate.public_dict(),
                             [fp_corpus, hash_obj(tree.to_dict())] + ([fp_seed_labels] if reads_seed_labels(r.annotate) else []),
                             lambda clean: annotate_stage(self, tree, clean))
        corpora = arm_corpora(r)
        pool_annotations = {c.name: self._pool_attribution(c, tree, fp_corpus, fp_seed_labels) for c in corpora}
        profile_cfg = self.profile_config()
        fp_profile = self.step("profile", "profile", profile_cfg.fingerprint_dict(), [fp_annot, fp_student],
                               lambda clean: profile_stage(self, "profile", profile_cfg, tree, clean))
        pools = {c.name: self._pool_profile(c, tree, pool_annotations[c.name], fp_profile) for c in corpora}
        if r.evaluate.base and pool is None:  # serially: after profile, where `skilldistill plan` lists it
            evaluate_base(self, base, eval_cfg)
        return UpstreamFingerprints(student=fp_student, demo=fp_demo, annotate=fp_annot, profile=fp_profile,
                                    pools=pools)

    def _pool_and_demo_stages(self) -> tuple[str, str | None, str]:
        """corpus -> demo (and its seed labels when an attribution learns from them); their fingerprints
        (None, "": no demo, no seed labels)."""
        r = self.recipe
        generated_pool = None  # the demo's pool settings
        if r.demo is not None:  # the pool depends on which leaves are weak when they are rarer in it
            generated_pool = (model_json(r.demo, exclude={"student", *DEMO_ATTRIBUTION_FIELDS})
                              | {"weak_leaves": list(r.demo.student.weak_leaves)})
        fp_corpus = self.step("corpus", "corpus", {"ingest": model_json(r.corpus), "demo": generated_pool}, [],
                              lambda clean: corpus_stage(self, clean))
        if r.demo is None:
            return fp_corpus, None, ""
        fp_demo = self.step("demo", "demo", model_json(r.demo, exclude=DEMO_ATTRIBUTION_FIELDS), [],
                            lambda clean: demo_stage(self, clean))
        fp_seed_labels = ""
        if uses_seed_labels(r):
            fp_seed_labels = self.step(SEED_LABELS_KEY, "demo", {"share": r.demo.seed_label_share, "seed": r.demo.seed},
                                       [fp_corpus], lambda clean: seed_labels_stage(self))
        return fp_corpus, fp_demo, fp_seed_labels

    def _pool_attribution(self, corpus: ArmCorpus, tree: SkillTree, fp_corpus: str, fp_seed_labels: str) -> str:
        """An arm's pool ingested (its own corpus) and attributed as the recipe's is; the annotate stage's
        fingerprint (on the demo's seed labels too when it learns from them)."""
        if corpus.config is not None:
            fp_corpus = self.step(corpus.corpus_key, "corpus", {"ingest": model_json(corpus.config)}, [],
                                  lambda clean: pool_corpus_stage(self, corpus.corpus_key, corpus.config))
        return self.step(corpus.annotate_key, "annotate", corpus.annotate.public_dict(),
                         [fp_corpus, hash_obj(tree.to_dict())] + ([fp_seed_labels] if reads_seed_labels(corpus.annotate) else []),
                         lambda clean: annotate_stage(self, tree, clean, corpus=corpus.corpus_path(self.run_dir),
                                                      out_key=corpus.annotate_key, config=corpus.annotate))

    def _pool_profile(self, corpus: ArmCorpus, tree: SkillTree, fp_annotate: str, fp_profile: str) -> str:
        """What an arm of the pool selects with: on the recipe's corpus, the recipe's profile rolled up by the
        pool's chains (that stage's fingerprint); on its own corpus, its attribution (the recipe's profile
        is read as it is)."""
        key = corpus.profile_key
        if key is None:
            return fp_annotate
        return self.step(key, "profile", {"grades_from": "profile"}, [fp_annotate, fp_profile, hash_obj(tree.to_dict())],
                         lambda clean: reattributed_profile_stage(self, key, corpus.skills_path(self.run_dir), tree))

    def _run_arms(self, runs: list[ArmRun], upstream: UpstreamFingerprints, eval_cfg: Any,
                  pool: arm_pool.ArmPool | None) -> None:
        """Every arm run: in this process, or handed to the workers and waited for."""
        if pool is None:
            for arm, seed in runs:
                run_arm(self, arm, seed, upstream, eval_cfg)
            return
        # Longest first (multi-round arms re-profile and train several times), so no
        # worker is left alone with a long run at the end; the order changes no result.
        for arm, seed in sorted(runs, key=lambda run: -self.recipe.arm_rounds(run[0])):
            pool.submit(f"arm run {arm.name}/seed{seed}", "arm", self._task(upstream, arm=arm.name, seed=seed))
        ran, timings = pool.wait()
        self.ran += ran
        self.timings.update(timings)
        self.state = read_json(self.state_path) if self.state_path.exists() else self.state

    def _arm_runs_to_do(self, runs: list[ArmRun]) -> list[ArmRun]:
        """The arm runs with a stage to run, from a dry run (a rerun of a finished run folder
        then starts no worker processes: their start-up alone is about 10 s)."""
        if not self.state["stages"]:
            return runs
        probe = Pipeline(self.recipe, run_dir=self.run_dir, force_from=self.force_from, console=self.console,
                         show_progress=False, dry_run=True)
        pending = ["/" + s["key"] + "/" for s in probe.plan() if s["status"] != "done"]
        return [(arm, seed) for arm, seed in runs if any(f"/{arm.name}/seed{seed}/" in k for k in pending)]

    def _task(self, upstream: UpstreamFingerprints, *, arm: str | None = None,
              seed: int | None = None) -> arm_pool.WorkerTask:
        return arm_pool.WorkerTask(recipe=self.recipe, run_dir=str(self.run_dir), force_from=self.force_from,
                          show_progress=self.show_progress, upstream=upstream, arm=arm, seed=seed)

    # -- summary --------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """The report's ``summary.json`` ({} before a report exists)."""
        path = self.path("report", "summary.json")
        return read_json(path) if path.exists() else {}

    def print_summary(self) -> None:
        sources = self.path("report", ATTRIBUTION_SOURCES_JSON)
        rows = read_json(sources)["rows"] if sources.exists() else None
        print_run_summary(self.console, self.recipe, self.summary(), rows)


def _cores_per_job(jobs: int) -> int:
    """Torch threads of an arm worker when the recipe sets none: the cores shared out."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // jobs)


def run_recipe(recipe: Recipe, *, run_dir: str | Path | None = None, force_from: str | None = None,
               console: Console | None = None, show_progress: bool = True) -> Pipeline:
    """Run every stage of ``recipe`` (see :class:`Pipeline`); returns the pipeline (its ``ran``, ``timings``)."""
    pipe = Pipeline(recipe, run_dir=run_dir, force_from=force_from, console=console, show_progress=show_progress)
    pipe.run()
    return pipe


__all__ = ["STAGES", "Pipeline", "run_recipe"]

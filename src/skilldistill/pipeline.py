"""``skilldistill run RECIPE.yaml``: every stage, in order, into one run folder.

    skilldistill run recipes/demo.yaml
    skilldistill run recipes/qwen3-4b-openmathreasoning.yaml --set select.budget=500 --from select

Stage order: corpus -> demo (held-out set, base student) -> annotate -> profile ->
select/<arm>/seed<k> -> format/... -> train/... -> evaluate/base, evaluate/<arm>/seed<k>
-> report. A stage is skipped when it finished before with the same *fingerprint* (a
hash of its config and of the fingerprints of the stages it reads), recorded in
``pipeline_state.json``; change a setting and that stage and everything downstream of
it rerun, nothing else. A stage that crashed resumes from its own logs (annotation
cache, generation log, training checkpoints), or starts clean again when the attempt that
crashed was a clean restart (the state file records each attempt). ``--from STAGE``
forces a rerun from that stage on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml
from rich.console import Console
from rich.table import Table

from .artifacts import hash_obj, read_json, write_json, write_manifest, write_parquet, write_text
from .closed_loop import ROUNDS_DIR
from .config import DEMO_STUDENT, ArmConfig, Recipe
from .errors import ConfigError
from .llm.base import fingerprint_view
from .tree import SkillTree

log = logging.getLogger(__name__)

STAGES = ("corpus", "demo", "annotate", "profile", "select", "format", "train", "evaluate", "report")
STATE_FILE = "pipeline_state.json"
DEMO_EVAL = "demo_eval"


class Pipeline:
    """Runs a recipe's stages, skipping finished ones (see the module docstring)."""

    def __init__(self, recipe: Recipe, *, run_dir: str | Path | None = None, force_from: str | None = None,
                 console: Console | None = None, show_progress: bool = True, worker: bool = False,
                 dry_run: bool = False) -> None:
        if force_from is not None and force_from not in STAGES:
            raise ConfigError(f"--from {force_from!r}: not a stage; stages: {', '.join(STAGES)}")
        self.recipe = recipe
        self.run_dir = Path(run_dir) if run_dir else recipe.resolved_run_dir
        self.force_from = force_from
        self.console = console or Console(stderr=True)
        self.show_progress = show_progress
        self.state_path = self.run_dir / STATE_FILE
        self.state: dict[str, Any] = read_json(self.state_path) if self.state_path.exists() else {}
        self.state.setdefault("stages", {})
        self.timings: dict[str, float] = {}
        self.ran: list[str] = []
        self.worker = worker  # an arm worker of a parallel run (the parent holds the run)
        # dry_run: walk the stages and record what each would do (skilldistill plan); nothing runs or is written
        self.dry_run = dry_run
        self.planned: list[dict[str, Any]] = []

    # -- the generic stage step -----------------------------------------------------
    def step(self, key: str, kind: str, config: Any, upstream: list[str], fn: Callable[[bool], Any],
             done_marker: str = "manifest.json") -> str:
        """Run ``fn(clean)`` unless ``key`` finished with the same fingerprint; return it.

        ``clean`` is True when the stage ran before with other settings (or is forced):
        the stage then discards its own stale results instead of resuming them.
        """
        config_view = self._portable(fingerprint_view(config))
        fp = hash_obj({"kind": kind, "config": config_view, "upstream": upstream})
        prev = self.state["stages"].get(key, {})
        rank = STAGES.index(kind)
        if kind == "profile" and key.startswith(ROUNDS_DIR + "/"):
            # a later round's profile profiles the round before's trained model: it comes
            # after that training, so --from select/format/train reruns it too
            rank = STAGES.index("train")
        forced = self.force_from is not None and rank >= STAGES.index(self.force_from)
        marker = self.run_dir / key / done_marker
        if self.dry_run:
            self.planned.append({"key": key, "kind": kind, "config": config, "fingerprint": fp,
                                 **self._status(prev, fp, hash_obj(config_view), forced, marker)})
            return fp
        if not forced and prev.get("fingerprint") == fp and marker.exists():
            self.console.print(f"[dim]✓ {key}: up to date[/dim]")
            return fp
        clean = forced or self._must_clean(prev, fp)
        self.console.print(f"[bold cyan]▶ {key}[/bold cyan]" + (" [dim](settings changed: rerun)[/dim]" if clean and not forced else ""))
        # Until it finishes, the stage is not done: the state file must not vouch for files
        # it is about to rewrite. It records the attempt instead, with whether it discards
        # the old output, so a stage killed before its wipe still wipes when rerun (its logs
        # are keyed by settings that a retrained model at the same path would match).
        self._record(key, {"running": fp, "clean": clean})
        t0 = time.time()
        fn(clean)
        wall = round(time.time() - t0, 2)
        self.timings[key] = wall
        self.ran.append(key)
        self._record(key, {"fingerprint": fp, "config_hash": hash_obj(config_view), "wall_time_s": wall,
                           "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        self.console.print(f"[green]✓ {key}[/green] [dim]{wall:.1f}s[/dim]")
        return fp

    @staticmethod
    def _must_clean(prev: dict[str, Any], fp: str) -> bool:
        """Whether a stage must discard its old output: it finished, or was last started,
        with another fingerprint, or an interrupted attempt was itself a clean restart."""
        if "running" in prev:
            return bool(prev.get("clean")) or prev["running"] != fp
        return bool(prev) and prev.get("fingerprint") != fp

    @staticmethod
    def _status(prev: dict[str, Any], fp: str, config_hash: str, forced: bool, marker: Path) -> dict[str, str]:
        """What a run would do with a stage: done / to run / stale (and why)."""
        if forced:
            return {"status": "stale", "reason": "forced by --from"}
        if not prev:
            return {"status": "to run", "reason": "never finished"}
        if "running" in prev:
            how = "restarts clean" if Pipeline._must_clean(prev, fp) else "resumes"
            return {"status": "to run", "reason": f"interrupted before it finished: {how}"}
        if prev.get("fingerprint") == fp:
            if marker.exists():
                return {"status": "done", "reason": f"finished {prev.get('finished_at', '')}".strip()}
            return {"status": "stale", "reason": f"its done-marker {marker.name} is missing"}
        if prev.get("config_hash") and prev["config_hash"] != config_hash:
            return {"status": "stale", "reason": "its settings changed"}
        if prev.get("config_hash"):
            return {"status": "stale", "reason": "an input stage changed"}
        return {"status": "stale", "reason": "its settings or an input stage changed"}

    def _portable(self, obj: Any) -> Any:
        """Paths inside the run folder as ``<run>/...``: a moved or copied run folder keeps
        its fingerprints (the demo student's absolute path is in several configs)."""
        root = str(self.run_dir.resolve())
        if isinstance(obj, str):
            return "<run>" + obj[len(root):] if obj == root or obj.startswith(root + "/") else obj
        if isinstance(obj, list):
            return [self._portable(v) for v in obj]
        if isinstance(obj, dict):
            return {k: self._portable(v) for k, v in obj.items()}
        return obj

    def _record(self, key: str, entry: dict[str, Any] | None) -> None:
        """Record a finished stage in the state file (``None``: forget it). Arm workers write
        it too: under a lock, re-read, merged, rewritten atomically."""
        import fcntl

        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / f".{STATE_FILE}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                current = read_json(self.state_path) if self.state_path.exists() else {}
                stages = current.setdefault("stages", {})
                if entry is None:
                    stages.pop(key, None)
                else:
                    stages[key] = entry
                write_json(self.state_path, current)
                self.state = current
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- paths ----------------------------------------------------------------------
    def p(self, *parts: str) -> Path:
        return self.run_dir.joinpath(*parts)

    @property
    def corpus_path(self) -> Path:
        return self.p("corpus", "corpus.parquet")

    @property
    def skills_path(self) -> Path:
        return self.p("annotate", "skills.parquet")

    def student_model(self) -> str:
        if self.recipe.student.model == DEMO_STUDENT:
            return str(self.p("demo", "student").resolve())
        return self.recipe.student.model

    # -- the run --------------------------------------------------------------------
    def plan(self) -> list[dict[str, Any]]:
        """Every stage a run would go through, in order, with its status (done / to run /
        stale and why) and config; nothing runs, nothing is written (``skilldistill plan``)."""
        self.dry_run = True
        self.planned = []
        self._run()
        return self.planned

    def run(self) -> dict[str, Any]:
        """Every stage in order, holding the run folder (a second run on it is refused)."""
        from .artifacts import FolderLock

        with FolderLock(self.run_dir, what=f"skilldistill run {self.recipe.name}"):
            return self._run()

    def _run(self) -> dict[str, Any]:
        r = self.recipe
        if r.threads:
            import torch

            torch.set_num_threads(r.threads)
        if not self.dry_run:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_text(self.p("recipe.yaml"), yaml.safe_dump(r.model_dump(mode="json"), sort_keys=False, allow_unicode=True))
        tree = SkillTree.resolve(r.tree, on_duplicate=r.on_duplicate)
        tree_fp = hash_obj(tree.to_dict())

        runs = [(arm, seed) for arm in r.arms for seed in r.seeds]
        # Workers start first: their imports overlap the stages below, and the base model's
        # evaluation, which needs only the base student, runs in one beside annotate/profile.
        pool = None
        todo = self._arm_runs_to_do(runs) if r.jobs > 1 and len(runs) > 1 and not self.dry_run else []
        if len(todo) > 1:
            from .arm_worker import ArmPool

            jobs = min(r.jobs, len(todo))
            self.console.print(f"[dim]{len(todo)} arm runs to do, {jobs} at a time in worker processes[/dim]")
            pool = ArmPool(jobs, threads=r.threads or _cores_per_job(jobs))
        try:
            demo_pool = None
            if r.demo is not None:  # the pool depends on which leaves are weak when they are rarer in it
                demo_pool = _dump(r.demo, exclude={"student"}) | {"weak_leaves": list(r.demo.student.weak_leaves)}
            fp_corpus = self.step("corpus", "corpus", {"ingest": _dump(r.corpus), "demo": demo_pool}, [], self._corpus)
            fp_demo = None
            if r.demo is not None:
                fp_demo = self.step("demo", "demo", _dump(r.demo), [], self._demo)
            fp_student = fp_demo or hash_obj(fingerprint_view(r.student.model_dump(mode="json")))

            eval_cfg = self._evaluate_config()
            if r.evaluate.base and pool is not None:
                pool.submit("evaluate/base", "base", self._task(fingerprints=[fp_student, fp_demo]))
            fp_annot = self.step("annotate", "annotate", r.annotate.public_dict(), [fp_corpus, tree_fp],
                                 lambda clean: self._annotate(tree, clean))
            fp_profile = self.step("profile", "profile", self._profile_config().model_dump(mode="json"),
                                   [fp_annot, fp_student], lambda clean: self._profile(tree, clean))
            if r.evaluate.base and pool is None:  # serially: after profile, where `skilldistill plan` lists it
                self._evaluate_base(fp_student, fp_demo, eval_cfg)

            fps = [fp_annot, fp_profile, fp_student, fp_demo]
            if pool is not None:
                # Longest first (multi-round arms re-profile and train several times), so no
                # worker is left alone with a long run at the end; the order changes no result.
                for arm, seed in sorted(runs, key=lambda run: -r.arm_rounds(run[0])):
                    pool.submit(f"arm run {arm.name}/seed{seed}", "arm",
                                self._task(arm=arm.name, seed=seed, fingerprints=fps))
                ran, timings = pool.wait()
                self.ran += ran
                self.timings.update(timings)
                self.state = read_json(self.state_path) if self.state_path.exists() else self.state
            else:
                for arm, seed in runs:
                    self._arm(arm, seed, *fps, eval_cfg)
        finally:
            if pool is not None:
                pool.close()

        if self.dry_run:
            return {}
        # The report reads every artifact above and takes a second: always rebuilt.
        t0 = time.time()
        self._report()
        self.timings["report"] = round(time.time() - t0, 2)
        self.console.print(f"[green]✓ report[/green] [dim]{self.timings['report']:.1f}s[/dim]")
        return self.summary()

    def _arm_runs_to_do(self, runs: list[tuple[ArmConfig, int]]) -> list[tuple[ArmConfig, int]]:
        """The arm runs with a stage to run, from a dry run (a rerun of a finished run folder
        then starts no worker processes: their start-up alone is about 10 s)."""
        if not self.state["stages"]:
            return runs
        probe = Pipeline(self.recipe, run_dir=self.run_dir, force_from=self.force_from, console=self.console,
                         show_progress=False, dry_run=True)
        pending = ["/" + s["key"] + "/" for s in probe.plan() if s["status"] != "done"]
        return [(arm, seed) for arm, seed in runs if any(f"/{arm.name}/seed{seed}/" in k for k in pending)]

    def _task(self, **fields: Any) -> dict[str, Any]:
        """A worker task's payload (the recipe is pickled as is: a JSON dump would mask inline API keys)."""
        return {"recipe": self.recipe, "run_dir": str(self.run_dir), "force_from": self.force_from,
                "show_progress": self.show_progress, **fields}

    def _evaluate_base(self, fp_student: str, fp_demo: str | None, eval_cfg: Any) -> None:
        gen = self.recipe.generation_for_eval(self.student_model())
        self.step("evaluate/base", "evaluate", {"eval": eval_cfg.model_dump(mode="json"), "gen": _gen_dump(gen)},
                  [fp_student, fp_demo or ""], lambda clean: self._evaluate("evaluate/base", gen, eval_cfg, clean),
                  done_marker="results.json")

    def _arm(self, arm: ArmConfig, seed: int, fp_annot: str, fp_profile: str, fp_student: str,
             fp_demo: str | None, eval_cfg: Any) -> None:
        r = self.recipe
        sub = f"{arm.name}/seed{seed}"
        sel_cfg = self._arm_select_config(arm, seed)
        if r.arm_rounds(arm) > 1:
            fp_train, final = self._arm_rounds(arm, seed, sel_cfg, fp_annot, fp_profile, fp_student)
            gen = r.generation_for_eval(final)
            self.step(f"evaluate/{sub}", "evaluate", {"eval": eval_cfg.model_dump(mode="json"), "gen": _gen_dump(gen)},
                      [fp_train, fp_demo or ""], lambda clean: self._evaluate(f"evaluate/{sub}", gen, eval_cfg, clean),
                      done_marker="results.json")
            return
        fp_sel = self.step(f"select/{sub}", "select", sel_cfg.model_dump(mode="json"), [fp_annot, fp_profile],
                           lambda clean: self._select(sub, sel_cfg, clean))
        fmt_cfg = r.arm_format(arm)
        if fmt_cfg.tokenizer is None:
            fmt_cfg = fmt_cfg.model_copy(update={"tokenizer": self.student_model()})
        fp_fmt = self.step(f"format/{sub}", "format", fmt_cfg.model_dump(mode="json"), [fp_sel, fp_student],
                           lambda clean: self._format(sub, fmt_cfg, clean))
        train_cfg = r.arm_train(arm, seed, self.student_model())
        fp_train = self.step(f"train/{sub}", "train", train_cfg.fingerprint_dict(), [fp_fmt, fp_student],
                             lambda clean: self._train(sub, train_cfg, clean))
        final = str(self.p("train", sub, "final").resolve())
        gen = r.generation_for_eval(final)
        self.step(f"evaluate/{sub}", "evaluate", {"eval": eval_cfg.model_dump(mode="json"), "gen": _gen_dump(gen)},
                  [fp_train, fp_demo or ""], lambda clean: self._evaluate(f"evaluate/{sub}", gen, eval_cfg, clean),
                  done_marker="results.json")

    def _arm_select_config(self, arm: ArmConfig, seed: int) -> Any:
        r = self.recipe
        sel_cfg = r.arm_select(arm, seed)
        if sel_cfg.max_tokens is not None:
            # Lengths are measured in the arm's own format (a skill plan adds tokens) with the
            # student's tokenizer, so the items kept are the ones that arm trains on in full.
            update: dict[str, Any] = {"example": r.arm_format(arm).example_format()}
            if sel_cfg.tokenizer is None:
                update["tokenizer"] = self.student_model()
            sel_cfg = sel_cfg.model_copy(update=update)
        return sel_cfg

    def _arm_rounds(self, arm: ArmConfig, seed: int, sel_cfg: Any, fp_annot: str, fp_profile: str,
                    fp_student: str) -> tuple[str, str]:
        """The closed loop (skilldistill.closed_loop): ``rounds`` x (profile -> select ->
        format -> train), each step a stage of its own. Returns the last training stage's
        fingerprint and the final model's path."""
        from .closed_loop import round_dir

        r = self.recipe
        rounds = r.arm_rounds(arm)
        loop = r.arm_loop(arm)
        budgets = loop.round_budgets(sel_cfg.budget, rounds)
        fmt_base = r.arm_format(arm)
        if fmt_base.tokenizer is None:
            fmt_base = fmt_base.model_copy(update={"tokenizer": self.student_model()})
        model, fp_model = self.student_model(), fp_student
        profile_json, item_profile, fp_prof = self.p("profile", "skill_profile.json"), self.p("profile", "profile.parquet"), fp_profile
        earlier: list[Path] = []
        fp_earlier: list[str] = []
        for k in range(1, rounds + 1):
            rd = round_dir(arm.name, seed, k)
            if k > 1:
                prof_cfg = self._round_profile_config(model, loop, earlier)
                fp_prof = self.step(f"{rd}/profile", "profile", prof_cfg.model_dump(mode="json"),
                                    [fp_annot, fp_model, *fp_earlier],
                                    lambda clean, rd=rd, cfg=prof_cfg: self._round_profile(rd, cfg, clean))
                profile_json, item_profile = self.p(rd, "profile", "skill_profile.json"), self.p(rd, "profile", "profile.parquet")
            cfg = sel_cfg.model_copy(update={"budget": budgets[k - 1],
                                             "exclude_selections": [*sel_cfg.exclude_selections, *map(str, earlier)]})
            fp_sel = self.step(f"{rd}/select", "select", cfg.model_dump(mode="json"), [fp_annot, fp_prof, *fp_earlier],
                               lambda clean, rd=rd, cfg=cfg, pj=profile_json, ip=item_profile:
                               self._round_select(rd, cfg, pj, ip, clean))
            selection = self.p(rd, "select", "selection.parquet")
            slices = [*earlier, selection] if loop.replay else [selection]
            fp_fmt = self.step(f"{rd}/format", "format", {"format": fmt_base.model_dump(mode="json"), "slices": len(slices)},
                               [*fp_earlier, fp_sel, fp_student],
                               lambda clean, rd=rd, sl=slices: self._round_format(rd, fmt_base, sl, clean))
            train_cfg = r.arm_train(arm, seed, model)
            fp_model = self.step(f"{rd}/train", "train", train_cfg.fingerprint_dict(), [fp_fmt, fp_model],
                                 lambda clean, rd=rd, cfg=train_cfg: self._round_train(rd, cfg, clean))
            model = str(self.p(rd, "train", "final").resolve())
            earlier.append(selection)
            fp_earlier.append(fp_sel)
        return fp_model, model

    def _round_profile_config(self, model: str, loop: Any, earlier: list[Path]) -> Any:
        cfg = self._profile_config()
        gen = cfg.generation
        backend = gen.backend.model_copy(update={"model": model})
        return cfg.model_copy(update={"generation": gen.model_copy(update={"backend": backend}),
                                      "sample": loop.profile_sample, "sample_seed": loop.profile_sample_seed,
                                      "exclude_selections": [str(p) for p in earlier]})

    def _round_train(self, rd: str, cfg: Any, clean: bool) -> None:
        from .evaluate import evaluable_model

        # an unmerged LoRA final/ of the round before (merge_lora: false) is merged once first
        self._train_into(f"{rd}/format", f"{rd}/train", cfg.model_copy(update={"model": evaluable_model(cfg.model)}),
                         clean, label=rd)

    def _round_profile(self, rd: str, cfg: Any, clean: bool) -> None:
        from .evaluate import evaluable_model
        from .profile import run_profile

        gen = cfg.generation  # the model of the round before, merged once if it is a LoRA adapter
        cfg = cfg.model_copy(update={"generation": gen.model_copy(update={
            "backend": gen.backend.model_copy(update={"model": evaluable_model(gen.backend.model)})})})

        tree = SkillTree.resolve(self.recipe.tree, on_duplicate=self.recipe.on_duplicate)
        run_profile(self.skills_path, self.p(rd, "profile"), cfg, tree=tree, force=clean, show_progress=self.show_progress)

    def _round_select(self, rd: str, cfg: Any, profile_json: Path, item_profile: Path, clean: bool) -> None:
        from .select import run_select

        res = run_select(self.skills_path, self.p(rd, "select"), cfg, profile_json=profile_json,
                         item_profile=item_profile, force=clean, progress=self.show_progress)
        if res.n_selected < cfg.budget:
            self.console.print(f"[yellow]{rd}/select: {res.n_selected} of {cfg.budget} selected[/yellow]")

    def _round_format(self, rd: str, cfg: Any, slices: list[Path], clean: bool) -> None:
        from .closed_loop import REPLAY_SELECTION, write_replay_selection
        from .format import run_format

        src = slices[0]
        if len(slices) > 1:  # replay: every slice so far, as one selection file beside the format output
            src = write_replay_selection(slices, self.p(rd, REPLAY_SELECTION))
        run_format(src, self.p(rd, "format"), cfg, force=clean, progress=self.show_progress)

    # -- stages ---------------------------------------------------------------------
    def _corpus(self, clean: bool) -> None:
        r = self.recipe
        if r.corpus is not None:
            from .corpus import ingest

            ingest(r.corpus, self.p("corpus"), progress=self.show_progress)
            return
        assert r.demo is not None
        t0 = time.time()
        table = demo_pool(r.demo)
        write_parquet(self.corpus_path, table)
        write_manifest(self.p("corpus"), config=_dump(r.demo, exclude={"student"}), inputs={},
                       counts={"rows_written": table.num_rows}, wall_time_s=round(time.time() - t0, 3),
                       source="skilldistill.demo.generator")

    def _demo(self, clean: bool) -> None:
        """Held-out evaluation set (with true skills) and the uneven base student."""
        from .demo.generator import generate_eval_set
        from .demo.student import install_base_student

        d = self.recipe.demo
        assert d is not None
        t0 = time.time()
        table = generate_eval_set(d.eval_per_leaf, d.seed)
        # the evaluation stage reads per-skill labels from a `skills` column
        table = table.append_column("skills", table.column("true_skills"))
        write_parquet(self.p("demo", "eval.parquet"), table)
        # The packaged student when the recipe asks for exactly it; otherwise built here.
        _, origin = install_base_student(self.p("demo", "student"), seed=d.seed, config=d.student,
                                         show_progress=self.show_progress)
        self.console.print(f"[dim]demo student: {'the packaged one' if origin == 'shipped' else 'built for this config'}[/dim]")
        write_manifest(self.p("demo"), config=_dump(d), inputs={}, counts={"eval_rows": table.num_rows},
                       wall_time_s=round(time.time() - t0, 2), student=origin)

    def _annotate(self, tree: SkillTree, clean: bool) -> None:
        from .annotate import annotate

        annotate(self.corpus_path, tree, self.p("annotate"), self.recipe.annotate, force=clean,
                 show_progress=self.show_progress)
        cols = pq.read_schema(self.skills_path).names
        if "true_skills" in cols:  # a corpus with known skills (the demo): measure attribution
            write_json(self.p("annotate", "attribution_accuracy.json"), attribution_accuracy(self.skills_path))

    def _profile_config(self):
        gen = self.recipe.profile.generation
        backend = gen.backend.model_copy(update={"model": self.student_model()})
        return self.recipe.profile.model_copy(update={"generation": gen.model_copy(update={"backend": backend})})

    def _profile(self, tree: SkillTree, clean: bool) -> None:
        from .profile import run_profile

        run_profile(self.skills_path, self.p("profile"), self._profile_config(), tree=tree, force=clean,
                    show_progress=self.show_progress)

    def _select(self, sub: str, cfg: Any, clean: bool) -> None:
        from .select import run_select

        res = run_select(self.skills_path, self.p("select", sub), cfg,
                         profile_json=self.p("profile", "skill_profile.json"),
                         item_profile=self.p("profile", "profile.parquet"), force=clean, progress=self.show_progress)
        if res.n_selected < cfg.budget:
            self.console.print(f"[yellow]select/{sub}: {res.n_selected} of {cfg.budget} selected[/yellow]")

    def _format(self, sub: str, cfg: Any, clean: bool) -> None:
        from .format import run_format

        run_format(self.p("select", sub, "selection.parquet"), self.p("format", sub), cfg, force=clean,
                   progress=self.show_progress)

    def _train(self, sub: str, cfg: Any, clean: bool) -> None:
        self._train_into(f"format/{sub}", f"train/{sub}", cfg, clean, label=sub)

    def _train_into(self, data: str, out: str, cfg: Any, clean: bool, *, label: str) -> None:
        launcher = self.recipe.launcher
        if launcher.accelerate_config is None:
            from .train import run_train

            run_train(self.p(data), self.p(out), cfg, overwrite=clean, progress=self.show_progress, label=label)
            return
        # Multi-GPU: a fresh `accelerate launch` process group per arm (and the GPU memory
        # of profiling/evaluation engines in this process is not in its way).
        import subprocess
        import sys

        cfg_path = self.p(out, "pipeline_train_config.yaml")
        write_text(cfg_path, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", launcher.accelerate_config,
               *launcher.extra_args, "-m", "skilldistill.train", str(self.p(data)),
               "--out", str(self.p(out)), "--config", str(cfg_path), *(["--overwrite"] if clean else [])]
        self.console.print(f"[dim]$ {' '.join(cmd)}[/dim]")
        if subprocess.run(cmd).returncode != 0:
            raise ConfigError(f"{out}: accelerate launch failed (command above); rerun resumes from the last checkpoint")

    def _evaluate_config(self):
        cfg = self.recipe.evaluate_config()
        if self.recipe.demo is not None and DEMO_EVAL in cfg.benchmarks:
            path = str(self.p("demo", "eval.parquet"))
            cfg = cfg.model_copy(update={"files": cfg.files | {DEMO_EVAL: path},
                                         "skills": cfg.skills | {DEMO_EVAL: path}})
        return cfg

    def _evaluate(self, key: str, gen: Any, cfg: Any, clean: bool) -> None:
        from .evaluate import load_benchmark, run_evaluate

        out = self.p(key)
        for name in cfg.benchmarks:  # every input must load before anything is removed
            load_benchmark(name, data_dir=cfg.data_dir, path=cfg.files.get(name), limit=cfg.limit)
        # fresh: stale samples from other settings must not be resumed (wiped under the folder's lock)
        run_evaluate(out, cfg, gen, show_progress=self.show_progress, fresh=clean)

    def _report(self) -> None:
        from .report import build_report

        extra = []
        acc_path = self.p("annotate", "attribution_accuracy.json")
        if acc_path.exists():
            acc = read_json(acc_path)
            extra.append(("Attribution accuracy against the true skills", _attribution_md(acc)))
        targets = None
        if self.recipe.demo is not None:
            from .demo.targets import check_targets, targets_markdown

            def targets(summary: dict[str, Any]) -> list[tuple[str, str]]:
                return [("Demo targets", targets_markdown(check_targets(summary)))]

        build_report(self.run_dir, baseline=self.recipe.baseline, title=f"skilldistill: {self.recipe.name}",
                     extra_sections=extra, method=self.recipe.report.method, sections_from_summary=targets)

    # -- summary --------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        path = self.p("report", "summary.json")
        return read_json(path) if path.exists() else {}

    def print_summary(self) -> None:
        summary = self.summary()
        s = summary.get("benchmarks", {})
        arms = s.get("arms", {})
        if not arms:
            return
        names = list(s.get("benchmarks", []))
        cols = names + (["average"] if len(names) > 1 else [])
        table = Table("arm", *cols, title=f"{self.recipe.name}: accuracy % (mean ± std over seeds; "
                      f"Δ vs {s.get('baseline')} in pp [95% paired-bootstrap interval])")
        order = sorted(arms, key=lambda a: (a != "base", a != s.get("baseline"), a))
        for arm in order:
            cells = []
            for c in cols:
                cell = arms[arm].get(c) or {}
                if cell.get("mean") is None:
                    cells.append("–")
                    continue
                txt = f"{100 * cell['mean']:.1f}"
                if cell.get("n_seeds", 1) > 1:
                    txt += f" ± {100 * cell['std']:.1f}"
                if cell.get("delta") is not None and arm != s.get("baseline"):
                    ci = cell.get("ci")
                    txt += f" ({100 * cell['delta']:+.1f}" + (f" [{100 * ci['low']:+.1f}, {100 * ci['high']:+.1f}]" if ci else "") + ")"
                cells.append(txt)
            table.add_row(arm, *cells)
        self.console.print(table)
        weak = summary.get("weak_skill_gains", {})
        if weak.get("by_arm"):
            wt = Table("arm", "Δ weak leaves (pp)", "Δ other leaves (pp)",
                       title=f"per-leaf gain over base; weak = {weak.get('definition', 'lowest-profiled leaves')}")
            for arm, g in sorted(weak["by_arm"].items()):
                wt.add_row(arm, *("–" if g[k] is None else f"{100 * g[k]:+.1f}" for k in ("weak", "strong")))
            self.console.print(wt)
        self._print_closed_loop(summary.get("closed_loop"))
        if self.recipe.demo is not None:
            from .demo.targets import check_targets

            tt = Table("#", "demo target", "result", "numbers", title="the demo's claims, measured on this run")
            for i, c in enumerate(check_targets(summary), start=1):
                style = {"pass": "green", "FAIL": "bold red"}.get(c.mark, "dim")
                tt.add_row(str(i), c.name, f"[{style}]{c.mark}[/{style}]", c.detail)
            self.console.print(tt)
        if summary.get("verdict"):
            self.console.print(f"[bold]Verdict:[/bold] {summary['verdict']['text']}", highlight=False)


    def _print_closed_loop(self, loop: dict[str, Any] | None) -> None:
        if not loop:
            return
        for name, e in loop.get("arms", {}).items():
            k = e["rounds"]
            t = Table("leaf", *[f"acc r{r + 1}" for r in range(k)], "held-out", *[f"items r{r + 1}" for r in range(k)],
                      title=f"closed loop {name}: accuracy the rounds selected from, final held-out accuracy, items "
                      "per round (means over seeds; * weak leaf)")
            for row in e["leaves"]:
                t.add_row(("* " if row["weak"] else "") + row["leaf"].split("->")[-1],
                          *("–" if a is None else f"{100 * a:.0f}" for a in row["accuracy"]),
                          "–" if row["held_out"] is None else f"{100 * row['held_out']:.0f}",
                          *("–" if b is None else f"{b:.0f}" for b in row["budget"]))
            self.console.print(t)
            vs = e.get("vs_one_shot")
            if vs:
                self.console.print(f"{name} − {loop['one_shot']} (one-shot, same budget): {100 * vs['delta']:+.1f} pp "
                                   f"[{100 * vs['low']:+.1f}, {100 * vs['high']:+.1f}] (95% paired-bootstrap interval, "
                                   f"{vs.get('n_problems', '?')} problems)", highlight=False)


def demo_pool(demo: Any) -> Any:
    """The demo's generated pool (a pyarrow Table) for a recipe's ``demo`` section."""
    from .demo.generator import generate_corpus, skewed_weights

    weights = None
    if demo.pool_weak_weight != 1.0:
        weights = skewed_weights(demo.pool_weak_weight, weak=demo.student.weak_leaves)
    return generate_corpus(demo.pool_size, demo.seed, leaf_weights=weights)


def _cores_per_job(jobs: int) -> int:
    """Torch threads of an arm worker when the recipe sets none: the cores shared out."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // jobs)


def attribution_accuracy(skills_parquet: str | Path) -> dict[str, Any]:
    """Agreement of attributed ``skills`` with known ``true_skills`` (leaf chains and top level).

    Per item: leaf precision/recall of the predicted chain set; exact set match; whether
    the top-level skill sets match. Also the majority-class and uniform-random rates of
    the top-level skill, the reference points an attribution method must beat.
    """
    t = pq.read_table(skills_parquet, columns=["skills", "true_skills"])
    pred_col, true_col = t.column("skills").to_pylist(), t.column("true_skills").to_pylist()
    n = len(pred_col)
    exact = top_exact = 0
    prec_sum = rec_sum = 0.0
    first_top_hit = 0
    top_counts: dict[str, int] = {}
    leaves: set[tuple[str, ...]] = set()
    for pred, true in zip(pred_col, true_col, strict=True):
        p = {tuple(c) for c in pred or []}
        g = {tuple(c) for c in true or []}
        leaves |= g
        exact += p == g
        prec_sum += len(p & g) / len(p) if p else 0.0
        rec_sum += len(p & g) / len(g) if g else 0.0
        pt, gt = {c[0] for c in p}, {c[0] for c in g}
        top_exact += pt == gt
        if pred and true:
            first_top_hit += pred[0][0] in gt
        for top in gt:
            top_counts[top] = top_counts.get(top, 0) + 1
    tops = sorted(top_counts)
    return {
        "items": n,
        "leaf_exact_set": exact / n if n else None,
        "leaf_precision": prec_sum / n if n else None,
        "leaf_recall": rec_sum / n if n else None,
        "top_level_exact_set": top_exact / n if n else None,
        "top_level_first_chain_hit": first_top_hit / n if n else None,
        "top_level_majority_rate": max(top_counts.values()) / n if n and top_counts else None,
        "top_level_random_rate": 1 / len(tops) if tops else None,
        "leaf_random_rate": 1 / len(leaves) if leaves else None,
    }


def _attribution_md(acc: dict[str, Any]) -> str:
    def pct(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.1f}%"

    return "\n".join([
        f"Embedding attribution on the {acc['items']} generated problems, against the generator's skills:",
        "",
        "| measure | value |", "|---|---|",
        f"| leaf chains: exact set match | {pct(acc['leaf_exact_set'])} |",
        f"| leaf chains: precision / recall | {pct(acc['leaf_precision'])} / {pct(acc['leaf_recall'])} |",
        f"| top level: exact set match | {pct(acc['top_level_exact_set'])} |",
        f"| top level: first predicted domain is a true one | {pct(acc['top_level_first_chain_hit'])} |",
        f"| top level: majority class / random | {pct(acc['top_level_majority_rate'])} / {pct(acc['top_level_random_rate'])} |",
    ])


def _dump(model: Any, exclude: set[str] | None = None) -> Any:
    return None if model is None else model.model_dump(mode="json", exclude=exclude)


def _gen_dump(gen: Any) -> dict[str, Any]:
    d = gen.model_dump(mode="json")
    d.get("backend", {}).pop("api_key", None)
    return d


def run_recipe(recipe: Recipe, *, run_dir: str | Path | None = None, force_from: str | None = None,
               console: Console | None = None, show_progress: bool = True) -> Pipeline:
    pipe = Pipeline(recipe, run_dir=run_dir, force_from=force_from, console=console, show_progress=show_progress)
    pipe.run()
    return pipe


__all__ = ["Pipeline", "STAGES", "attribution_accuracy", "run_recipe"]

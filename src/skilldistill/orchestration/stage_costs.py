"""The estimated cost of each stage a run would go through (``skilldistill plan``): items,
LLM calls, prompt/generated/training tokens, from what earlier runs measured when they
did, else from the recipe (with the assumption stated). See :mod:`skilldistill.orchestration.plan`."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ..artifacts import read_json
from ..corpus.presets import PRESETS
from .arm_corpora import POOLS_DIR, ArmCorpus, arm_corpora
from .plan_config import PlanSettings
from .recipe import DEMO_EVAL, DEMO_STUDENT

# Problems per registered benchmark (the registry's descriptions; used when the files are
# not at hand, e.g. a hub benchmark planned offline).
BENCHMARK_SIZES = {"aime24": 30, "aime25": 30, "amc23": 40, "math500": 500, "math_l5": 134,
                   "olympiadbench": 581, "gsm8k": 1319}


@dataclass
class StageCost:
    key: str
    kind: str
    status: str
    reason: str
    items: int | None = None
    llm_calls: float | None = None
    prompt_tokens: float | None = None
    generated_tokens: float | None = None
    training_tokens: float | None = None
    gpu_hours: float | None = None
    notes: list[str] = field(default_factory=list)
    # profiling: the other way of profiling (adaptive for a full profile, the full pool for an
    # adaptive one), so plan shows both: {"items", "generated_tokens", "gpu_hours", "how"}
    profiling_alternative: dict[str, Any] | None = None


class Estimator:
    """What several stages' estimates share, found once: the pool's size and text length,
    and the LLM calls per item of attribution."""

    def __init__(self, pipe: Any, settings: PlanSettings, *, sample: bool) -> None:
        self.pipe = pipe
        self.recipe = pipe.recipe
        self.settings = settings
        self.sample = sample
        self.assumptions: list[str] = []
        self._pool_items: int | None = None
        self._other_pools: dict[str, int | None] = {}  # an arm's own corpus: its size
        self.corpora = arm_corpora(self.recipe)
        self._pool_text_tokens: float | None = None
        self._calls_per_item: tuple[float, float | None, str] | None = None
        self._adaptive: dict[tuple[Any, ...], tuple[int, str]] = {}

    # -- adaptive profiling ------------------------------------------------------------
    def adaptive_items(self, eligible: int, n: int, profile_cfg: dict[str, Any], tree: Any) -> tuple[int, str]:
        """Items adaptive profiling would profile of ``eligible`` (its settings, else its defaults aimed at the
        recipe's select section), by simulation (profile/simulation.py): the world is stated once in the
        assumptions. The run's attributed pool gives the items' chains when it exists."""
        from ..profile.config import AdaptiveConfig
        from ..profile.simulation import WORLD, adaptive_items_estimate

        sel = self.recipe.select
        adaptive = profile_cfg.get("adaptive") or {"temperature": sel.temperature, "w_max": sel.w_max,
                                                  "accuracy": sel.accuracy}
        config = AdaptiveConfig.model_validate(adaptive)
        key = (eligible, n, config.model_dump_json(), profile_cfg.get("prior_strength", 4.0))
        if key not in self._adaptive:
            skills = self.pipe.skills_path
            chains = pq.read_table(skills, columns=["skills"]).column("skills").to_pylist() if skills.exists() else None
            items, stop = adaptive_items_estimate(tree, eligible, n, config, key[3], chain_sets=chains)
            self._adaptive[key] = (items, f"about {items:,} of {eligible:,} items for TV <= {config.tv_bound:g} at "
                                          f"{config.confidence:g} ({stop}, simulated)")
            note = (f"adaptive profiling estimates are simulated on a pool of the same size with the recipe's tree"
                    f"{' and the attributed chains' if chains else ''}: {WORLD}")
            if note not in self.assumptions:
                self.assumptions.append(note)
        return self._adaptive[key]

    # -- the pool ------------------------------------------------------------------
    def corpus_of_stage(self, key: str) -> ArmCorpus | None:
        """The arm pool a stage works on: ``pools/<name>/...``, or an arm run's stage of an arm with its own
        pool (None: the recipe's pool)."""
        parts = key.split("/")
        if parts[0] == POOLS_DIR and len(parts) > 1:
            return next((c for c in self.corpora if c.name == parts[1]), None)
        if parts[0] in ("select", "format", "train") and len(parts) > 1:
            return next((c for c in self.corpora if parts[1] in c.arms), None)
        return None

    def items_of_stage_pool(self, key: str) -> int | None:
        """Items of the pool the stage ``key`` works on."""
        return self.pool_items(self.corpus_of_stage(key))

    def pool_items(self, corpus: ArmCorpus | None = None) -> int | None:
        """Items of the recipe's pool, or of an arm's own corpus."""
        if corpus is not None and corpus.config is not None:
            if corpus.name not in self._other_pools:
                self._other_pools[corpus.name] = self._own_corpus_items(corpus)
            return self._other_pools[corpus.name]
        if self._pool_items is None:
            corpus = self.pipe.corpus_path
            if corpus.exists():
                self._pool_items = pq.read_metadata(corpus).num_rows
            elif self.recipe.demo is not None:
                self._pool_items = self.recipe.demo.pool_size
            elif self.recipe.corpus is not None and self.recipe.corpus.limit is not None:
                self._pool_items = self.recipe.corpus.limit
                self.assumptions.append(f"corpus: its limit ({self.recipe.corpus.limit:,}) is taken as the pool size "
                                        "(dedup and decontamination may remove some)")
        return self._pool_items

    def _own_corpus_items(self, corpus: ArmCorpus) -> int | None:
        """An arm's own corpus: ingested, its limit, or its preset's published size (said in the assumptions)."""
        path = corpus.corpus_path(self.pipe.run_dir)
        if path.exists():
            return pq.read_metadata(path).num_rows
        cfg = corpus.config
        assert cfg is not None
        preset = PRESETS.get(cfg.preset or "")
        published = preset.rows if preset is not None and cfg.source == preset.hf_id else None
        n = min(cfg.limit, published) if cfg.limit and published else cfg.limit or published
        if n is None:
            self.assumptions.append(f"pool {corpus.name!r} ({cfg.source}): its size is unknown until it is ingested, "
                                    "so its attribution and the stages of its arms have no estimate")
        else:
            self.assumptions.append(f"pool {corpus.name!r} ({cfg.source}): {n:,} items, "
                                    + ("its limit" if n == cfg.limit else "the published dataset's rows")
                                    + " (dedup and decontamination may remove some)")
        return n

    def _pool_rows(self, n: int) -> list[dict[str, Any]] | None:
        corpus = self.pipe.corpus_path
        if corpus.exists():  # the first n rows only: a corpus can be millions of rows
            batch = next(pq.ParquetFile(corpus).iter_batches(batch_size=n), None)
            return batch.to_pylist() if batch is not None else []
        if self.recipe.demo is not None:  # generated exactly as the corpus stage will
            from ..demo.pool import demo_pool

            return demo_pool(self.recipe.demo).slice(0, n).to_pylist()
        return None

    def pool_text_tokens(self) -> float | None:
        """Mean tokens of question + response over the first 500 pool rows (characters / chars_per_token)."""
        if self._pool_text_tokens is None:
            rows = self._pool_rows(500)
            if rows:
                chars = sum(len(r.get("question") or "") + len(r.get("response") or "") for r in rows) / len(rows)
                self._pool_text_tokens = chars / self.settings.chars_per_token
        return self._pool_text_tokens

    # -- attribution ---------------------------------------------------------------
    def calls_per_item(self, tree: Any) -> tuple[float, float | None, str]:
        """(LLM calls per item, prompt tokens per item or None, how it was found)."""
        if self._calls_per_item is None:
            self._calls_per_item = (self._calls_measured_by_the_run() or self._calls_measured_on_a_sample(tree)
                                    or self.calls_from_the_tree(tree))
        return self._calls_per_item

    def _calls_measured_by_the_run(self) -> tuple[float, float | None, str] | None:
        done = self.pipe.path("annotate", "summary.json")
        if not done.exists():
            return None
        s = read_json(done)
        if not s.get("items"):
            return None
        per_item = s.get("calls_total", 0) / s["items"]
        tokens, calls = s.get("prompt_tokens_this_run"), s.get("calls_this_run")
        per_call = tokens / calls if tokens and calls else None
        return (per_item, per_call * per_item if per_call is not None else None, "measured by this run's annotate stage")

    def _calls_measured_on_a_sample(self, tree: Any) -> tuple[float, float | None, str] | None:
        rows = self._pool_rows(self.settings.attribution_sample) if self.sample else None
        if not rows:
            return None
        import pyarrow as pa

        from ..attribution import run_annotate

        with tempfile.TemporaryDirectory(prefix="skilldistill-plan-") as tmp:
            src = Path(tmp) / "sample.parquet"
            pq.write_table(pa.Table.from_pylist(rows), src)
            res = run_annotate(src, tree, Path(tmp) / "out", self.recipe.annotate, show_progress=False)
            s = res.summary
        tokens = s.get("prompt_tokens_this_run")
        return (s.get("calls_total", 0) / max(1, s["items"]), tokens / max(1, s["items"]) if tokens else None,
                f"measured on a sample of {s['items']} items with the recipe's backend")

    @staticmethod
    def calls_from_the_tree(tree: Any) -> tuple[float, float | None, str]:
        inner = [len(c) for c in tree.leaves()]
        per = sum(inner) / len(inner) if inner else 0.0
        return (per, None, "from the tree's shape: one chain per item, one call per inner node "
                "on its way (the mean over leaves); several chains per item cost more")


def demo_cost(c: StageCost, recipe: Any, tree: Any) -> None:
    d = recipe.demo
    c.items = d.eval_per_leaf * len(tree.leaves()) if d else None
    c.notes.append("held-out set and the packaged base student (a changed student config builds one here)")


def seed_labels_cost(c: StageCost, recipe: Any, est: Estimator) -> None:
    """The demo's seed labels: the generator's skills of a share of the pool, no model."""
    pool = est.pool_items()
    c.items = max(1, round(recipe.demo.seed_label_share * pool)) if pool else None
    c.notes.append(f"seed labels: the true skills of {recipe.demo.seed_label_share:.0%} of the pool, no model "
                   "(standing in for hand labels)")


def annotate_cost(c: StageCost, est: Estimator, tree: Any, gen_tps: float | None, corpus: ArmCorpus | None = None) -> None:
    """An attribution stage: the recipe's pool by its annotate section, or an arm's pool by the arm's."""
    c.items = est.pool_items(corpus)
    cfg = corpus.annotate if corpus is not None else est.recipe.annotate
    if cfg.backend == "embedding":
        c.llm_calls = 0
        c.notes.append("embedding backend: no LLM calls (one encoding per item and per tree node)")
        return
    if cfg.backend == "labels":
        c.llm_calls = 0
        c.notes.append(f"labels backend: no LLM calls (the corpus's own {cfg.labels.label_field!r} labels)")
        return
    if cfg.public_dict() == est.recipe.annotate.public_dict():
        per, tok, how = est.calls_per_item(tree)
    else:  # an arm's own attribution settings: measured neither by the run nor on a sample
        per, tok, how = est.calls_from_the_tree(tree)
    asked = c.items
    if cfg.backend == "distilled" and cfg.distilled.train_labels is not None:
        asked = 0
        c.notes.append("distilled from a labels file: no LLM sample; "
                       + ("no LLM calls" if cfg.llm is None else "only the unsure decisions reach the LLM"))
    elif cfg.backend == "distilled" and c.items is not None:
        asked = min(c.items, cfg.distilled.sample_size)
        c.notes.append(f"distilled: the LLM labels a sample of {asked:,} items; the decisions the "
                       "classifiers are unsure of on the rest come on top (summary.json: "
                       "distilled.decisions.fallback_share)")
    if cfg.anchor is not None and cfg.anchor.label_field and asked:
        per = max(0.0, per - 1.0)  # the root decision is the anchor label's (all items taken as anchored)
        c.notes.append(f"anchored walk: the root decision is taken from {cfg.anchor.label_field!r}, one call per "
                       "item fewer (items without the label cost one more each)")
    if asked is not None:
        c.llm_calls = per * asked
        c.prompt_tokens = tok * asked if tok is not None else None
    c.notes.append(f"{per:.2f} calls per item, {how}")
    if gen_tps and c.llm_calls:  # answers are short; prompt reading dominates on the server
        c.generated_tokens = c.llm_calls * 16
        c.notes.append("generated tokens: about 16 per decision (a short list of names)")


def profile_cost(c: StageCost, cfg: dict[str, Any], folder: Path, est: Estimator, pipe: Any, tree: Any) -> None:
    gen = cfg["generation"]
    pool = est.pool_items()
    left_out = 0
    for sel in cfg.get("exclude_selections") or []:  # the items earlier rounds trained on
        p = Path(sel)
        p = p / "selection.parquet" if p.suffix != ".parquet" else p
        left_out += pq.read_metadata(p).num_rows if p.exists() else _budget_of_selection(p, pipe)
    eligible = pool - left_out if pool is not None else None
    if eligible is None:
        return
    n = gen.get("n", 1)
    adaptive_items, adaptive_how = est.adaptive_items(eligible, n, cfg, tree)
    full_items = min(eligible, cfg["sample"]) if cfg.get("sample") else eligible
    items = adaptive_items if cfg.get("adaptive") else full_items
    c.items = items
    prompt_len, mean_len = _measured_tokens(folder / "generations.parquet")
    cap = gen.get("max_new_tokens")
    per_answer = mean_len if mean_len is not None else cap
    c.generated_tokens = items * n * per_answer
    c.notes.append(f"{items * n:,} samples ({items:,} items x n={n}); "
                   + (f"{mean_len:.0f} tokens per answer (an earlier run of this stage)" if mean_len is not None
                      else f"≤ {cap} tokens per answer (the cap)"))
    if cfg.get("adaptive"):
        c.notes.append(f"adaptive profiling: {adaptive_how}")
    if prompt_len is not None:
        c.prompt_tokens = items * n * prompt_len
    elif (qtok := est.pool_text_tokens()) is not None:
        c.prompt_tokens = items * n * qtok * 0.3  # the question part of question + response
        c.notes.append("prompt tokens: about 0.3 of the pool's question + response length per item")
    other = full_items if cfg.get("adaptive") else adaptive_items
    if other != items:
        gps = est.settings.generation_tokens_per_s
        c.profiling_alternative = {
            "items": other, "generated_tokens": other * n * per_answer,
            "gpu_hours": other * n * per_answer / gps / 3600 if gps else None,
            "how": ("the full pool (no profile.adaptive)" if cfg.get("adaptive")
                    else f"profile.adaptive with its defaults: {adaptive_how}"),
        }


def _budget_of_selection(path: Path, pipe: Any) -> int:
    """A selection not made yet (a later round's input): its budget from the planned stage."""
    for st in pipe.planned:
        if st["kind"] == "select" and str(pipe.path(st["key"], "selection.parquet")) == str(path):
            return int(st["config"].get("budget") or 0)
    return 0


def _measured_tokens(generations: Path) -> tuple[float | None, float | None]:
    """Mean (prompt, completion) tokens per sample an earlier run of a stage logged."""
    if not generations.exists():
        return None, None
    try:
        t = pq.read_table(generations, columns=["prompt_tokens", "completion_tokens"])
    except (KeyError, ValueError, OSError):
        return None, None

    def mean(col: str) -> float | None:
        vals = [v for v in t.column(col).to_pylist() if v is not None]
        return sum(vals) / len(vals) if vals else None

    return mean("prompt_tokens"), mean("completion_tokens")


def selected_items(select_cfg: dict[str, Any], pool: int | None) -> int | None:
    """Items a select stage takes: its budget, or the whole pool for ``strategy: all`` (at most the pool either way
    is said in the assumptions)."""
    if select_cfg.get("strategy") == "all":
        return pool
    return select_cfg.get("budget")


def select_cost(c: StageCost, cfg: dict[str, Any], folder: Path, est: Estimator, pool: int | None) -> None:
    """A select stage: the items it takes; the loss strategy also scores the pool with the student first
    (forward passes only: its tokens counted as prompt tokens), the less strategy takes its gradients (forward and
    backward: counted as training tokens)."""
    from ..select.config import DEFAULT_LOSS_MAX_LENGTH, ITEM_LOSSES

    c.items = selected_items(cfg, pool)
    strategy = cfg.get("strategy")
    if strategy == "all":
        c.notes.append("strategy all: every eligible item of the pool (the budget is ignored)")
    if strategy == "less" and pool is not None:
        less_cost(c, cfg, folder, est, pool)
    if strategy != "loss" or pool is None:
        return
    length = cfg.get("loss_max_length") or cfg.get("max_tokens") or DEFAULT_LOSS_MAX_LENGTH
    mean = est.pool_text_tokens()
    if mean is not None:
        c.prompt_tokens = pool * min(mean, float(length))
    model = cfg.get("loss_model") or cfg.get("tokenizer")
    who = "the demo's student" if model == DEMO_STUDENT else model
    c.notes.append(f"loss pass: {who} scores the {pool:,} pool items once (the eligible ones: exclusions "
                   f"not counted), one forward pass each, no generation; prompt tokens: the pool's mean "
                   f"question + response length at {est.settings.chars_per_token:g} characters per token, "
                   f"at most {length:,} each")
    if (folder / ITEM_LOSSES).exists():
        c.notes.append(f"{ITEM_LOSSES} of an earlier run is there: the items it holds for the same model and "
                       "settings are not scored again")


# The less strategy's gradient pass per token, in training tokens: a forward and a backward pass (no optimizer
# step) plus the per-example gradients and their random projection, measured against a training step (forward,
# backward, AdamW) of the same student on the same batches by bench/less_cost.py (docs/select.md, "The less
# strategy"): 1.01 on the demo student, 0.52 on SmolLM2-135M (one CPU thread). 1.0 is the larger of the two.
LESS_TRAINING_TOKENS_PER_TOKEN = 1.0


def less_cost(c: StageCost, cfg: dict[str, Any], folder: Path, est: Estimator, pool: int) -> None:
    """The less strategy's gradient pass: every pool item (and a development file's) once, forward and backward,
    counted as training tokens (``LESS_TRAINING_TOKENS_PER_TOKEN`` each)."""
    from ..select.config import DEFAULT_LOSS_MAX_LENGTH, ITEM_GRADIENTS

    length = cfg.get("less_max_length") or cfg.get("max_tokens") or DEFAULT_LOSS_MAX_LENGTH
    items, dev = pool, 0
    if cfg.get("less_target") == "dev" and cfg.get("less_target_file"):
        dev = _file_rows(Path(cfg["less_target_file"]))
        items += dev or 0
    mean = est.pool_text_tokens()
    if mean is not None:
        c.training_tokens = items * min(mean, float(length)) * LESS_TRAINING_TOKENS_PER_TOKEN
    model = cfg.get("less_model") or cfg.get("tokenizer")
    who = "the recipe's student" if model in (None, DEMO_STUDENT) else model
    params = (f"LoRA rank {cfg.get('less_lora_rank', 8)}" if cfg.get("less_params", "lora") == "lora"
              else f"the last {cfg.get('less_layers', 1)} layers")
    target = f" and the {dev:,} development items" if dev else ""
    c.notes.append(f"gradient pass (less): {who} takes the gradient ({params}) of the {pool:,} pool items{target} once, "
                   f"a forward and a backward pass each, projected to {cfg.get('less_dim', 8192)} dimensions; counted "
                   f"as training tokens (x{LESS_TRAINING_TOKENS_PER_TOKEN:g}, bench/less_cost.py): the pool's mean "
                   f"question + response length at {est.settings.chars_per_token:g} characters per token, at most "
                   f"{length:,} each")
    if (folder / ITEM_GRADIENTS).exists():
        c.notes.append(f"{ITEM_GRADIENTS}/ of an earlier run is there: the items it holds for the same model and "
                       "settings are not computed again")


def _file_rows(path: Path) -> int | None:
    """Rows of a .jsonl or .parquet file (None when it cannot be read)."""
    try:
        if path.suffix.lower() == ".parquet":
            return pq.ParquetFile(path).metadata.num_rows
        with open(path, encoding="utf-8") as f:
            return sum(1 for line in f if line.strip())
    except (OSError, ValueError):
        return None


def format_cost(c: StageCost, st: dict[str, Any], folder: Path, planned: list[dict[str, Any]],
                pool_of: Callable[[str], int | None]) -> None:
    c.items = format_items(st, planned, pool_of)
    rep = folder / "report.json"
    if rep.exists():  # one pass over the data; the train stage counts the epochs
        tok = read_json(rep).get("tokens") or {}
        c.notes.append(f"{tok.get('total', 0):,} tokens in the formatted examples")


def format_items(st: dict[str, Any], planned: list[dict[str, Any]], pool_of: Callable[[str], int | None]) -> int | None:
    """Examples a format stage writes: its selection's items (every slice so far with replay); ``pool_of``: the
    items of the pool a select stage draws from."""
    key = st["key"]
    sel_key = key[: -len("format")] + "select" if key.endswith("/format") else key.replace("format/", "select/", 1)
    budgets = {p["key"]: selected_items(p["config"], pool_of(p["key"])) for p in planned if p["kind"] == "select"}
    slices = st["config"].get("slices", 1) if isinstance(st["config"], dict) else 1
    if slices > 1 and key.startswith("rounds/"):
        base = key.rsplit("/round", 1)[0]
        r = int(key.rsplit("/round", 1)[1].split("/")[0])
        return sum(int(budgets.get(f"{base}/round{k}/select") or 0) for k in range(1, r + 1))
    return budgets.get(sel_key)


def train_cost(c: StageCost, st: dict[str, Any], planned: list[dict[str, Any]], est: Estimator, pipe: Any) -> None:
    key = st["key"]
    fmt_key = key[: -len("train")] + "format" if key.endswith("/train") else key.replace("train/", "format/", 1)
    fmt = next((p for p in planned if p["key"] == fmt_key), None)
    c.items = format_items(fmt, planned, est.items_of_stage_pool) if fmt else None
    epochs = float(st["config"].get("num_train_epochs") or 1)
    rep = pipe.path(fmt_key, "report.json")
    mean = None
    how = ""
    if rep.exists():
        mean = (read_json(rep).get("tokens") or {}).get("mean")
        how = "measured by the format stage"
    if mean is None:
        mean = est.pool_text_tokens()
        how = f"the pool's mean question + response length at {est.settings.chars_per_token:g} characters per token"
    if mean is None and st["config"].get("max_length"):
        mean = float(st["config"]["max_length"])
        how = "max_length, an upper bound: the pool is not ingested yet"
    if c.items is not None and mean is not None:
        c.training_tokens = c.items * epochs * mean
        c.notes.append(f"{c.items:,} examples x {epochs:g} epochs x {mean:.0f} tokens ({how})")


def evaluate_cost(c: StageCost, cfg: dict[str, Any], folder: Path, pipe: Any) -> None:
    from ..evaluate import EvaluateConfig

    ev = EvaluateConfig.model_validate(cfg["eval"])
    cap = cfg["gen"].get("max_new_tokens")
    problems_total = 0
    generated = 0.0
    for name in ev.benchmarks:
        n_problems = _benchmark_problems(c, ev, name, pipe.recipe.demo)
        n = ev.n_for(name)
        samples = n_problems * n
        problems_total += n_problems
        res = folder / name / "results.json"
        mean, trunc = None, None
        if res.exists():
            r = read_json(res)
            mean, trunc = r.get("mean_completion_tokens"), r.get("truncated_share")
        generated += samples * (mean if mean is not None else cap)
        c.notes.append(f"{name}: {n_problems} x n={n}" + (f", {mean:.0f} tokens per answer, {100 * trunc:.1f}% truncated "
                                                         "(an earlier run)" if mean is not None and trunc is not None
                                                         else f", ≤ {cap} tokens per answer"))
    c.items = problems_total
    c.generated_tokens = generated


def _benchmark_problems(c: StageCost, ev: Any, name: str, demo: Any) -> int:
    """Problems of one benchmark: its local files when at hand (a plan never downloads), the
    demo's held-out set by its size, else the registry's size."""
    from ..evaluate import load_benchmark

    local = ev.files.get(name) or ev.data_dir
    try:
        if not local or (ev.files.get(name) and not Path(ev.files[name]).exists()):
            raise FileNotFoundError(name)
        return len(load_benchmark(name, data_dir=ev.data_dir, path=ev.files.get(name), limit=ev.limit))
    except Exception:
        if demo is not None and name == DEMO_EVAL:  # generated by the demo stage: per leaf x leaves
            from ..demo.generator import LEAF_CHAINS

            n_problems = demo.eval_per_leaf * len(LEAF_CHAINS)
        else:  # not at hand (a hub benchmark): the registry's size
            n_problems = BENCHMARK_SIZES.get(name, 0)
            c.notes.append(f"{name}: {n_problems} problems (registry size; files not at hand)")
        if ev.limit:
            n_problems = min(n_problems, ev.limit)
        return n_problems


__all__ = ["BENCHMARK_SIZES", "Estimator", "StageCost", "annotate_cost", "demo_cost", "evaluate_cost",
           "format_cost", "format_items", "seed_labels_cost", "selected_items", "select_cost", "profile_cost", "train_cost"]

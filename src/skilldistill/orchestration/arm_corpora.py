"""Arms that train on another pool than the recipe's (the paper's LIMO, s1K-1.1 rows).

An arm's ``corpus`` section names its pool. Each distinct pool is ingested (and decontaminated)
into ``pools/<name>/corpus`` and attributed with the recipe's tree and annotate settings into
``pools/<name>/annotate``, as the recipe's own pool is into ``corpus/`` and ``annotate/``; arms
naming the same pool share those folders. ``<name>`` is the preset (or the source file's stem),
with a short hash of the settings only when two different pools would get the same name.

Before any stage runs, a pool still to ingest is opened (a local file read, a hub dataset's
first row fetched), so an arm whose corpus cannot load fails the run with one line naming the
arm and its source.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..artifacts import hash_obj
from ..corpus.config import IngestConfig
from ..errors import ConfigError
from .recipe import ArmConfig, Recipe

POOLS_DIR = "pools"


@dataclass(frozen=True)
class ArmCorpus:
    """One pool other than the recipe's, and the arms that select from it."""

    name: str  # its folder under pools/
    config: IngestConfig  # the arm's section, decontaminated as the recipe's corpus unless it says otherwise
    arms: tuple[str, ...]

    @property
    def corpus_key(self) -> str:
        return f"{POOLS_DIR}/{self.name}/corpus"

    @property
    def annotate_key(self) -> str:
        return f"{POOLS_DIR}/{self.name}/annotate"

    def corpus_path(self, run_dir: Path) -> Path:
        return run_dir / self.corpus_key / "corpus.parquet"

    def skills_path(self, run_dir: Path) -> Path:
        return run_dir / self.annotate_key / "skills.parquet"


def arm_corpora(recipe: Recipe) -> list[ArmCorpus]:
    """The distinct pools the recipe's arms name, in the order the arms first name them."""
    configs: dict[str, IngestConfig] = {}
    arms: dict[str, list[str]] = {}
    for arm in recipe.arms:
        cfg = recipe.arm_corpus(arm)
        if cfg is None:
            continue
        key = hash_obj(cfg.model_dump(mode="json"))
        configs.setdefault(key, cfg)
        arms.setdefault(key, []).append(arm.name)
    names = _folder_names(configs)
    return [ArmCorpus(names[key], cfg, tuple(arms[key])) for key, cfg in configs.items()]


def corpus_of_arm(recipe: Recipe, arm: ArmConfig) -> ArmCorpus | None:
    """The pool ``arm`` selects from (None: the recipe's)."""
    return next((c for c in arm_corpora(recipe) if arm.name in c.arms), None)


def _folder_names(configs: dict[str, IngestConfig]) -> dict[str, str]:
    """Each pool's folder: its preset or source stem, with the settings' hash when that is taken twice."""
    bases = {key: _base_name(cfg) for key, cfg in configs.items()}
    counts: dict[str, int] = {}
    for base in bases.values():
        counts[base] = counts.get(base, 0) + 1
    return {key: base if counts[base] == 1 else f"{base}-{key[:8]}" for key, base in bases.items()}


def _base_name(cfg: IngestConfig) -> str:
    raw = cfg.preset if cfg.preset not in (None, "auto") else Path(cfg.source.rstrip("/")).stem or cfg.source
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", raw).strip("-.").replace("..", ".")
    return name[:48] or "corpus"


def check_corpora_load(recipe: Recipe, corpora: Iterable[ArmCorpus]) -> None:
    """Open each pool and read its first row; a ConfigError naming the arm and source when one cannot load."""
    from ..corpus.source import open_source

    for corpus in corpora:
        index = next(i for i, a in enumerate(recipe.arms) if a.name == corpus.arms[0])
        where = f"arms.{index} ({corpus.arms[0]}).corpus.source"
        try:
            # one row, streamed: a hub dataset is not downloaded twice
            next(iter(open_source(corpus.config.model_copy(update={"limit": 1})).rows), None)
        except Exception as e:  # a missing file, an unknown hub dataset, a missing column: all one line
            raise ConfigError(f"{where}: cannot load {corpus.config.source!r}: {e}") from None


__all__ = ["POOLS_DIR", "ArmCorpus", "arm_corpora", "check_corpora_load", "corpus_of_arm"]

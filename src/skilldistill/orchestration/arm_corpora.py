"""Arms that select from another attributed pool than the recipe's: another corpus (the paper's
LIMO and s1K-1.1 rows), or the recipe's corpus attributed another way (the demo's attribution
sources: the corpus's own labels, a labelled seed set).

An arm's ``corpus`` section names its pool; its ``annotate`` section overrides the recipe's
attribution settings. Each distinct (corpus, attribution) pair is a pool under
``pools/<name>/``:

- ``corpus/``: the arm's corpus ingested (and decontaminated) as the recipe's is (own corpus only);
- ``annotate/``: the pool attributed with the recipe's tree and the arm's annotate settings;
- ``profile/``: on the recipe's corpus, the recipe's profile of the student rolled up by this
  attribution's chains (:mod:`skilldistill.profile.reattribute`: no second generation pass).
  An arm with its own corpus selects with the recipe's profile (per-leaf accuracies).

Arms naming the same pool share its folders. ``<name>`` is the corpus's preset (or the source
file's stem), else the attribution backend, with a short hash of the settings only when two
different pools would get the same name.

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
from ..attribution.config import AnnotateConfig
from ..corpus.config import IngestConfig
from ..demo.attribution_config import SEED_LABELS
from ..errors import ConfigError
from .recipe import ArmConfig, Recipe

POOLS_DIR = "pools"


@dataclass(frozen=True)
class ArmCorpus:
    """One attributed pool other than the recipe's, and the arms that select from it."""

    name: str  # its folder under pools/
    config: IngestConfig | None  # its own corpus (decontaminated as the recipe's unless it says otherwise); None: the recipe's
    annotate: AnnotateConfig  # how it is attributed
    arms: tuple[str, ...]

    @property
    def corpus_key(self) -> str:
        return f"{POOLS_DIR}/{self.name}/corpus"

    @property
    def annotate_key(self) -> str:
        return f"{POOLS_DIR}/{self.name}/annotate"

    @property
    def profile_key(self) -> str | None:
        """The re-rolled profile's stage (None: an own corpus selects with the recipe's profile)."""
        return f"{POOLS_DIR}/{self.name}/profile" if self.config is None else None

    def corpus_path(self, run_dir: Path) -> Path:
        if self.config is None:
            return run_dir / "corpus" / "corpus.parquet"
        return run_dir / self.corpus_key / "corpus.parquet"

    def skills_path(self, run_dir: Path) -> Path:
        return run_dir / self.annotate_key / "skills.parquet"

    def profile_dir(self, run_dir: Path) -> Path:
        """The profile its arms select with."""
        return run_dir / (self.profile_key or "profile")


def arm_corpora(recipe: Recipe) -> list[ArmCorpus]:
    """The distinct pools the recipe's arms name, in the order the arms first name them."""
    pools: dict[str, tuple[IngestConfig | None, AnnotateConfig]] = {}
    arms: dict[str, list[str]] = {}
    for arm in recipe.arms:
        corpus, annotate = recipe.arm_corpus(arm), recipe.arm_annotate(arm)
        if corpus is None and annotate is None:
            continue
        annotate = annotate or recipe.annotate
        key = hash_obj({"corpus": corpus.model_dump(mode="json") if corpus else None,
                        "annotate": annotate.public_dict()})
        pools.setdefault(key, (corpus, annotate))
        arms.setdefault(key, []).append(arm.name)
    names = _folder_names({key: _base_name(*pool) for key, pool in pools.items()})
    return [ArmCorpus(names[key], corpus, annotate, tuple(arms[key])) for key, (corpus, annotate) in pools.items()]


def corpus_of_arm(recipe: Recipe, arm: ArmConfig) -> ArmCorpus | None:
    """The pool ``arm`` selects from (None: the recipe's)."""
    return next((c for c in arm_corpora(recipe) if arm.name in c.arms), None)


def _folder_names(bases: dict[str, str]) -> dict[str, str]:
    """Each pool's folder: its base name, with the settings' hash when that name is taken twice."""
    counts: dict[str, int] = {}
    for base in bases.values():
        counts[base] = counts.get(base, 0) + 1
    return {key: base if counts[base] == 1 else f"{base}-{key[:8]}" for key, base in bases.items()}


def _base_name(corpus: IngestConfig | None, annotate: AnnotateConfig) -> str:
    if corpus is None:
        raw = annotate.backend
    elif corpus.preset not in (None, "auto"):
        raw = corpus.preset
    else:
        raw = Path(corpus.source.rstrip("/")).stem or corpus.source
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", raw).strip("-.").replace("..", ".")
    return name[:48] or "corpus"


def reads_seed_labels(annotate: AnnotateConfig) -> bool:
    """Whether an attribution learns from the demo's seed labels (``demo.attribution: seed-labels``)."""
    return annotate.backend == "distilled" and annotate.distilled.train_labels == SEED_LABELS


def uses_seed_labels(recipe: Recipe) -> bool:
    """Whether the recipe's attribution, or an arm's, learns from the demo's seed labels."""
    return recipe.demo is not None and (reads_seed_labels(recipe.annotate)
                                        or any(reads_seed_labels(c.annotate) for c in arm_corpora(recipe)))


def check_corpora_load(recipe: Recipe, corpora: Iterable[ArmCorpus]) -> None:
    """Open each own corpus and read its first row; a ConfigError naming the arm and source when one cannot load."""
    from ..corpus.source import open_source

    for corpus in corpora:
        if corpus.config is None:
            continue
        index = next(i for i, a in enumerate(recipe.arms) if a.name == corpus.arms[0])
        where = f"arms.{index} ({corpus.arms[0]}).corpus.source"
        try:
            # one row, streamed: a hub dataset is not downloaded twice
            next(iter(open_source(corpus.config.model_copy(update={"limit": 1})).rows), None)
        except Exception as e:  # a missing file, an unknown hub dataset, a missing column: all one line
            raise ConfigError(f"{where}: cannot load {corpus.config.source!r}: {e}") from None


__all__ = ["POOLS_DIR", "ArmCorpus", "arm_corpora", "check_corpora_load", "corpus_of_arm",
           "reads_seed_labels", "uses_seed_labels"]

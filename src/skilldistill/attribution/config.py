"""Settings of `skilldistill annotate`: ``AnnotateConfig`` (the recipe's ``annotate`` section),
``DistilledConfig`` (its ``annotate.distilled`` section), ``LabelsConfig`` (its
``annotate.labels`` section) and ``AnchorConfig`` (its ``annotate.anchor`` section). Light: no
stage code here."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..llm.base import BackendConfig, SamplingParams
from ..llm.embedding import EmbeddingConfig


class DistilledConfig(BaseModel):
    """Settings of the ``distilled`` backend (the ``annotate.distilled`` section)."""

    model_config = ConfigDict(extra="forbid")

    sample_size: int = Field(2000, ge=1, description="Items the LLM labels (stratified); the rest get classifier labels.")
    holdout_fraction: float = Field(0.2, ge=0, lt=1, description="Share of the sample kept out of training, to measure agreement.")
    strata: int = Field(32, ge=1, description="Clusters of the item embeddings the sample is drawn from in proportion.")
    min_examples: int = Field(30, ge=1, description="A node with fewer training decisions gets no classifier (the LLM decides).")
    uncertain_band: tuple[float, float] = Field(
        (0.2, 0.8), description="A child probability strictly inside this band sends the decision to the LLM.")
    C: float | None = Field(
        None, gt=0, description="Inverse L2 strength of each logistic regression (scikit-learn's C) on standardised "
        "features; null: chosen per (node, child) from C_grid by 3-fold cross-validated log loss, so the probabilities "
        "the uncertain band reads are calibrated.")
    C_grid: list[float] = Field([0.003, 0.01, 0.03, 0.1, 0.3, 1.0], min_length=1, description="Candidates when C is null.")
    seed: int = Field(0, description="Sample, hold-out split and clustering.")
    train_labels: str | None = Field(
        None, min_length=1, description="A labels file (JSONL, Parquet or CSV: id + skills, e.g. a previous "
        "annotate's skills.parquet or lines {\"id\": ..., \"skills\": [\"A->b\", ...]}) the classifiers learn from "
        "instead of an LLM-labelled sample; its ids must be corpus ids. With it the llm section is optional "
        "(without one the classifiers decide every node).")
    features: Literal["minilm", "tfidf"] = Field(
        "minilm", description="Item features of the classifiers: 'minilm' (the embedding backend's sentence model) "
        "or 'tfidf' (scikit-learn TF-IDF of word 1-2-grams, fit on the corpus's item texts).")

    @model_validator(mode="after")
    def _check_band(self) -> DistilledConfig:
        lo, hi = self.uncertain_band
        if not 0 <= lo <= 0.5 <= hi <= 1:
            raise ValueError(f"uncertain_band must satisfy 0 <= low <= 0.5 <= high <= 1, got {list(self.uncertain_band)}")
        return self


class LabelsConfig(BaseModel):
    """Settings of the ``labels`` backend (the ``annotate.labels`` section): skill chains read
    from a label the corpus already carries (DeepMath's topic, MATH's subject), no model asked."""

    model_config = ConfigDict(extra="forbid")

    label_field: str | None = Field(
        None, min_length=1, description="The field holding each item's label: a corpus column, else a key of the "
        "row's meta JSON. Its value is one label or a list of them (one chain each).")
    label_separator: str = Field(
        "->", min_length=1, description="Separator of a hierarchical label's parts ('Mathematics -> Algebra'); "
        "whitespace around each part is stripped.")
    label_map: str | None = Field(
        None, description="YAML/JSON file mapping a label value, or a label path prefix, to a tree chain "
        "('Intermediate Algebra: Algebra', 'Calculus -> Limits: Calculus->Limits'); unmapped labels are read as chains.")

    @model_validator(mode="after")
    def _check_separator(self) -> LabelsConfig:
        if not self.label_separator.strip():
            raise ValueError("label_separator must hold a visible character (whitespace around parts is stripped)")
        return self


class AnchorConfig(LabelsConfig):
    """An anchored walk (the ``annotate.anchor`` section): the decisions a label the corpus carries
    makes (MATH's subject: the root's) are taken from it, mapped and split as the labels backend
    reads labels; the backend walks on below it. Items without a usable label are walked from the
    root (counted ``unanchored``) unless ``required``."""

    required: bool = Field(
        False, description="An item whose anchor field is missing or names no tree node is marked failed (counted; "
        "max_failed_share applies) instead of walked from the root.")


class AnnotateConfig(BaseModel):
    """Skill attribution settings (the ``annotate`` section of a recipe)."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["embedding", "openai", "vllm", "transformers", "distilled", "labels"] = Field(
        "embedding", description="Who decides: the offline embedding scorer, a chat model, 'distilled' (a chat "
        "model labels a sample, per-node classifiers the rest) or 'labels' (a label the corpus carries; no model; "
        "docs/annotate.md)."
    )
    llm: BackendConfig | None = Field(
        None, description="Chat model settings; required for a chat backend or 'distilled'. Its kind must equal backend "
        "(distilled: the LLM's kind, openai, vllm or transformers)."
    )
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    distilled: DistilledConfig = Field(default_factory=DistilledConfig, description="The distilled backend's sample and classifiers.")
    labels: LabelsConfig = Field(default_factory=LabelsConfig, description="The labels backend's field, separator and map.")
    anchor: AnchorConfig = Field(default_factory=AnchorConfig, description="A label field that takes the walk's top "
                                 "decisions (the root's, for a top-level label) instead of the backend.")
    prompt_template: str | None = Field(
        None, description="Path of a prompt template file; default: the bundled attribution_v1."
    )
    temperature: float = Field(0.3, ge=0, description="Paper: 0.3.")
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(512, ge=1, description="Answer budget per decision.")
    seed: int | None = None
    chat_template_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Passed to the chat template, e.g. {enable_thinking: false}."
    )
    max_chars: int = Field(20_000, ge=1, description="Cap on the teacher-solution characters shown (paper: 20k).")
    max_depth: int | None = Field(None, ge=1, description="Stop descending below this depth (chains may end at inner nodes).")
    match_threshold: float = Field(0.85, gt=0, le=1, description="Indel similarity (rapidfuzz fuzz.ratio / 100) needed for a fuzzy name match.")
    repair_retries: int = Field(1, ge=0, le=3, description="Re-asks after an unreadable answer.")
    max_failed_share: float = Field(
        0.05, ge=0, le=1, description="The stage fails (nothing certified, the cache kept) when more than this share of "
        "items has a decision the server refused or an answer that stayed unreadable; below it, such items are "
        "marked in skills_status and counted.")

    @model_validator(mode="after")
    def _check_backend(self) -> AnnotateConfig:
        if self.backend == "labels":
            if self.labels.label_field is None:
                raise ValueError("backend 'labels' needs labels.label_field (the corpus field holding each item's label)")
            if self.llm is not None:
                raise ValueError("backend 'labels' asks no model: remove the 'llm' section")
        elif self.backend != "embedding":
            if self.llm is None and not (self.backend == "distilled" and self.distilled.train_labels):
                raise ValueError(f"backend {self.backend!r} needs an 'llm' section (model, ...)"
                                 + (" or distilled.train_labels" if self.backend == "distilled" else ""))
            if self.llm is not None and self.backend != "distilled" and self.llm.kind != self.backend:  # distilled: any LLM kind
                raise ValueError(f"llm.kind is {self.llm.kind!r} but backend is {self.backend!r}")
        if self.anchor.label_field is not None and self.backend == "labels":
            raise ValueError("anchor goes with a backend that walks the tree (embedding, a chat model, distilled); "
                             "backend 'labels' reads every decision from its own label field")
        return self

    def sampling(self) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens,
            n=1,
            seed=self.seed,
            chat_template_kwargs=dict(self.chat_template_kwargs),
        )

    def public_dict(self) -> dict[str, Any]:
        """The config as written to manifests: no API key, ever."""
        d = self.model_dump(mode="json")
        if d.get("llm"):
            d["llm"].pop("api_key", None)
        # Sections only one backend reads: left out for the others, so that adding them changed
        # no existing recipe's fingerprint (and their defaults never will).
        if self.backend != "distilled":
            d.pop("distilled", None)
        else:  # settings added later, left out at their defaults (older runs' fingerprints stand)
            for key, default in (("train_labels", None), ("features", "minilm")):
                if d["distilled"].get(key) == default:
                    d["distilled"].pop(key)
        if self.anchor.label_field is None:
            d.pop("anchor", None)
        if self.backend != "labels":
            d.pop("labels", None)
        return d

"""Settings of `skilldistill tree build` (``TreeBuildConfig``). Light: no stage code here."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..llm.base import BackendConfig, SamplingParams


class TreeBuildConfig(BaseModel):
    """How a skill tree is induced from a corpus: who proposes chains, how they are read, merged and capped."""

    model_config = ConfigDict(extra="forbid")

    llm: BackendConfig = Field(..., description="The chat model that proposes each item's skill chains (kind openai or vllm).")
    items: int | None = Field(
        None, ge=1, description="Items asked: a seeded uniform sample of the corpus of this size (default: every item). "
        "A tree needs a few hundred to a few thousand, not a 100K corpus.")
    seed: int = Field(0, description="Seed of the item sample (and of sampled answers).")
    root: str = Field("Skills", min_length=1, description="The root's name.")
    strip_leading: list[str] = Field(
        default_factory=lambda: ["Root", "Skills", "Mathematics", "Math", "Maths"],
        description="Leading chain parts dropped (compared ignoring case and spacing): a model often starts every "
        "chain with its domain's name, which would make one top-level node holding everything. The root's name "
        "is always dropped too.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature of the proposals (0: greedy).")
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(384, ge=16, description="Answer budget per item.")
    chat_template_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Passed to the chat template, e.g. {enable_thinking: false}.")
    max_chars: int = Field(4000, ge=100, description="Characters of the problem, and of the solution, shown to the model.")
    max_chains: int = Field(8, ge=1, description="Chains kept per item (one per solution step); further lines are dropped and counted.")
    max_depth: int = Field(4, ge=1, le=16, description="Levels below the root; a longer chain is cut to its first max_depth parts (counted).")
    max_name_chars: int = Field(80, ge=8, description="A chain with a longer node name is dropped (counted): a name is a short skill, not prose.")
    merge_threshold: float = Field(
        0.85, gt=0, le=1, description="Sibling names whose MiniLM embeddings have cosine similarity at least this "
        "are one node (named as the more frequent one); 1: only names equal ignoring case and spacing merge.")
    max_children: int = Field(12, ge=2, description="At most this many children per node (the root included): the most frequent are kept.")
    overflow: Literal["similar", "other"] = Field(
        "similar", description="Children beyond max_children: 'similar' folds each into its most similar kept sibling "
        "(its items and subtree join it), 'other' into one 'Other' node (one of the max_children).")
    min_count: int = Field(2, ge=1, description="A node with fewer items is dropped: its items' chains stop at its parent (counted).")
    embedding_model: str | None = Field(None, description="sentence-transformers model for the name similarity; default: the bundled all-MiniLM-L6-v2.")
    max_failed_share: float = Field(
        0.2, ge=0, le=1, description="The stage fails (nothing written but the proposal cache) when more than this share "
        "of the asked items has no usable chain (a refused request, or an answer with no readable chain line).")

    @model_validator(mode="after")
    def _check_backend(self) -> TreeBuildConfig:
        if self.llm.kind not in ("openai", "vllm"):
            raise ValueError(f"tree build asks an openai or vllm backend, not {self.llm.kind!r}")
        return self

    def sampling(self) -> SamplingParams:
        # sampled answers are seeded (a rerun with a fresh cache gets them again); greedy ones need no
        # seed, so that another sample seed reuses the answers of the items both samples hold
        return SamplingParams(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens, n=1,
                              seed=self.seed if self.temperature > 0 else None,
                              chat_template_kwargs=dict(self.chat_template_kwargs))

    def public_dict(self) -> dict[str, Any]:
        """The config as written to manifests: no API key, ever."""
        d = self.model_dump(mode="json")
        d["llm"].pop("api_key", None)
        return d

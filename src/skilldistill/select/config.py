"""Config of ``skilldistill select`` and the names of the files it writes (light: pydantic and
the format config only)."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ..format.config import ExampleFormat

Strategy = Literal["random", "skill", "skill-quota", "forced", "difficulty", "all", "length", "diversity", "loss",
                   "less"]
Accuracy = Literal["smoothed", "raw"]
CorrectPortionScope = Literal["budget", "leaf"]
UnprofiledLeaves = Literal["ancestor", "exclude"]
LengthUnit = Literal["chars", "tokens"]
DiversityStratify = Literal["none", "top_level"]
LossDevice = Literal["auto", "cpu", "cuda"]
LessParams = Literal["lora", "last_layers"]
LessTarget = Literal["weak_skills", "dev"]

# The files of a selection folder.
SELECTION = "selection.parquet"
REPORT = "report.json"
PLOT = "distribution.png"
LEAF_TABLE = "leaf_distribution.csv"
EMBEDDINGS = "question_embeddings.npz"  # the diversity strategy's question embeddings, reused by a rerun
ITEM_LOSSES = "item_losses.jsonl"  # the loss strategy's per-item losses (append-only), reused by a rerun
ITEM_GRADIENTS = "item_gradients"  # the less strategy's per-item gradient features (index + shards), reused by a rerun

MAX_BUDGET = 10**9  # items: far above any SFT set, and what the quota arithmetic handles exactly
MAX_SEED = 2**63 - 1
MAX_WEIGHT = 1e300  # w_max ** temperature: the largest leaf weight, still finite summed over leaves
DEFAULT_LOSS_MAX_LENGTH = 4096  # tokens of an example the loss strategy scores, without max_tokens


# Settings that can only refuse a selection, never change one.
CHECK_ONLY_FIELDS = {"min_profile_overlap"}
# Where and how fast the loss pass runs, not what it selects (as a backend's device and batch_size):
# never in the fingerprint, so moving it to a GPU or changing the batch reruns nothing.
RUN_ONLY_FIELDS = {"loss_device", "loss_batch_size", "less_device", "less_batch_size"}
# Settings added later, left out of the fingerprint at their default (what selections made before
# them did), so recipes and run folders made before them keep their fingerprint.
LATER_FIELD_DEFAULTS: dict[str, Any] = {
    "length_unit": "chars", "diversity_stratify": "none", "loss_model": None, "loss_gguf_file": None,
    "loss_device": "auto", "loss_batch_size": 8, "loss_max_length": None, "loss_band": None,
    "less_model": None, "less_gguf_file": None, "less_device": "auto", "less_batch_size": 8, "less_max_length": None,
    "less_params": "lora", "less_lora_rank": 8, "less_layers": 1, "less_dim": 8192, "less_seed": 0,
    "less_target": "weak_skills", "less_target_file": None, "less_weak_share": 0.2, "less_weak_accuracy": None,
}


class SelectConfig(BaseModel):
    """Stage config of ``skilldistill select``."""

    model_config = ConfigDict(extra="forbid")

    strategy: Strategy = Field("skill", description="random | skill | skill-quota | forced | difficulty | all | "
                               "length | diversity | loss | less.")
    budget: int = Field(1000, ge=1, le=MAX_BUDGET, description="Number of unique items to select.")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Random seed (every strategy is reproducible from it).")
    temperature: float = Field(1.0, gt=0, le=100, allow_inf_nan=False,
                               description="T in w = min((1/acc)**T, w_max**T).")
    w_max: float = Field(1000.0, ge=1, allow_inf_nan=False,
                         description="Weight cap before the power T; acc == 0 gets w_max**T (at most 1e300).")
    accuracy: Accuracy = Field("smoothed", description="Profile field used as the leaf accuracy: smoothed | raw.")
    min_profile_overlap: float = Field(
        0.5, ge=0, le=1, allow_inf_nan=False, description="Share of the pool's leaves (with eligible items) that must "
        "be in the skill profile, themselves or through an ancestor; below it the profile is refused (made on another "
        "tree). 0 turns the check off.")
    correct_portion: float | None = Field(
        None, ge=0, le=1, allow_inf_nan=False,
        description="Share of the budget taken from items the student already solved (needs the item profile)."
    )
    correct_portion_scope: CorrectPortionScope = Field(
        "budget", description="budget: the share over the whole selection; leaf: each leaf's items cut to a balanced "
        "subset first (the authors' reverse_mapping_with_score.py), then drawn as usual.")
    max_depth: int | None = Field(None, ge=1, le=64, description="Cut chains to this depth before leaves are computed "
                                  "(the authors: 5, 10, 15 on EvalTree, 1 on skill_mix).")
    unprofiled_leaves: UnprofiledLeaves = Field(
        "ancestor", description="A leaf without a graded item: takes its nearest profiled ancestor's accuracy "
        "(ancestor), or is left out of the distribution (exclude; the authors, with accuracy: raw).")
    only_skill: str | None = Field(None, description="Draw only from this leaf: its name, or its whole chain 'A->b'.")
    difficulty_field: str = Field("pass_rate_72b_tir", description="difficulty strategy: the pass-rate field "
                                  "(a column, or a key of the meta JSON).")
    difficulty_range: tuple[float, float] = Field((0.25, 0.625), description="difficulty strategy: inclusive pass-rate range.")
    length_unit: LengthUnit = Field(
        "chars", description="length strategy: response length in characters, or in student tokens (tokens: needs "
        "the tokenizer; the response text alone, no chat template).")
    diversity_stratify: DiversityStratify = Field(
        "none", description="diversity strategy: none (k-center over the whole pool), or top_level (the budget split "
        "evenly over the top-level skills of the items' first chains, k-center inside each).")
    loss_model: str | None = Field(
        None, description="loss strategy: the model scoring the items (hub id, folder or .gguf file); default: the "
        "student tokenizer's model (tokenizer, gguf_file); a recipe fills in its student.")
    loss_gguf_file: str | None = Field(None, description="loss strategy: GGUF file name inside the loss_model folder.")
    loss_device: LossDevice = Field("auto", description="loss strategy: where the loss pass runs (auto: cuda when "
                                    "visible; bfloat16 there, float32 on cpu).")
    loss_batch_size: int = Field(8, ge=1, le=4096, description="loss strategy: examples per forward pass.")
    loss_max_length: int | None = Field(
        None, ge=16, le=10**7, description="loss strategy: tokens of each formatted example scored, the rest cut "
        f"(default: max_tokens when set, else {DEFAULT_LOSS_MAX_LENGTH}).")
    loss_band: tuple[float, float] | None = Field(
        None, description="loss strategy: draw uniformly among the items whose loss lies between these quantiles of "
        "the pool's losses (inclusive, 0 <= low < high <= 1); default: the highest losses first.")
    less_model: str | None = Field(
        None, description="less strategy: the model whose gradients make the features (hub id, folder or .gguf "
        "file); default: the student tokenizer's model (tokenizer, gguf_file); a recipe fills in its student.")
    less_gguf_file: str | None = Field(None, description="less strategy: GGUF file name inside the less_model folder.")
    less_device: LossDevice = Field("auto", description="less strategy: where the gradient pass runs (auto: cuda when "
                                    "visible; bfloat16 there, float32 on cpu).")
    less_batch_size: int = Field(8, ge=1, le=4096, description="less strategy: examples per forward and backward pass.")
    less_max_length: int | None = Field(
        None, ge=16, le=10**7, description="less strategy: tokens of each formatted example, the rest cut (default: "
        f"max_tokens when set, else {DEFAULT_LOSS_MAX_LENGTH}).")
    less_params: LessParams = Field(
        "lora", description="less strategy: the parameters whose gradient is the feature: lora (rank less_lora_rank "
        "adapters on every layer's attention projections, B = 0) or last_layers (every linear weight of the last "
        "less_layers layers).")
    less_lora_rank: int = Field(8, ge=1, le=1024, description="less strategy: LoRA rank (less_params: lora).")
    less_layers: int = Field(1, ge=1, le=1024, description="less strategy: decoder layers counted from the last "
                             "(less_params: last_layers).")
    less_dim: int = Field(8192, ge=16, le=65536, description="less strategy: dimensions of the random projection "
                          "(LESS: 8192).")
    less_seed: int = Field(0, ge=0, le=MAX_SEED, description="less strategy: seed of the LoRA A matrices and the "
                           "projection (not the selection's seed: another seed or budget reuses the features).")
    less_target: LessTarget = Field(
        "weak_skills", description="less strategy: the target set: weak_skills (the pool's items under the "
        "student's weakest leaves, by the skill profile) or dev (the items of less_target_file).")
    less_target_file: str | None = Field(
        None, validate_default=True, description="less strategy: development items (.jsonl or .parquet with question "
        "and response; less_target: dev).")
    less_weak_share: float = Field(0.2, gt=0, le=1, allow_inf_nan=False, description="less strategy: the weakest "
                                   "share of the leaves with eligible items (by profile accuracy) is the target.")
    less_weak_accuracy: float | None = Field(
        None, ge=0, le=1, allow_inf_nan=False, description="less strategy: instead of less_weak_share, the leaves "
        "whose profile accuracy is at most this are the target.")
    max_tokens: int | None = Field(None, ge=1, le=10**7, description="Drop items whose formatted example is longer (student tokenizer).")
    tokenizer: str | None = Field(None, description="Student tokenizer for max_tokens: hub id, folder or .gguf file.")
    gguf_file: str | None = Field(None, description="GGUF file name inside the tokenizer folder.")
    example: ExampleFormat = Field(default_factory=ExampleFormat, description="Example format measured by max_tokens.")
    exclude: list[str] = Field(default_factory=list, description="Item ids, or files (benchmarks: by normalised question; .txt: ids).")
    exclude_selections: list[str] = Field(
        default_factory=list, description="Earlier selections (selection.parquet, or the folder holding one): their "
        "items are never selected again (a closed-loop round, or a round run by hand).")

    @field_validator("difficulty_range")
    @classmethod
    def _range_in_unit_interval(cls, v: tuple[float, float]) -> tuple[float, float]:
        lo, hi = v
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi <= 1):
            raise ValueError(f"must be 0 <= low <= high <= 1, got {list(v)}")
        return v

    @field_validator("loss_band")
    @classmethod
    def _band_of_quantiles(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is None:
            return v
        lo, hi = v
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi <= 1):
            raise ValueError(f"must be quantiles 0 <= low < high <= 1, got {list(v)}")
        return v

    @field_validator("less_target_file")
    @classmethod
    def _dev_target_has_a_file(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None and info.data.get("less_target") == "dev":
            raise ValueError("less_target 'dev' needs the development items' file (less_target_file)")
        return v

    def less_scorer(self) -> tuple[str | None, str | None]:
        """The model the less strategy takes gradients of and its GGUF file: ``less_model``, else the student
        tokenizer's."""
        if self.less_model is not None:
            return self.less_model, self.less_gguf_file
        return self.tokenizer, self.gguf_file

    def less_length(self) -> int:
        """Tokens of each example the less strategy takes the gradient of."""
        if self.less_max_length is not None:
            return self.less_max_length
        return self.max_tokens if self.max_tokens is not None else DEFAULT_LOSS_MAX_LENGTH

    def loss_scorer(self) -> tuple[str | None, str | None]:
        """The model the loss strategy scores with and its GGUF file: ``loss_model``, else the student tokenizer's."""
        if self.loss_model is not None:
            return self.loss_model, self.loss_gguf_file
        return self.tokenizer, self.gguf_file

    def loss_length(self) -> int:
        """Tokens of each example the loss strategy scores."""
        if self.loss_max_length is not None:
            return self.loss_max_length
        return self.max_tokens if self.max_tokens is not None else DEFAULT_LOSS_MAX_LENGTH

    def fingerprint_dict(self) -> dict[str, Any]:
        """The config as the stage and the pipeline fingerprint it: checks that only refuse
        (``min_profile_overlap``) and where the loss and gradient passes run (``RUN_ONLY_FIELDS``) leave it out, and so do later
        settings at their default
        (``LATER_FIELD_DEFAULTS``), so run folders made before them stay done."""
        d = self.model_dump(mode="json", exclude=CHECK_ONLY_FIELDS | RUN_ONLY_FIELDS)
        return {k: v for k, v in d.items() if not (k in LATER_FIELD_DEFAULTS and v == LATER_FIELD_DEFAULTS[k])}

    @model_validator(mode="after")
    def _weight_cap_is_finite(self) -> SelectConfig:
        if self.temperature * math.log10(self.w_max) > math.log10(MAX_WEIGHT):
            raise ValueError(f"w_max ** temperature must be at most {MAX_WEIGHT:g} (the largest leaf weight), got "
                             f"{self.w_max:g} ** {self.temperature:g}")
        return self

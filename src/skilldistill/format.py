"""Stage 4: turn selected items into chat examples for SFT, plain or skill-aware.

Launch::

    skilldistill format runs/x/select/skill/selection.parquet --out runs/x/format/skill \\
        --style skill-aware --tokenizer Qwen/Qwen3-4B --max-length 8192

Each example is ``[system?, user, assistant]``. The user turn is the problem followed by
the same instruction the student saw when it was profiled and will see at evaluation.
The assistant turn is the teacher response unchanged (``plain``) or prefixed with the
skill plan (``skill-aware``, the paper's form)::

    Skills:
    Algebra->solving equations
    Pre-Algebra->fractions
    <think>...</think> final solution

Exports: ``train.jsonl`` (``messages`` rows, what TRL's ``SFTTrainer`` takes), ``hf/``
(``datasets.Dataset.save_to_disk``) and ``llamafactory/`` (sharegpt JSON plus its
``dataset_info.json`` entry). Over-long examples (student tokenizer, chat template
applied) are dropped by default and listed in ``report.json``, never truncated.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .artifacts import (
    manifest_matches,
    read_json,
    sha256_file,
    write_json,
    write_manifest,
    write_parquet,
    write_text,
)
from .errors import ConfigError, InputError

# The instruction of profiling and evaluation: one definition for the three stages.
from .generate import DEFAULT_INSTRUCTION
from .textutil import (
    DEFAULT_PROMPT_TEMPLATE,
    check_prompt_template,
    check_safe_name,
    render_user_prompt,
)
from .tree import CHAIN_SEP

log = logging.getLogger(__name__)

SKILLS_HEADER = "Skills:"
THINK_OPEN = "<think>"

Style = Literal["plain", "skill-aware"]
Depth = Literal["full", "top", "leaf"]
ExportKind = Literal["jsonl", "hf", "llamafactory"]


def build_user_prompt(question: str, instruction: str | None = DEFAULT_INSTRUCTION,
                      template: str = DEFAULT_PROMPT_TEMPLATE) -> str:
    """The user turn: ``template`` with the problem and the instruction (the bare problem
    when there is no instruction).

    The same form as ``GenerationConfig`` in :mod:`skilldistill.generate` renders for
    profiling and evaluation, so the student sees one prompt at every stage.
    """
    return render_user_prompt(question, instruction, template)


class ExampleFormat(BaseModel):
    """How one item becomes a chat example (shared with selection's length filter)."""

    model_config = ConfigDict(extra="forbid")

    style: Style = Field("skill-aware", description="plain: response unchanged; skill-aware: skill plan first.")
    system_prompt: str | None = Field(None, description="Optional system turn.")
    instruction: str | None = Field(DEFAULT_INSTRUCTION, description="Appended to the problem in the user turn.")
    prompt_template: str = Field(DEFAULT_PROMPT_TEMPLATE, description="The user turn: {question} and {instruction}; "
                                 "the paper's authors: '{instruction}\\n\\nQuestion: {question}'.")
    depth: Depth = Field("full", description="Chain window in the plan: full chain, top level only, or leaf only.")
    separator: str = Field(CHAIN_SEP, min_length=1, description="Joins the levels of a chain in the plan.")
    plan_position: Literal["before_think", "inside_think"] = Field(
        "before_think",
        description="before_think (the paper): plan, then the response with its <think> block; "
        "inside_think: the plan opens the <think> block (for chat templates that drop text before <think>).",
    )
    min_shown_depth: int = Field(0, ge=0, description="Plan window start: chain[min:max] (0: from the top skill).")
    max_shown_depth: int | None = Field(None, ge=1, description="Plan window end, exclusive (None: to the leaf); "
                                        "the authors' sub_chain[min:max], default (0, 5).")
    short_chains: Literal["keep", "drop"] = Field(
        "keep", description="A chain shorter than max_shown_depth: keep the part it has, or drop it (the authors' "
        "scripts; with their (0, 5) every skill_mix chain is dropped: an empty plan, reported).")
    short_names: str | None = Field(None, description="JSON map skill name -> short name (or a list: its first "
                                    "entry), e.g. the authors' capability_to_distinction.json.")

    @model_validator(mode="after")
    def _check_window(self) -> ExampleFormat:
        if self.max_shown_depth is not None and self.max_shown_depth <= self.min_shown_depth:
            raise ValueError(f"max_shown_depth ({self.max_shown_depth}) must be above min_shown_depth ({self.min_shown_depth})")
        return self

    @field_validator("prompt_template")
    @classmethod
    def _check_template(cls, v: str) -> str:
        return check_prompt_template(v)


def chain_window(chain: Sequence[str], depth: Depth) -> tuple[str, ...]:
    """The part of a chain shown in the plan."""
    chain = tuple(chain)
    if depth == "top":
        return chain[:1]
    if depth == "leaf":
        return chain[-1:]
    return chain


def skill_plan_lines(
    chains: Sequence[Sequence[str]] | None, depth: Depth = "full", separator: str = CHAIN_SEP, *,
    window: tuple[int, int | None] = (0, None), short_chains: str = "keep", names: dict[str, str] | None = None,
) -> list[str]:
    """One line per chain, duplicates removed, order kept: the levels ``window`` (start,
    exclusive end) of the chain (a chain shorter than the end kept in part, or dropped with
    ``short_chains="drop"``), then the ``depth`` window, each name through ``names``."""
    lines: list[str] = []
    seen: set[str] = set()
    lo, hi = window
    for chain in chains or ():
        if not chain:
            continue
        if hi is not None and len(chain) < hi and short_chains == "drop":
            continue
        shown = chain_window(tuple(chain)[lo:hi], depth)
        if not shown:
            continue
        line = separator.join(names.get(n, n) for n in shown) if names else separator.join(shown)
        if line not in seen:
            seen.add(line)
            lines.append(line)
    return lines


def plan_chains_shown(chains: Sequence[Sequence[str]] | None, fmt: ExampleFormat) -> list[tuple[str, ...]]:
    """The levels of each chain the plan shows (window and depth applied; long names)."""
    lo, hi = fmt.min_shown_depth, fmt.max_shown_depth
    out = []
    for chain in chains or ():
        if chain and not (hi is not None and len(chain) < hi and fmt.short_chains == "drop"):
            shown = chain_window(tuple(chain)[lo:hi], fmt.depth)
            if shown:
                out.append(shown)
    return out


def plan_lines(chains: Sequence[Sequence[str]] | None, fmt: ExampleFormat) -> list[str]:
    """The plan lines of ``fmt`` (window, depth, separator, short names)."""
    return skill_plan_lines(
        chains, fmt.depth, fmt.separator, window=(fmt.min_shown_depth, fmt.max_shown_depth),
        short_chains=fmt.short_chains, names=load_name_map(fmt.short_names) if fmt.short_names else None,
    )


def load_name_map(path: str | Path) -> dict[str, str]:
    """A ``{name: short name}`` JSON map (a list value: its first entry), checked and cached."""
    p = Path(path)
    if not p.exists():
        raise InputError("short-names map not found", file=p)
    st = p.stat()
    return _load_name_map(str(p.resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)
def _load_name_map(path: str, _mtime: int, _size: int) -> dict[str, str]:
    import json

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"not a JSON file: {e}", file=path) from None
    if not isinstance(data, dict):
        raise InputError(f"must be a JSON object of name -> short name, got {type(data).__name__}", file=path)
    out: dict[str, str] = {}
    for k, v in data.items():
        short = v[0] if isinstance(v, list) and v else v
        if not isinstance(short, str) or not short.strip():
            raise InputError(f"the short name of {k[:80]!r} must be a non-empty string (or a list of them)",
                             file=path, field=k[:80])
        if "\n" in short or "\r" in short or CHAIN_SEP in short:
            raise InputError(f"the short name {short[:80]!r} holds a line break or {CHAIN_SEP!r}: the plan is one "
                             "chain per line", file=path, field=k[:80])
        out[k] = short.strip()
    return out


def assistant_target(response: str, chains: Sequence[Sequence[str]] | None, fmt: ExampleFormat) -> str:
    """The assistant turn: the response, or ``Skills:`` + one chain per line + response."""
    if fmt.style == "plain":
        return response
    lines = plan_lines(chains, fmt)
    if not lines:
        return response  # nothing to plan with: the item is kept plain (counted in the report)
    plan = SKILLS_HEADER + "\n" + "\n".join(lines) + "\n"
    if fmt.plan_position == "inside_think":
        stripped = response.lstrip()
        if stripped.startswith(THINK_OPEN):
            rest = stripped[len(THINK_OPEN):]
            return THINK_OPEN + "\n" + plan + rest.lstrip("\n")
    return plan + response


def build_messages(question: str, response: str, chains: Sequence[Sequence[str]] | None, fmt: ExampleFormat) -> list[dict[str, str]]:
    """``[system?, user, assistant]`` in the role/content form of chat templates."""
    messages = []
    if fmt.system_prompt:
        messages.append({"role": "system", "content": fmt.system_prompt})
    messages.append({"role": "user", "content": build_user_prompt(question, fmt.instruction, fmt.prompt_template)})
    messages.append({"role": "assistant", "content": assistant_target(response, chains, fmt)})
    return messages


# -- tokenizer -----------------------------------------------------------------------
def load_tokenizer(spec: str, gguf_file: str | None = None) -> Any:
    """A Hugging Face tokenizer from a hub id, a local folder, or a ``.gguf`` file path."""
    from transformers import AutoTokenizer

    path = Path(spec)
    if gguf_file is None and path.suffix.lower() == ".gguf" and path.is_file():
        spec, gguf_file = str(path.parent), path.name
    try:
        if gguf_file:
            return AutoTokenizer.from_pretrained(spec, gguf_file=gguf_file)
        return AutoTokenizer.from_pretrained(spec)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot load tokenizer {spec!r}{f' ({gguf_file})' if gguf_file else ''}: {e}") from e


def count_tokens(tokenizer: Any, conversations: Sequence[list[dict[str, str]]], batch_size: int = 32,
                 chat_template: str = "auto") -> list[int]:
    """Token count of each conversation as the trainer sees it: rendered with the training
    chat template the train stage picks (``chat_template`` as in ``TrainConfig``), with the
    model's implicit system turn added the way the train stage adds it."""
    from .train import implicit_system_prompt, resolve_chat_template, with_implicit_system

    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError("the tokenizer has no chat template: cannot measure chat examples")
    template, name = resolve_chat_template(tokenizer, chat_template)
    system = implicit_system_prompt(tokenizer) if name == "chatml" else None
    out: list[int] = []
    for start in range(0, len(conversations), batch_size):
        batch = [with_implicit_system(list(c), system) for c in conversations[start:start + batch_size]]
        enc = tokenizer.apply_chat_template(batch, tokenize=True, return_dict=True, chat_template=template)
        out.extend(len(ids) for ids in enc["input_ids"])
    return out


# -- the stage -------------------------------------------------------------------------
class FormatConfig(ExampleFormat):
    """Stage config of ``skilldistill format``."""

    model_config = ConfigDict(extra="forbid")

    tokenizer: str | None = Field(None, description="Student tokenizer: hub id, folder or .gguf file.")
    gguf_file: str | None = Field(None, description="GGUF file name inside the tokenizer folder.")
    max_length: int | None = Field(None, ge=1, description="Token limit of one example (chat template applied).")
    overlong: Literal["drop", "keep"] = Field("drop", description="What to do with examples over max_length.")
    exports: list[ExportKind] = Field(default_factory=lambda: ["jsonl", "hf", "llamafactory"])
    dataset_name: str = Field("skilldistill", min_length=1, description="Name of the LLaMA-Factory dataset entry.")

    @field_validator("dataset_name")
    @classmethod
    def _safe_dataset_name(cls, v: str) -> str:
        return check_safe_name(v, "dataset_name")

    def example_format(self) -> ExampleFormat:
        return ExampleFormat(**{k: getattr(self, k) for k in ExampleFormat.model_fields})


@dataclass
class FormatResult:
    out_dir: Path
    n_input: int
    n_written: int
    n_dropped_overlong: int
    report: dict[str, Any]
    skipped: bool = False


TRAIN_JSONL = "train.jsonl"
HF_DIR = "hf"
LF_DIR = "llamafactory"
LENGTHS = "examples.parquet"
REPORT = "report.json"


def run_format(
    selection_parquet: str | Path,
    out_dir: str | Path,
    config: FormatConfig | None = None,
    *,
    tokenizer: Any = None,
    force: bool = False,
    progress: bool = True,
) -> FormatResult:
    """Format ``selection_parquet`` (id, question, response, skills) into SFT exports in ``out_dir``.

    ``tokenizer``: an already loaded tokenizer (else ``config.tokenizer`` is loaded when
    token counts are needed). Skips the work when ``out_dir`` holds a matching manifest.
    """
    from .artifacts import FolderLock

    with FolderLock(out_dir, what="format"):
        return _run_format_unlocked(selection_parquet, out_dir, config, tokenizer=tokenizer, force=force, progress=progress)


def _run_format_unlocked(
    selection_parquet: str | Path,
    out_dir: str | Path,
    config: FormatConfig | None = None,
    *,
    tokenizer: Any = None,
    force: bool = False,
    progress: bool = True,
) -> FormatResult:
    """Format ``selection_parquet`` (id, question, response, skills) into SFT exports in ``out_dir``.

    ``tokenizer``: an already loaded tokenizer (else ``config.tokenizer`` is loaded when
    token counts are needed). Skips the work when ``out_dir`` holds a matching manifest.
    """
    config = config or FormatConfig()
    t0 = time.perf_counter()
    src = Path(selection_parquet)
    if src.is_dir():
        src = src / "selection.parquet"
    if not src.exists():
        raise InputError("selection not found", file=src)
    out = Path(out_dir)
    if config.max_length is not None and tokenizer is None and config.tokenizer is None:
        raise ConfigError("max_length needs a student tokenizer (--tokenizer)")
    cfg_json = config.model_dump(mode="json")
    inputs = {"selection": sha256_file(src)}
    if config.short_names:
        load_name_map(config.short_names)  # a bad map fails before any work
        inputs["short_names"] = sha256_file(config.short_names)
    if not force and manifest_matches(out, config=cfg_json, inputs=inputs) and (out / REPORT).exists():
        report = read_json(out / REPORT)
        c = report["counts"]
        return FormatResult(out, c["input"], c["written"], c["dropped_overlong"], report, skipped=True)

    fmt = config.example_format()
    rows = _read_rows(src, need_skills=config.style == "skill-aware")
    conversations: list[list[dict[str, str]]] = []
    no_plan = 0
    dropped_short = 0  # items whose every chain was shorter than the window
    for r in rows:
        msgs = build_messages(r["question"], r["response"], r["skills"], fmt)
        if config.style == "skill-aware" and not plan_lines(r["skills"], fmt):
            no_plan += 1
            if r["skills"] and config.short_chains == "drop":
                dropped_short += 1
        conversations.append(msgs)

    n_tokens: list[int | None] = [None] * len(rows)
    if tokenizer is None and config.tokenizer is not None:
        tokenizer = load_tokenizer(config.tokenizer, config.gguf_file)
    if tokenizer is not None:
        n_tokens = list(_count_with_progress(tokenizer, conversations, progress))

    keep: list[bool] = []
    dropped: list[dict[str, Any]] = []
    for r, n in zip(rows, n_tokens, strict=True):
        over = config.max_length is not None and n is not None and n > config.max_length
        if over and config.overlong == "drop":
            keep.append(False)
            dropped.append({"id": r["id"], "n_tokens": n})
        else:
            keep.append(True)
    over_kept = sum(
        1 for n, k in zip(n_tokens, keep, strict=True)
        if k and config.max_length is not None and n is not None and n > config.max_length
    )

    kept_idx = [i for i, k in enumerate(keep) if k]
    out.mkdir(parents=True, exist_ok=True)
    records = [{"id": rows[i]["id"], "messages": conversations[i]} for i in kept_idx]
    if "jsonl" in config.exports:
        _write_jsonl(out / TRAIN_JSONL, records)
    if "hf" in config.exports:
        _write_hf(out / HF_DIR, records, [n_tokens[i] for i in kept_idx])
    if "llamafactory" in config.exports:
        _write_llamafactory(out / LF_DIR, records, config.dataset_name)

    write_parquet(out / LENGTHS, pa.table({
        "id": pa.array([r["id"] for r in rows], pa.string()),
        "n_tokens": pa.array(n_tokens, pa.int64()),
        "kept": pa.array(keep, pa.bool_()),
        "skill_plan": pa.array(
            ["\n".join(plan_lines(r["skills"], fmt)) for r in rows], pa.string()
        ),
    }))

    if config.short_names and config.style == "skill-aware":
        names = load_name_map(config.short_names)
        shown = [n for r in rows for c in plan_chains_shown(r["skills"], fmt) for n in c]
        short_report = {"map": config.short_names, "names_shown": len(shown),
                        "shortened": sum(1 for n in shown if n in names),
                        "not_in_map": sorted({n for n in shown if n not in names})[:20]}
        if short_report["shortened"] < len(shown):
            log.warning("%d of %d names shown in plans are not in %s: shown in full", len(shown) - short_report["shortened"],
                        len(shown), config.short_names)
    kept_tokens = sorted(n_tokens[i] for i in kept_idx if n_tokens[i] is not None)
    report = {
        "style": config.style,
        "counts": {
            "input": len(rows),
            "written": len(kept_idx),
            "dropped_overlong": len(dropped),
            "kept_overlong": over_kept,
            "skill_aware_without_skills": no_plan,
            "plan_emptied_by_window": dropped_short,
        },
        "max_length": config.max_length,
        "tokens": _token_stats(kept_tokens),
        "dropped": dropped,
        "exports": {k: _export_path(k, config.dataset_name) for k in config.exports},
        "example": conversations[kept_idx[0]] if kept_idx else None,
    }
    if config.short_names and config.style == "skill-aware":
        report["short_names"] = short_report
    if dropped:
        log.warning("dropped %d over-long example(s) (> %d tokens); see %s", len(dropped), config.max_length, out / REPORT)
    if dropped_short:
        log.warning("%d item(s) lost every chain to the window (chains shorter than max_shown_depth %s are "
                    "dropped with short_chains: drop): formatted without a plan", dropped_short, config.max_shown_depth)
    if no_plan - dropped_short:
        log.warning("%d item(s) have no skills: formatted without a plan", no_plan - dropped_short)
    write_json(out / REPORT, report)
    wall = time.perf_counter() - t0
    write_manifest(out, config=cfg_json, inputs=inputs, counts=report["counts"], wall_time_s=round(wall, 3))
    return FormatResult(out, len(rows), len(kept_idx), len(dropped), report)


def _export_path(kind: str, name: str) -> str:
    return {"jsonl": TRAIN_JSONL, "hf": HF_DIR, "llamafactory": f"{LF_DIR}/{name}.json"}[kind]


def _count_with_progress(tokenizer: Any, conversations: list, progress: bool, batch_size: int = 32):
    from .progress import StageProgress

    with StageProgress(disable=not progress, transient=True) as bar:
        task = bar.add_task("counting tokens", total=len(conversations))
        for start in range(0, len(conversations), batch_size):
            batch = conversations[start:start + batch_size]
            yield from count_tokens(tokenizer, batch, batch_size)
            bar.advance(task, len(batch))


def _token_stats(values: list[int]) -> dict[str, Any] | None:
    if not values:
        return None

    def pct(q: float) -> int:
        return values[min(len(values) - 1, int(q * (len(values) - 1) + 0.5))]

    return {
        "count": len(values), "min": values[0], "mean": round(sum(values) / len(values), 1),
        "p50": pct(0.5), "p95": pct(0.95), "max": values[-1], "total": sum(values),
    }


def _read_rows(src: Path, *, need_skills: bool) -> list[dict[str, Any]]:
    schema = pq.read_schema(src)
    need = ["id", "question", "response"] + (["skills"] if need_skills else [])
    for col in need:
        if col not in schema.names:
            raise InputError(f"missing column {col!r}", file=src, field=col)
    cols = ["id", "question", "response"] + (["skills"] if "skills" in schema.names else [])
    table = pq.read_table(src, columns=cols)
    data = table.to_pydict()
    rows = []
    for i in range(table.num_rows):
        rid = data["id"][i]
        for col in ("id", "question", "response"):
            v = data[col][i]
            if not isinstance(v, str) or not v.strip():
                raise InputError("empty or missing value", file=src, row=i + 1, field=col)
        skills = data["skills"][i] if "skills" in data else None
        rows.append({"id": rid, "question": data["question"][i], "response": data["response"][i], "skills": skills or []})
    return rows


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    from .artifacts import write_jsonl

    write_jsonl(path, records)


def _write_hf(path: Path, records: list[dict[str, Any]], n_tokens: list[int | None]) -> None:
    """``datasets`` folder (save_to_disk), written beside then swapped in, so a crash leaves no half folder."""
    import shutil

    from datasets import Dataset, Features, List, Value

    features = Features({
        "id": Value("string"),
        "messages": List({"role": Value("string"), "content": Value("string")}),
        "n_tokens": Value("int64"),
    })
    ds = Dataset.from_dict(
        {"id": [r["id"] for r in records], "messages": [r["messages"] for r in records], "n_tokens": n_tokens},
        features=features,
    )
    tmp = path.with_name(f".{path.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    import datasets

    was_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # a small folder: its bar would only clutter the console
    try:
        ds.save_to_disk(str(tmp))
    finally:
        if was_on:
            datasets.enable_progress_bars()
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)


_LF_ROLE = {"user": "human", "assistant": "gpt"}


def llamafactory_record(messages: list[dict[str, str]]) -> dict[str, Any]:
    """One sharegpt record: ``conversations`` of human/gpt turns plus an optional ``system``."""
    rec: dict[str, Any] = {"conversations": []}
    for m in messages:
        if m["role"] == "system":
            rec["system"] = m["content"]
        else:
            rec["conversations"].append({"from": _LF_ROLE[m["role"]], "value": m["content"]})
    return rec


def llamafactory_dataset_info(name: str, *, with_system: bool) -> dict[str, Any]:
    columns = {"messages": "conversations"}
    if with_system:
        columns["system"] = "system"
    return {
        name: {
            "file_name": f"{name}.json",
            "formatting": "sharegpt",
            "columns": columns,
            "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"},
        }
    }


def _write_llamafactory(folder: Path, records: list[dict[str, Any]], name: str) -> None:
    import json

    data = [llamafactory_record(r["messages"]) for r in records]
    with_system = any("system" in d for d in data)
    write_text(folder / f"{name}.json", json.dumps(data, ensure_ascii=False, indent=1) + "\n")
    write_json(folder / "dataset_info.json", llamafactory_dataset_info(name, with_system=with_system))


__all__ = [
    "DEFAULT_INSTRUCTION",
    "ExampleFormat",
    "FormatConfig",
    "FormatResult",
    "assistant_target",
    "build_messages",
    "build_user_prompt",
    "chain_window",
    "count_tokens",
    "llamafactory_dataset_info",
    "llamafactory_record",
    "load_tokenizer",
    "run_format",
    "skill_plan_lines",
    "plan_lines",
    "load_name_map",
]

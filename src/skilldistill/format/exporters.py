"""The exports of ``skilldistill format``: TRL ``messages`` JSONL, a ``datasets`` folder, and
LLaMA-Factory's sharegpt JSON with its ``dataset_info.json`` entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..artifacts import write_json, write_jsonl, write_text

TRAIN_JSONL = "train.jsonl"
HF_DIR = "hf"
LF_DIR = "llamafactory"


def export_path(kind: str, name: str) -> str:
    """Where export ``kind`` lies in the output folder (``name``: the LLaMA-Factory dataset)."""
    return {"jsonl": TRAIN_JSONL, "hf": HF_DIR, "llamafactory": f"{LF_DIR}/{name}.json"}[kind]


def write_messages_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    """``train.jsonl``: one ``{"id", "messages"}`` row per example (what TRL's ``SFTTrainer`` takes)."""
    write_jsonl(path, records)


def write_hf_dataset(path: Path, records: list[dict[str, Any]], n_tokens: list[int | None]) -> None:
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


LLAMAFACTORY_ROLE = {"user": "human", "assistant": "gpt"}


def llamafactory_record(messages: list[dict[str, str]]) -> dict[str, Any]:
    """One sharegpt record: ``conversations`` of human/gpt turns plus an optional ``system``."""
    rec: dict[str, Any] = {"conversations": []}
    for m in messages:
        if m["role"] == "system":
            rec["system"] = m["content"]
        else:
            rec["conversations"].append({"from": LLAMAFACTORY_ROLE[m["role"]], "value": m["content"]})
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


def write_llamafactory(folder: Path, records: list[dict[str, Any]], name: str) -> None:
    """``{name}.json`` (sharegpt records) and its ``dataset_info.json`` entry in ``folder``."""
    import json

    data = [llamafactory_record(r["messages"]) for r in records]
    with_system = any("system" in d for d in data)
    write_text(folder / f"{name}.json", json.dumps(data, ensure_ascii=False, indent=1) + "\n")
    write_json(folder / "dataset_info.json", llamafactory_dataset_info(name, with_system=with_system))

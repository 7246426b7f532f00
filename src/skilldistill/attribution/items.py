"""The items `skilldistill annotate` attributes: the corpus file, its rows checked, the text
of each item the deciders read, and the names of the annotated table written of them."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from ..errors import InputError

SKILLS_FILE = "skills.parquet"  # the corpus + ``skills`` (list of chains) + ``skills_status``
SKILLS_STATUS = "skills_status"  # per item: ok | failed | unparseable (its chains rest on incomplete decisions)


def item_text(question: str, response: str | None, max_chars: int = 20_000) -> str:
    """Question + the teacher's final solution (the text after ``</think>`` when there
    is one), each capped at ``max_chars`` characters (the solution as the paper's scripts;
    the question too, so a 10 MB question does not go whole into every prompt)."""
    question = question.strip()[:max_chars]
    solution = ""
    if response:
        if "</think>" in response:
            solution = response.rsplit("</think>", 1)[1]
        else:  # no reasoning block, or a truncated one: drop a dangling opening tag
            solution = response.replace("<think>", "", 1) if response.lstrip().startswith("<think>") else response
        solution = solution.strip()[:max_chars]
    return f"{question.strip()}\n{solution}".strip()


def corpus_file(corpus: str | Path) -> Path:
    """The corpus Parquet: ``corpus`` itself, or ``corpus.parquet`` in that folder."""
    path = Path(corpus)
    if path.is_dir():
        path = path / "corpus.parquet"
    if not path.exists():
        raise InputError("corpus not found", file=path)
    return path


def read_items(table: pa.Table, path: Path, max_chars: int) -> tuple[list[str], list[str]]:
    """(ids, item texts) of the corpus rows; a bad row is an InputError naming it."""
    for col in ("id", "question"):
        if col not in table.column_names:
            raise InputError(f"missing column {col!r} (a corpus needs id and question)", file=path, field=col)
    ids = table.column("id").to_pylist()
    questions = table.column("question").to_pylist()
    responses = table.column("response").to_pylist() if "response" in table.column_names else [None] * len(ids)
    seen: dict[str, int] = {}
    texts = []
    for i, (item_id, q, r) in enumerate(zip(ids, questions, responses, strict=True)):
        if item_id is None or str(item_id) == "":
            raise InputError("empty id", file=path, row=i + 1, field="id")
        item_id = str(item_id)
        if item_id in seen:
            raise InputError(f"duplicate id {item_id!r} (also row {seen[item_id]})", file=path, row=i + 1, field="id")
        seen[item_id] = i + 1
        if not isinstance(q, str) or not q.strip():
            raise InputError("empty or non-text question", file=path, row=i + 1, field="question")
        if r is not None and not isinstance(r, str):
            raise InputError(f"response must be text, got {type(r).__name__}", file=path, row=i + 1, field="response")
        texts.append(item_text(q, r, max_chars))
    return [str(x) for x in ids], texts

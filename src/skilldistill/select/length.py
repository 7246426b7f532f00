"""The ``max_tokens`` filter: an item drawn is formatted and tokenised, and refused if too long.

Lazy: only drawn items are measured, so a 100K pool of long traces is never tokenised in full.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError
from ..format.config import ExampleFormat
from ..format.examples import build_messages
from ..format.tokens import count_tokens, load_tokenizer
from .config import SelectConfig


class LengthCheck:
    """Formats and tokenises one drawn item; accepts it if it fits ``max_tokens``."""

    def __init__(self, table: pa.Table, file: Path, fmt: ExampleFormat, tokenizer: Any, max_tokens: int) -> None:
        self.q = table.column("question")
        self.r = table.column("response")
        self.s = table.column("skills") if "skills" in table.column_names else None
        self.file = file
        self.fmt = fmt
        self.tok = tokenizer
        self.max_tokens = max_tokens
        self.lengths: dict[int, int] = {}

    def __call__(self, i: int) -> bool:
        q, r = self.q[i].as_py(), self.r[i].as_py()
        if not isinstance(r, str) or not r.strip():
            raise InputError("empty or missing value", file=self.file, row=i + 1, field="response")
        if not isinstance(q, str) or not q.strip():
            raise InputError("empty or missing value", file=self.file, row=i + 1, field="question")
        chains = self.s[i].as_py() if self.s is not None else None
        n = count_tokens(self.tok, [build_messages(q, r, chains, self.fmt)])[0]
        self.lengths[i] = n
        return n <= self.max_tokens


def length_check(src: Path, names: Sequence[str], config: SelectConfig, tokenizer: Any) -> LengthCheck | None:
    """The check for ``config.max_tokens`` (None without it); ``tokenizer`` loaded, else ``config.tokenizer``."""
    if config.max_tokens is None:
        return None
    for col in ("question", "response"):
        if col not in names:
            raise InputError(f"missing column {col!r}", file=src, field=col)
    tok = tokenizer if tokenizer is not None else load_tokenizer(config.tokenizer or "", config.gguf_file)
    # The texts must be at hand for any item a draw may hit: this is the one case that
    # keeps pool text in memory (as Arrow buffers, not Python strings).
    text = pq.read_table(src, columns=[c for c in ("question", "response", "skills") if c in names])
    return LengthCheck(text, src, config.example, tok, config.max_tokens)

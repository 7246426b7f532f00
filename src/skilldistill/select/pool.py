"""The pool: exclusions, one streamed scan, and the filters that leave the eligible items.

The pool is read by record batch; only small per-item arrays stay in memory (the leaf index,
exclusion masks, solved flags), never the texts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import ConfigError, InputError
from ..textutil import normalize_question
from ..tree import CHAIN_SEP
from .config import SELECTION, SelectConfig
from .index import LeafIndex, LeafIndexBuilder
from .strategies.difficulty import pass_rates

_BATCH_ROWS = 65536  # pool rows read at once


# ---------------------------------------------------------------------------------
# Exclusions
# ---------------------------------------------------------------------------------
@dataclass
class Exclusions:
    """Items never selected: by id (given, from ``.txt`` files, of earlier selections) or by question."""

    ids: set[str]  # every excluded id, those of the earlier selections included
    files: list[Path]  # benchmark files: their normalised questions are excluded
    earlier: list[Path]  # the earlier selections' files
    earlier_ids: set[str]  # the ids of those


def read_exclusions(config: SelectConfig) -> Exclusions:
    ids, files = _split_exclude(config.exclude)
    earlier = [selection_file(p) for p in config.exclude_selections]
    earlier_ids = read_selected_ids(earlier)
    ids |= earlier_ids
    return Exclusions(ids, files, earlier, earlier_ids)


def selection_file(path: str | Path) -> Path:
    """A selection given as its ``selection.parquet`` or the folder holding one."""
    p = Path(path)
    if p.is_dir():
        p = p / SELECTION
    if not p.is_file():
        raise InputError("earlier selection not found", file=p)
    return p


def read_selected_ids(files: Sequence[Path]) -> set[str]:
    """The item ids of earlier selections (their ``id`` column)."""
    ids: set[str] = set()
    for f in files:
        try:
            schema = pq.read_schema(f)
        except (pa.ArrowInvalid, OSError) as e:
            raise InputError(f"not a Parquet selection ({e})", file=f) from None
        if "id" not in schema.names:
            raise InputError("missing column 'id'", file=f, field="id")
        ids.update(str(v) for v in pq.read_table(f, columns=["id"]).column("id").to_pylist() if v is not None)
    return ids


def _split_exclude(entries: Sequence[str]) -> tuple[set[str], list[Path]]:
    """Existing paths are files to read; ``.txt`` files hold ids; anything else is an id."""
    ids: set[str] = set()
    files: list[Path] = []
    for e in entries:
        p = Path(e)
        if p.exists():
            if p.is_file() and p.suffix.lower() == ".txt":
                try:
                    text = p.read_text(encoding="utf-8")
                except UnicodeDecodeError as e:
                    raise InputError(f"not UTF-8 text (byte {e.start}: {e.reason})", file=p) from None
                ids.update(line.strip() for line in text.splitlines() if line.strip())
            else:
                files.append(p)
        elif p.suffix.lower() in {".jsonl", ".json", ".parquet", ".txt"}:
            raise InputError("exclusion file not found", file=p)
        else:
            ids.add(e)
    return ids, files


def _question_set(files: Sequence[Path]) -> set[str]:
    """Normalised questions of benchmark files (the same normalisation as ingest's decontamination)."""
    from ..decontaminate.problems import load_question_set

    return load_question_set(list(files))


def _read_item_profile(path: Path) -> tuple[pa.Array, np.ndarray]:
    """Ids (as text) and solved flags (1 solved, 0 not, -1 null) of the per-item profile; an id given twice is refused."""
    if not path.is_file():
        raise InputError("item profile not found", file=path)
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"not a readable Parquet file ({e})", file=path) from None
    for col in ("id", "solved"):
        if col not in schema.names:
            raise InputError(f"missing column {col!r}", file=path, field=col)
    if not pa.types.is_boolean(schema.field("solved").type):
        raise InputError(f"'solved' must be bool, got {schema.field('solved').type}", file=path, field="solved")
    _check_id_type(schema.field("id").type, path)
    prof = pq.read_table(path, columns=["id", "solved"])
    ids = prof.column("id").combine_chunks().cast(pa.string())
    if ids.null_count:
        first = int(np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))[0])
        raise InputError("null id", file=path, row=first + 1, field="id")
    _refuse_repeated_ids(pa.chunked_array([ids]), path)
    solved = prof.column("solved").combine_chunks()
    flags = np.where(pc.fill_null(solved, False).to_numpy(zero_copy_only=False), 1, 0).astype(np.int8)
    flags[solved.is_null().to_numpy(zero_copy_only=False)] = -1
    return ids, flags


def _check_id_type(t: pa.DataType, path: Path) -> None:
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)):
        raise InputError(f"'id' must be text or an integer, got {t}", file=path, field="id")


def _refuse_repeated_ids(ids: pa.ChunkedArray, path: Path) -> None:
    """An id given twice makes a selection with repeated items (or two verdicts for one item): refused,
    naming the row (1-based) where it comes again and where it came first."""
    uniq = pc.unique(ids)
    if len(uniq) == len(ids):
        return
    code = pc.index_in(ids, value_set=uniq).to_numpy(zero_copy_only=False)
    # unique() keeps first-seen order, so a new id has a code above every earlier one
    row = int(np.flatnonzero(code[1:] <= np.maximum.accumulate(code)[:-1])[0]) + 1
    first = int(np.argmax(code == code[row]))
    raise InputError(f"id {ids[row].as_py()!r} given twice (first at line {first + 1})", file=path, row=row + 1,
                     field="id")


# ---------------------------------------------------------------------------------
# The scan
# ---------------------------------------------------------------------------------
@dataclass
class PoolScan:
    n_items: int
    index: LeafIndex | None
    excluded_by_id: np.ndarray
    excluded_by_question: np.ndarray
    solved: np.ndarray | None
    source_counts: dict[str, int] | None


class _PoolScanner:
    """Fills the per-item arrays of a ``PoolScan`` one record batch at a time."""

    def __init__(self, src: Path, n: int, cols: list[str], exclude_ids: set[str], banned_questions: set[str] | None,
                 item_profile: tuple[pa.Array, np.ndarray] | None) -> None:
        self.src = src
        self.n = n
        self.by_id = np.zeros(n, dtype=bool)
        self.by_question = np.zeros(n, dtype=bool)
        self.banned_questions = banned_questions
        self.profile_ids, self.profile_solved = item_profile if item_profile is not None else (None, None)
        self.solved = np.full(n, -1, dtype=np.int8) if item_profile is not None else None
        self.sources: Counter[str] | None = Counter() if "source" in cols else None
        self.ex_ids = pa.array(sorted(exclude_ids), pa.string()) if exclude_ids else None
        self.leaves = LeafIndexBuilder(src) if "skills" in cols else None
        self.ids: list[pa.Array] = []  # the id column, to refuse repeated ids
        self.in_item_profile = 0  # pool items the item profile has

    def read_batch(self, batch: pa.RecordBatch, offset: int) -> None:
        m = batch.num_rows
        ids = batch.column("id")
        if ids.null_count:
            first = int(np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))[0])
            raise InputError("null id", file=self.src, row=offset + first + 1, field="id")
        self.ids.append(ids)
        if self.ex_ids is not None:
            self.by_id[offset:offset + m] = pc.is_in(ids, value_set=self.ex_ids).to_numpy(zero_copy_only=False)
        if self.banned_questions is not None:
            qs = batch.column("question").to_pylist()
            self.by_question[offset:offset + m] = [q is not None and normalize_question(q) in self.banned_questions
                                                   for q in qs]
        if self.solved is not None:
            assert self.profile_ids is not None and self.profile_solved is not None
            pos = pc.index_in(ids.cast(pa.string()), value_set=self.profile_ids)
            found = pos.is_valid().to_numpy(zero_copy_only=False)
            self.in_item_profile += int(found.sum())
            where = pc.fill_null(pos, 0).to_numpy(zero_copy_only=False)
            self.solved[offset:offset + m] = np.where(found, self.profile_solved[where], -1)
        if self.sources is not None:
            for v in pc.value_counts(batch.column("source")).to_pylist():
                self.sources[str(v["values"])] += int(v["counts"])
        if self.leaves is not None:
            self.leaves.add(batch.column("skills"), offset)

    def result(self) -> PoolScan:
        if self.ids:
            _refuse_repeated_ids(pa.chunked_array(self.ids), self.src)
        index = self.leaves.build(self.n) if self.leaves is not None else None
        sources = dict(self.sources) if self.sources is not None else None
        return PoolScan(self.n, index, self.by_id, self.by_question, self.solved, sources)


def scan_pool(src: Path, names: Sequence[str], exclusions: Exclusions, item_profile: str | Path | None, *,
              progress: bool) -> PoolScan:
    """One pass over the pool by record batch: leaf pairs, exclusion masks, solved flags, sources."""
    from ..progress import StageProgress

    banned = _question_set(exclusions.files) if exclusions.files else None
    profile = _read_item_profile(Path(item_profile)) if item_profile is not None else None
    cols = ["id"] + [c for c in ("skills", "source") if c in names]
    if banned is not None:
        cols.append("question")
    pf = pq.ParquetFile(src)
    _check_id_type(pf.schema_arrow.field("id").type, src)
    n = pf.metadata.num_rows
    scanner = _PoolScanner(src, n, cols, exclusions.ids, banned, profile)
    offset = 0
    with StageProgress(disable=not progress, transient=True) as bar:
        task = bar.add_task("reading the pool", total=n)
        for batch in pf.iter_batches(batch_size=_BATCH_ROWS, columns=cols):
            scanner.read_batch(batch, offset)
            offset += batch.num_rows
            bar.advance(task, batch.num_rows)
    scan = scanner.result()
    if scan.solved is not None and n and not np.any(scan.solved >= 0):
        if scanner.in_item_profile == 0:
            raise InputError("no id of the pool is in the item profile (made on another pool?)", file=item_profile,
                             field="id")
        raise InputError(f"no verdict for any pool item: 'solved' is null for all {scanner.in_item_profile} ids the "
                         "pool shares with the item profile", file=item_profile, field="solved")
    return scan


# ---------------------------------------------------------------------------------
# The filters: which items may be drawn
# ---------------------------------------------------------------------------------
@dataclass
class EligiblePool:
    """The scanned pool after the exclusions and filters."""

    scan: PoolScan
    eligible: np.ndarray  # bool per item: may be drawn
    summary: dict[str, Any]  # the report's ``pool`` section (its keys in report order)
    index: LeafIndex | None  # the leaf index, cut to max_depth and only_skill

    @property
    def solved(self) -> np.ndarray | None:
        return self.scan.solved


def filter_pool(scan: PoolScan, src: Path, names: Sequence[str], config: SelectConfig, exclusions: Exclusions,
                *, needs_skills: bool) -> EligiblePool:
    """Apply, in order: exclusions, the item-profile filter, the pass-rate range, the skill filters."""
    pool = EligiblePool(scan, np.ones(scan.n_items, dtype=bool), {"items": scan.n_items}, scan.index)
    _drop_excluded(pool, exclusions)
    _drop_unprofiled(pool, config)
    if config.strategy == "difficulty":
        _keep_difficulty_range(pool, src, names, config)
    _apply_skill_filters(pool, src, config, needs_skills=needs_skills)
    pool.summary["eligible"] = int(pool.eligible.sum())
    return pool


def _drop_excluded(pool: EligiblePool, exclusions: Exclusions) -> None:
    scan, summary, eligible = pool.scan, pool.summary, pool.eligible
    if exclusions.ids:
        summary["excluded_by_id"] = int(scan.excluded_by_id.sum())
        eligible &= ~scan.excluded_by_id
    if exclusions.earlier:
        summary["earlier_selections"] = {"files": len(exclusions.earlier), "items": len(exclusions.earlier_ids)}
    if exclusions.files:
        summary["excluded_by_question"] = int((scan.excluded_by_question & eligible).sum())
        eligible &= ~scan.excluded_by_question


def _drop_unprofiled(pool: EligiblePool, config: SelectConfig) -> None:
    """Count solved and unsolved items; with correct_portion, drop those the item profile lacks."""
    solved, summary, eligible = pool.solved, pool.summary, pool.eligible
    if solved is not None:
        summary["solved"] = int(np.sum(solved == 1))
        summary["unsolved"] = int(np.sum(solved == 0))
        summary["not_in_item_profile"] = int(np.sum(solved < 0))
    if config.correct_portion is not None:
        assert solved is not None
        summary["excluded_not_profiled"] = int(((solved < 0) & eligible).sum())
        eligible &= solved >= 0


def _keep_difficulty_range(pool: EligiblePool, src: Path, names: Sequence[str], config: SelectConfig) -> None:
    lo, hi = config.difficulty_range
    rates = pass_rates(src, names, config.difficulty_field)
    known = ~np.isnan(rates)
    in_range = known & (rates >= lo) & (rates <= hi)
    pool.summary["difficulty"] = {"field": config.difficulty_field, "range": [lo, hi], "with_rate": int(known.sum()),
                                  "in_range": int((in_range & pool.eligible).sum())}
    pool.eligible &= in_range


def _apply_skill_filters(pool: EligiblePool, src: Path, config: SelectConfig, *, needs_skills: bool) -> None:
    """Cut chains to max_depth; drop items without skills where the strategy needs them; keep only_skill."""
    index, summary, eligible = pool.index, pool.summary, pool.eligible
    n = pool.scan.n_items
    if index is not None and config.max_depth is not None:
        index = index.truncate(config.max_depth)
        summary["max_depth"] = config.max_depth
    if index is not None:
        has_skills = np.zeros(n, dtype=bool)
        has_skills[index.items] = True
        summary["with_skills"] = int(has_skills.sum())
        if needs_skills:
            eligible &= has_skills
    if config.only_skill is not None:
        assert index is not None
        index = _only_skill(index, config.only_skill, src)
        under = np.zeros(n, dtype=bool)
        under[index.items] = True
        summary["only_skill"] = {"skill": config.only_skill, "leaves": [CHAIN_SEP.join(k) for k in index.keys],
                                 "items": int((under & eligible).sum())}
        eligible &= under
    pool.index = index


def _only_skill(index: LeafIndex, skill: str, src: Path) -> LeafIndex:
    """The leaves named ``skill`` (the last step, or the whole chain 'A->b')."""
    want = skill.strip()
    hits = [j for j, k in enumerate(index.keys) if CHAIN_SEP.join(k) == want or k[-1] == want]
    if not hits:
        from rapidfuzz import process

        names = sorted({k[-1] for k in index.keys})
        close = [c[0] for c in process.extract(want, names, limit=3)]
        raise ConfigError(f"only_skill {skill!r}: no leaf of {src} has that name (closest: {', '.join(close)})")
    return index.keep_leaves(hits)


def take_rows(path: Path, indices: np.ndarray) -> pa.Table:
    """Full rows at ``indices`` (in that order), reading one row group at a time."""
    pf = pq.ParquetFile(path)
    if len(indices) == 0:
        return pf.schema_arrow.empty_table()
    starts = np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)])
    order = np.argsort(indices, kind="stable")
    sorted_idx = indices[order]
    groups = np.searchsorted(starts, sorted_idx, side="right") - 1
    pieces = []
    for g in np.unique(groups).tolist():
        local = sorted_idx[groups == g] - starts[g]
        pieces.append(pf.read_row_group(g).take(pa.array(local)))
    got = pa.concat_tables(pieces)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return got.take(pa.array(inverse))

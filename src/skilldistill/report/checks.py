"""What the report reads, checked before a table uses it: JSON files that parse into objects,
evaluation results, samples, selection reports, trainer states, the recipe, the skill profile
and the world's weak leaves of the shape the tables rely on. Each check raises
:class:`~skilldistill.errors.InputError` naming the file (and field); the caller decides
whether that makes an arm incomplete or refuses the report."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from ..errors import InputError


def is_number(v: Any) -> bool:
    """A finite int or float (a bool is no number here)."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _share(v: Any, path: Path, field: str, *, optional: bool = False) -> None:
    """A share in [0, 1] (None allowed when ``optional``)."""
    if v is None and optional:
        return
    if not is_number(v) or not 0 <= v <= 1:
        what = "missing" if v is None else f"not a share in [0, 1] (got {v!r:.40})"
        raise InputError(what, file=path, field=field)


def check_results(res: dict[str, Any], path: Path) -> list[str]:
    """An evaluation's results.json (a summary ``{benchmarks: {...}}`` or one benchmark's
    results): the benchmarks it names, each with an accuracy in [0, 1]."""
    if "benchmarks" in res and isinstance(res["benchmarks"], dict):
        benches = res["benchmarks"]
    elif isinstance(res.get("benchmark"), str):
        benches = {res["benchmark"]: res}
    else:
        raise InputError("names no benchmark (neither 'benchmarks' nor 'benchmark')", file=path)
    if not benches:
        raise InputError("names no benchmark", file=path, field="benchmarks")
    prefix = "benchmarks." if "benchmarks" in res else ""
    for name, r in benches.items():
        where = f"{prefix}{name}" if prefix else ""
        if not isinstance(r, dict):
            raise InputError(f"not an object (got {r!r:.40})", file=path, field=where or None)
        _share(r.get("accuracy"), path, f"{where}.accuracy" if where else "accuracy")
        for key in ("per_skill", "decoding"):
            if r.get(key) is not None and not isinstance(r[key], dict):
                raise InputError("not an object", file=path, field=f"{where}.{key}" if where else key)
        for chain, v in (r.get("per_skill") or {}).items():
            field = f"{where}.per_skill.{chain}" if where else f"per_skill.{chain}"
            if not isinstance(v, dict):
                raise InputError("not an object", file=path, field=field)
            _share(v.get("accuracy"), path, f"{field}.accuracy", optional=True)
            if v.get("n") is not None and (not is_number(v["n"]) or v["n"] < 0):
                raise InputError(f"not a count (got {v['n']!r:.40})", file=path, field=f"{field}.n")
    return list(benches)


def read_samples(path: Path) -> dict[str, list[Any]]:
    """The ``id``, ``correct`` (and ``skills`` when there) columns of a samples.parquet that
    holds samples; missing, unreadable, empty or without those columns raises InputError."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.exists():
        raise InputError("missing: the evaluation's per-sample results are gone", file=path)
    try:
        names = pq.read_schema(path).names
        cols = [c for c in ("id", "correct", "skills") if c in names]
        table = pq.read_table(path, columns=cols)
    except (pa.ArrowException, OSError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"not a readable Parquet file ({first[:120]})", file=path) from None
    for col in ("id", "correct"):
        if col not in names:
            raise InputError("column missing", file=path, field=col)
        if table.column(col).null_count:
            raise InputError(f"{table.column(col).null_count} empty value(s)", file=path, field=col)
    if table.num_rows == 0:
        raise InputError("holds no samples", file=path)
    correct = table.schema.field("correct").type
    if not (pa.types.is_boolean(correct) or pa.types.is_integer(correct)):  # "no" would count as solved
        raise InputError(f"not true/false (type {correct})", file=path, field="correct")
    skills = table.schema.field("skills").type if "skills" in cols else None
    if skills is not None and not (pa.types.is_list(skills) and pa.types.is_list(skills.value_type)):
        raise InputError(f"not a list of skill chains (type {skills})", file=path, field="skills")
    return table.to_pydict()


def check_selection(rep: dict[str, Any], path: Path) -> dict[str, Any]:
    """A select report: ``selected`` a count, ``leaf_table`` rows with a leaf and its count."""
    sel = rep.get("selected")
    if sel is not None and (not is_number(sel) or sel < 0):
        raise InputError(f"not a count (got {sel!r:.40})", file=path, field="selected")
    rows = rep.get("leaf_table", [])
    if not isinstance(rows, list):
        raise InputError("not a list", file=path, field="leaf_table")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InputError("not an object", file=path, field=f"leaf_table.{i}")
        if not isinstance(row.get("leaf"), str):
            raise InputError("missing or not a skill chain", file=path, field=f"leaf_table.{i}.leaf")
        count = row.get("selected_under_leaf", 0)
        if not is_number(count) or count < 0:
            raise InputError(f"not a count (got {count!r:.40})", file=path, field=f"leaf_table.{i}.selected_under_leaf")
    return rep


def loss_points(state: dict[str, Any], path: Path) -> list[tuple[int, float]]:
    """(step, loss) of a trainer state's ``log_history`` (entries without a loss left out)."""
    history = state.get("log_history", [])
    if not isinstance(history, list):
        raise InputError("not a list", file=path, field="log_history")
    out = []
    for i, entry in enumerate(history):
        if not isinstance(entry, dict):
            raise InputError("not an object", file=path, field=f"log_history.{i}")
        if "loss" not in entry:
            continue
        step, loss = entry.get("step"), entry["loss"]
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise InputError(f"not a step number (got {step!r:.40})", file=path, field=f"log_history.{i}.step")
        if not isinstance(loss, int | float) or isinstance(loss, bool):  # NaN: a diverged run, drawn as a gap
            raise InputError(f"not a number (got {loss!r:.40})", file=path, field=f"log_history.{i}.loss")
        out.append((step, float(loss)))
    return out


def check_profile(profile: dict[str, Any], path: Path, fix: str = "") -> dict[str, Any]:
    """A skill profile: ``nodes`` a list of nodes with a chain and accuracies in [0, 1]."""
    tail = f"; {fix}" if fix else ""
    nodes = profile.get("nodes", [])
    if not isinstance(nodes, list):
        raise InputError(f"not a list{tail}", file=path, field="nodes")
    for i, node in enumerate(nodes):
        if not isinstance(node, dict) or not isinstance(node.get("chain"), str):
            raise InputError(f"not a node with a chain{tail}", file=path, field=f"nodes.{i}")
        for key in ("accuracy", "smoothed_accuracy"):
            v = node.get(key)
            if v is not None and (not is_number(v) or not 0 <= v <= 1):
                raise InputError(f"not a share in [0, 1] (got {v!r:.40}){tail}", file=path, field=f"nodes.{i}.{key}")
        graded = node.get("graded", 0)
        if not is_number(graded) or graded < 0:
            raise InputError(f"not a count (got {graded!r:.40}){tail}", file=path, field=f"nodes.{i}.graded")
    return profile


def check_weak_leaves(world: dict[str, Any], path: Path, fix: str = "") -> list[str]:
    """The world's weak leaves: a list of skill chains."""
    leaves = world.get("weak_leaves") or []
    if not isinstance(leaves, list) or not all(isinstance(c, str) for c in leaves):
        raise InputError(f"not a list of skill chains{'; ' + fix if fix else ''}", file=path, field="weak_leaves")
    return list(leaves)


_MAPPINGS = ("report", "evaluate", "select", "format", "loop")


def load_recipe_copy(path: Path) -> tuple[str, dict[str, Any]]:
    """The run folder's recipe.yaml (text and data), with the fields the report reads checked."""
    fix = "the run writes it: rerun, or remove it to report without the recipe"
    try:
        text = path.read_text(encoding="utf-8")
        recipe = yaml.safe_load(text)
    except UnicodeDecodeError:
        raise InputError(f"not UTF-8 text; {fix}", file=path) from None
    except OSError as e:
        raise InputError(f"cannot be read ({e.strerror or e}); {fix}", file=path) from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise InputError(f"not YAML{at}; {fix}", file=path) from None
    recipe = recipe if recipe is not None else {}
    if not isinstance(recipe, dict):
        raise InputError(f"not a mapping of recipe sections; {fix}", file=path)
    arms = recipe.get("arms") or []
    if not isinstance(arms, list) or not all(isinstance(a, dict) and isinstance(a.get("name"), str) for a in arms):
        raise InputError(f"not a list of arms with a name; {fix}", file=path, field="arms")
    seeds = recipe.get("seeds")
    if seeds is not None and (not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool)
                                                                      for s in seeds)):
        raise InputError(f"not a list of seeds; {fix}", file=path, field="seeds")
    for key in _MAPPINGS:
        if recipe.get(key) is not None and not isinstance(recipe[key], dict):
            raise InputError(f"not a mapping; {fix}", file=path, field=key)
    for field, rounds in [("rounds", recipe.get("rounds"))] + [(f"arms.{i}.rounds", a.get("rounds")) for i, a in enumerate(arms)]:
        if rounds is not None and (not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1):
            raise InputError(f"not a number of rounds (got {rounds!r:.40}); {fix}", file=path, field=field)
    for i, arm in enumerate(arms):
        for key in ("select", "format"):
            if arm.get(key) is not None and not isinstance(arm[key], dict):
                raise InputError(f"not a mapping; {fix}", file=path, field=f"arms.{i}.{key}")
    return text, recipe


__all__ = ["check_profile", "check_results", "check_selection", "check_weak_leaves", "is_number",
           "load_recipe_copy", "loss_points", "read_samples"]

"""How often does offline (embedding) attribution put a MATH problem under its subject?

    python bench/attribution_quality.py                 # all 5,000 MATH test problems
    python bench/attribution_quality.py --limit 700 --variants

Runs ``skilldistill.attribution.run_annotate`` with the ``embedding`` backend on the MATH test set
(question + human solution) against the paper's skill_mix.json tree, then compares the
first-level skill of each item's first chain (the best-scoring domain) with the MATH
subject. MATH's 7 types map one-to-one onto the tree's 7 top-level names. Prints the
accuracy next to the majority-class rate and the random (1/7) rate, the rate at which
*any* chosen domain matches, and the chains per item.

``--variants`` also scores the first level under the other scoring rules (child text:
name only, name + descendant names; best-leaf averages over 1, 3, 5 leaves; question
text without the solution), reusing the same item embeddings.
Data: ../shared/data (beside the checkout). Output goes to --out (default a temp dir);
rerunning with the same --out reuses the decision cache.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
MATH = SHARED / "corpora" / "math_test" / "test.jsonl"
TREE = SHARED / "skill_trees" / "skill_mix.json"

# MATH type -> skill_mix.json top-level name
SUBJECT_TO_DOMAIN = {
    "Prealgebra": "Pre-Algebra",
    "Algebra": "Algebra",
    "Intermediate Algebra": "Inter-Algebra",
    "Geometry": "Geometry understanding",
    "Number Theory": "Number Theory",
    "Precalculus": "Precalculus",
    "Counting & Probability": "Probability",
}


def load_math(limit: int | None) -> list[dict]:
    rows = [json.loads(line) for line in MATH.open(encoding="utf-8")]
    if limit:
        # An even spread over subjects and levels: every k-th problem.
        step = max(1, len(rows) // limit)
        rows = rows[::step][:limit]
    return rows


def write_corpus(rows: list[dict], path: Path) -> None:
    table = pa.table(
        {
            "id": [f"math-test-{r['idx']}" for r in rows],
            "question": [r["problem"] for r in rows],
            "response": [r["solution"] for r in rows],
            "answer": ["" for _ in rows],
            "source": ["math_test" for _ in rows],
            "meta": [json.dumps({"type": r["type"], "level": r["level"]}) for r in rows],
        }
    )
    pq.write_table(table, path)


def rates(gold: list[str], firsts: list[str | None], anys: list[list[str]] | None = None) -> dict:
    n = len(gold)
    counts = collections.Counter(gold)
    out = {
        "n": n,
        "first_level_accuracy": sum(g == f for g, f in zip(gold, firsts, strict=True)) / n,
        "majority_rate": counts.most_common(1)[0][1] / n,
        "majority_class": counts.most_common(1)[0][0],
        "random_rate": 1 / len(SUBJECT_TO_DOMAIN),
    }
    if anys is not None:
        out["any_chosen_matches"] = sum(g in a for g, a in zip(gold, anys, strict=True)) / n
        out["domains_per_item"] = sum(len(a) for a in anys) / n
    return out


def per_subject(gold: list[str], firsts: list[str | None]) -> dict[str, float]:
    tot, hit = collections.Counter(gold), collections.Counter(g for g, f in zip(gold, firsts, strict=True) if g == f)
    return {g: round(hit[g] / tot[g], 3) for g in sorted(tot)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="use an even sample of this many problems")
    ap.add_argument("--out", type=Path, default=None, help="annotate output dir (kept; reruns reuse the cache)")
    ap.add_argument("--variants", action="store_true", help="also score other child representations")
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here too")
    args = ap.parse_args()

    from skilldistill.attribution import AnnotateConfig, annotate

    rows = load_math(args.limit)
    out = args.out or Path(tempfile.mkdtemp(prefix="attr-quality-"))
    out.mkdir(parents=True, exist_ok=True)
    corpus = out / "corpus.parquet"
    write_corpus(rows, corpus)
    cfg = AnnotateConfig(backend="embedding")
    t0 = time.time()
    result = annotate(corpus, TREE, out / "annotate", cfg)
    wall = time.time() - t0
    table = pq.read_table(result.skills_path, columns=["meta", "skills"]).to_pylist()
    gold = [SUBJECT_TO_DOMAIN[json.loads(r["meta"])["type"]] for r in table]
    firsts = [r["skills"][0][0] if r["skills"] else None for r in table]
    anys = [list(dict.fromkeys(c[0] for c in r["skills"])) for r in table]
    report = {
        "config": cfg.embedding.model_dump(),
        **rates(gold, firsts, anys),
        "chains_per_item": result.summary["chains_per_item"],
        "per_subject_accuracy": per_subject(gold, firsts),
        "wall_time_s": round(wall, 1),
    }
    print(f"MATH test problems: {report['n']}  (tree: {TREE.name}, embedding backend, scoring={cfg.embedding.scoring})")
    print(f"  first-level skill == MATH subject : {report['first_level_accuracy']:.3f}")
    print(f"  any chosen domain == subject      : {report['any_chosen_matches']:.3f}  ({report['domains_per_item']:.2f} domains/item)")
    print(f"  majority class ({report['majority_class']})      : {report['majority_rate']:.3f}")
    print(f"  random (1/7)                      : {report['random_rate']:.3f}")
    print(f"  chains/item {report['chains_per_item']:.2f}; wall {wall:.1f}s")
    print("  per subject:", json.dumps(report["per_subject_accuracy"]))

    if args.variants:
        from skilldistill.attribution import item_text
        from skilldistill.llm.embedding import EmbeddingAttributor, EmbeddingConfig
        from skilldistill.tree import SkillTree

        tree = SkillTree.load(TREE)
        texts = [item_text(r["problem"], r["solution"]) for r in rows]
        questions = [(t, (), tree.root.children) for t in texts]
        base = EmbeddingAttributor(EmbeddingConfig())
        base.select(questions)  # fills the item-embedding cache once
        report["variants"] = {}
        for name, ecfg in {
            "text: child name only": EmbeddingConfig(scoring="text", node_text="name"),
            "text: name + descendant names": EmbeddingConfig(scoring="text", node_text="subtree"),
            "leaves: best 1 leaf": EmbeddingConfig(leaf_top_k=1),
            "leaves: mean of best 3 (default)": EmbeddingConfig(leaf_top_k=3),
            "leaves: mean of best 5": EmbeddingConfig(leaf_top_k=5),
            "leaves, question text only": None,
        }.items():
            if ecfg is None:
                att = EmbeddingAttributor(EmbeddingConfig())
                att._model = base.model
                qs = [(r["problem"], (), tree.root.children) for r in rows]
            else:
                att = EmbeddingAttributor(ecfg)
                att._model, att._items = base.model, base._items
                qs = questions
            picks = att.select(qs)
            v = rates(gold, [p[0][0] for p in picks])
            report["variants"][name] = round(v["first_level_accuracy"], 4)
            print(f"  variant {name:34}: first-level accuracy {v['first_level_accuracy']:.3f}")

    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    sys.exit(main())

"""Which attributor should the demo default to? Measured on the development split.

    python bench/demo_attribution_sources.py                  # pool seed 1, 15 dev problems per leaf
    python bench/demo_attribution_sources.py --share 0.2 --pool-seed 2

The demo's attribution sources (``demo.attribution``, docs/demo.md): ``embedding`` (the offline MiniLM
attributor) and ``seed-labels`` (per-node classifiers learnt from the true skills of ``--share`` of the
pool, TF-IDF features, labelling the rest); ``true`` is exact by construction. Each source attributes a
pool drawn with another seed than the demo's, together with the development split's problems (disjoint
by hash from the held-out set the demo prints), and the leaf precision and recall against the true skills
are printed on the development problems and on the pool items no seed label covers.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


def corpus(pool_seed: int, per_leaf: int) -> tuple[object, set[str], set[str]]:
    """The pool (another seed than the demo's) and the development problems as one table, and their ids."""
    import pyarrow as pa

    from skilldistill.demo.generator import generate_eval_set
    from skilldistill.demo.pool import demo_pool
    from skilldistill.orchestration.recipe import load_recipe

    demo = load_recipe(REPO / "recipes" / "demo.yaml").demo
    pool = demo_pool(demo.model_copy(update={"seed": pool_seed}))
    dev = generate_eval_set(per_leaf, 0, split="dev").select(pool.schema.names)
    dev_ids = set(dev.column("id").to_pylist())
    return pa.concat_tables([pool, dev.cast(pool.schema)]), set(pool.column("id").to_pylist()) - dev_ids, dev_ids


def accuracy_on(skills: Path, ids: set[str]) -> dict[str, float]:
    import pyarrow.parquet as pq

    from skilldistill.demo.attribution_score import attribution_accuracy

    table = pq.read_table(skills)
    keep = [i in ids for i in table.column("id").to_pylist()]
    sub = Path(skills).with_name("subset.parquet")
    pq.write_table(table.filter(keep), sub)
    acc = attribution_accuracy(sub)
    return {k: round(acc[k], 3) for k in ("items", "leaf_precision", "leaf_recall", "top_level_first_chain_hit")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool-seed", type=int, default=1)
    ap.add_argument("--per-leaf", type=int, default=15)
    ap.add_argument("--share", type=float, default=0.1)
    args = ap.parse_args()

    import pyarrow.parquet as pq

    from skilldistill.attribution import run_annotate
    from skilldistill.attribution.config import AnnotateConfig
    from skilldistill.demo.attribution_config import SEED_LABELS_FILE, source_annotate
    from skilldistill.demo.seed_labels import write_seed_labels
    from skilldistill.tree import SkillTree

    tree = SkillTree.resolve("demo")
    table, pool_ids, dev_ids = corpus(args.pool_seed, args.per_leaf)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pq.write_table(table.filter([i in pool_ids for i in table.column("id").to_pylist()]), folder / "pool.parquet")
        write_seed_labels(folder / "pool.parquet", folder / "seed", args.share, seed=args.pool_seed)
        labelled = {json.loads(line)["id"] for line in (folder / "seed" / SEED_LABELS_FILE).read_text().splitlines()}
        pq.write_table(table, folder / "all.parquet")
        print(f"pool seed {args.pool_seed}: {len(pool_ids)} pool items ({len(labelled)} seed-labelled, "
              f"{args.share:.0%}), {len(dev_ids)} development problems")
        for source in ("embedding", "seed-labels"):
            settings = source_annotate(source)
            if source == "seed-labels":
                settings["distilled"]["train_labels"] = str(folder / "seed" / SEED_LABELS_FILE)
            cfg = AnnotateConfig.model_validate(settings)
            t0 = time.time()
            run_annotate(folder / "all.parquet", tree, folder / source, cfg, show_progress=False)
            skills = folder / source / "skills.parquet"
            print(f"{source:<12} dev {accuracy_on(skills, dev_ids)}; unlabelled pool "
                  f"{accuracy_on(skills, pool_ids - labelled)}; {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()

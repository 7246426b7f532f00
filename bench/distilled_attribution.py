"""The distilled attribution backend on MATH test: agreement, calls saved, fall-back share,
and wall time and memory at scale, with no LLM.

    python bench/distilled_attribution.py                    # the 5,000 MATH test problems
    python bench/distilled_attribution.py --scale 100000     # 100K items (MATH texts, numbered variants)
    python bench/distilled_attribution.py --from-labels      # classifiers from a labels file: minilm vs tfidf

The "LLM" is a stand-in that answers the attribution prompts as a careful annotator of
MATH would at the top level: the item's MATH subject (its 7 types map one-to-one onto
skill_mix.json's 7 top-level skills); below the top level it answers with the embedding
backend's own choice for that item and node. It goes through the whole ``annotate`` path
(prompt rendering, answer parsing, name matching, the decision cache). The distilled
backend lets it label a stratified sample of ``--sample`` items (default 2,000), trains
its per-node classifiers on 80% of the sample and labels every other item.

Printed, side by side in one run:

- top-level agreement with the MATH subject on the items outside the sample (the first
  chain's top-level skill, the measure bench/attribution_quality.py reports for the
  embedding backend alone), for the distilled labels and for the embedding backend;
- the held-out agreement the backend itself reports (against the stand-in's labels);
- the share of decisions that fell back to the "LLM", the calls made and saved;
- wall time per phase and peak memory (RSS).

``--from-labels``: no LLM at all. A labels file gives ``--sample`` items (seeded, uniform)
their MATH subject mapped onto skill_mix.json's top level (the only ground truth MATH
carries: a chain ``["Algebra"]``); the backend learns from it (``--train-labels``) once with
MiniLM and once with TF-IDF features, and the top level of the items outside the file is
compared with their subject, side by side, with the held-out agreement the backend reports.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from attribution_quality import SUBJECT_TO_DOMAIN, TREE, load_math  # noqa: E402

_PROMPT = re.compile(r"Q&A: (?P<item>.*)\n\nThe skills below are sub-skills of: (?P<node>[^\n]*)\n", re.S)


class SubjectStandIn:
    """A ChatBackend answering attribution prompts: the MATH subject at the root, the
    embedding backend's choice below it. For this bench only."""

    name = "stand-in"
    model = "math-subject-then-embedding"

    def __init__(self, tree, subject_of: dict[str, str], embedding_cfg) -> None:
        from skilldistill.llm.embedding import EmbeddingAttributor

        self.tree, self.subject_of = tree, subject_of
        self.embed = EmbeddingAttributor(embedding_cfg)
        self.calls = 0

    def chat(self, conversations: Sequence, params, *, on_result: Callable | None = None, progress=None, seeds=None,
             **_: object):
        from skilldistill.llm.base import Completion

        parsed = []
        for conv in conversations:
            m = _PROMPT.search(conv[-1]["content"] if len(conv) == 1 else conv[0]["content"])
            assert m, "not an attribution prompt"
            names = m["node"].split(" -> ")[1:]
            parsed.append((m["item"], tuple(names)))
        below = [(item, path, self.tree.node(path).children) for item, path in parsed if path]
        picks = iter(self.embed.select(below)) if below else iter(())
        out = []
        for j, (item, path) in enumerate(parsed):
            chosen = [SUBJECT_TO_DOMAIN[self.subject_of[item]]] if not path else [n for n, _ in next(picks)]
            comp = [Completion(text=json.dumps(chosen), finish_reason="stop", prompt_tokens=None, completion_tokens=None)]
            self.calls += 1
            if on_result:
                on_result(j, comp)
            out.append(comp)
        if progress:
            progress(len(conversations))
        return out

    def close(self) -> None:
        pass


def seed_variant_features(source: Path, dest: Path, texts, hashes, items, max_chars: int) -> None:
    """features.npz for the scaled corpus from a 5,000-item run's: each variant takes the
    vector of the MATH problem it numbers (the text differs by its "(Variant k)" prefix)."""
    import numpy as np

    from skilldistill.artifacts import sha256_text
    from skilldistill.attribution import item_text

    with np.load(source, allow_pickle=False) as z:
        known, model = dict(zip(z["keys"].tolist(), z["vectors"], strict=True)), z["model"]
    base = {}
    for k, i in enumerate(items):
        r = i["question"].split(") ", 1)[1] if i["question"].startswith("(Variant ") else i["question"]
        base[k] = known[sha256_text(item_text(r, i["response"], max_chars))]
    with open(dest, "wb") as f:
        np.savez(f, keys=np.array(hashes), vectors=np.stack([base[k] for k in range(len(items))]), model=model)


def first_level(skills: list[list[list[str]]]) -> list[str | None]:
    return [s[0][0] if s else None for s in skills]


def from_labels(sample: int, out: Path) -> int:
    """Classifiers from a labels file of MATH subjects (top level only), MiniLM against TF-IDF."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from skilldistill.attribution import AnnotateConfig, DistilledConfig, annotate

    rows = load_math(None)
    ids = [f"math-{k}" for k in range(len(rows))]
    corpus = out / "corpus.parquet"
    pq.write_table(pa.table({"id": ids, "question": [r["problem"] for r in rows],
                             "response": [r["solution"] for r in rows]}), corpus)
    picked = sorted(np.random.default_rng(0).choice(len(rows), size=sample, replace=False).tolist())
    labels = out / "labels.jsonl"
    labels.write_text("".join(json.dumps({"id": ids[k], "skills": [SUBJECT_TO_DOMAIN[rows[k]["type"]]]}) + "\n"
                              for k in picked), encoding="utf-8")
    rest = sorted(set(range(len(rows))) - set(picked))
    gold = [SUBJECT_TO_DOMAIN[rows[k]["type"]] for k in rest]
    print(f"{len(rows):,} MATH test items, skill_mix.json; labels file: {sample:,} items' subjects as top-level chains "
          f"(seeded); no LLM\n")
    print(f"  {'features':8s} {'top level == subject (rest)':>28s} {'held-out top P / R':>19s} {'wall':>7s}")
    for features in ("minilm", "tfidf"):
        t0 = time.perf_counter()
        cfg = AnnotateConfig(backend="distilled", distilled=DistilledConfig(train_labels=str(labels), features=features))
        res = annotate(corpus, TREE, out / features, cfg, show_progress=sys.stderr.isatty())
        wall = time.perf_counter() - t0
        skills = pq.read_table(res.skills_path).column("skills").to_pylist()
        first = first_level([skills[k] for k in rest])
        acc = sum(g == f for g, f in zip(gold, first, strict=True)) / len(gold)
        a = res.summary["distilled"]["held_out_agreement"]["with_fallback"]
        print(f"  {features:8s} {acc:28.3f} {a['top_precision']:9.3f} / {a['top_recall']:.3f} {wall:6.0f}s", flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, default=0, help="items in all (MATH texts as numbered variants); 0: the 5,000")
    ap.add_argument("--sample", type=int, default=2000, help="items the stand-in LLM labels")
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temp dir; reuse it to resume)")
    ap.add_argument("--features-from", type=Path, default=None,
                    help="features.npz of a 5,000-item run: numbered variants get their original's vector (MiniLM "
                         "encodes about 11 MATH items/s on 2 cores, so 100K fresh encodings take 2.5 h; the rest of "
                         "the backend is what --scale measures)")
    ap.add_argument("--from-labels", action="store_true", help="classifiers from a labels file of MATH subjects, "
                    "MiniLM and TF-IDF features side by side (no LLM, no stand-in)")
    args = ap.parse_args()
    if args.from_labels:
        out = args.out or Path(tempfile.mkdtemp(prefix="distilled_labels_"))
        out.mkdir(parents=True, exist_ok=True)
        return from_labels(args.sample, out)

    import pyarrow as pa
    import pyarrow.parquet as pq

    from skilldistill.artifacts import sha256_text
    from skilldistill.attribution import (
        FEATURES_FILE,
        AnnotateConfig,
        DistilledConfig,
        annotate,
        item_features,
        item_text,
    )
    from skilldistill.llm.base import BackendConfig
    from skilldistill.tree import SkillTree

    rows = load_math(None)
    n = args.scale or len(rows)
    items = []
    for k in range(n):
        r = rows[k % len(rows)]
        q = r["problem"] if k < len(rows) else f"(Variant {k // len(rows)}) {r['problem']}"
        items.append({"id": f"math-{k}", "question": q, "response": r["solution"], "subject": r["type"]})
    out = args.out or Path(tempfile.mkdtemp(prefix="distilled_"))
    out.mkdir(parents=True, exist_ok=True)
    corpus = out / "corpus.parquet"
    pq.write_table(pa.table({"id": [i["id"] for i in items], "question": [i["question"] for i in items],
                             "response": [i["response"] for i in items]}), corpus)
    tree = SkillTree.load(TREE)
    cfg = AnnotateConfig(backend="distilled", llm=BackendConfig(kind="openai", model=SubjectStandIn.model),
                         distilled=DistilledConfig(sample_size=args.sample))
    texts = [item_text(i["question"], i["response"], cfg.max_chars) for i in items]
    hashes = [sha256_text(t) for t in texts]
    subject_of = {t: i["subject"] for t, i in zip(texts, items, strict=True)}
    stand_in = SubjectStandIn(tree, subject_of, cfg.embedding)

    t0 = time.perf_counter()
    # The item features, as the backend computes them (it reuses this file); the stand-in
    # and the embedding-only comparison use the same vectors instead of encoding again.
    feats_file = out / "distilled" / FEATURES_FILE
    feats_file.parent.mkdir(parents=True, exist_ok=True)
    if args.features_from and not feats_file.exists():
        seed_variant_features(args.features_from, feats_file, texts, hashes, items, cfg.max_chars)
    features = item_features(stand_in.embed, texts, hashes, feats_file)
    wall_features = time.perf_counter() - t0
    stand_in.embed.seed_items(hashes, features)

    res = annotate(corpus, tree, out / "distilled", cfg, backend=stand_in, show_progress=sys.stderr.isatty())
    wall_distilled = time.perf_counter() - t0
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2

    sample = json.loads((out / "distilled" / "sample.json").read_text())
    in_sample = set(sample["train"]) | set(sample["held_out"])
    labels = pq.read_table(res.skills_path).to_pylist()
    rest = [k for k, r in enumerate(labels) if r["id"] not in in_sample]
    gold = [SUBJECT_TO_DOMAIN[items[k]["subject"]] for k in rest]
    dist_first = first_level([labels[k]["skills"] for k in rest])
    dist_any = [{c[0] for c in labels[k]["skills"]} for k in rest]

    # the embedding backend alone on the same items: its first chain's top-level skill is
    # its best-scoring child of the root (same vectors, same rule)
    root = tree.node(())
    picks = stand_in.embed.select([(texts[k], (), root.children) for k in rest])
    emb_first = [p[0][0] if p else None for p in picks]

    def rate(pred: Sequence) -> float:
        return sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold)

    d = res.summary["distilled"]
    print(f"{n:,} items (MATH test{' x variants' if args.scale else ''}), skill_mix.json; stand-in LLM: MATH subject at "
          f"the top level, the embedding backend's choice below; sample {d['sample']['items']:,} "
          f"({d['sample']['train']:,} train / {d['sample']['held_out']:,} held out)\n")
    print(f"top-level skill == MATH subject, on the {len(rest):,} items outside the sample")
    print(f"  distilled (first chain)        : {rate(dist_first):.3f}")
    print(f"  distilled (any chosen domain)  : {sum(g in a for g, a in zip(gold, dist_any, strict=True)) / len(gold):.3f}")
    print(f"  embedding backend alone        : {rate(emb_first):.3f}")
    print(f"  ratio distilled / embedding    : {rate(dist_first) / rate(emb_first):.2f}x\n")
    for name, a in d["held_out_agreement"].items():
        print(f"held-out agreement with the stand-in, {name:15s}: leaf P {a['leaf_precision']:.3f} R {a['leaf_recall']:.3f}, "
              f"top P {a['top_precision']:.3f} R {a['top_recall']:.3f}")
    dec, calls = d["decisions"], d["llm_calls"]
    print(f"\ndecisions outside the sample: {dec['total']:,}, fell back to the LLM: {dec['llm']:,} ({dec['fallback_share']:.1%})")
    print(f"LLM calls: {calls['total']:,} made (sample {calls['sample']:,}, fall-back {calls['fallback']:,}, held-out check "
          f"{calls['held_out_check']:,}) vs ~{calls['all_llm_estimate']:,} labelling every item: {calls['saved_share']:.1%} saved")
    print(f"classifiers: {d['classifiers']['nodes_with_classifier']} nodes, {d['classifiers']['nodes_llm_only']} left to the LLM\n")

    # The trade-off the uncertain band sets, at the top level, from the saved classifiers:
    # a root decision inside the band goes to the stand-in (the subject: right by definition).
    import numpy as np

    from skilldistill.attribution import load_node_models

    _, models = load_node_models(out / "distilled")
    root_model = models[()]
    probs = root_model.probabilities(features[rest])
    truth = np.array([[c == g for c in root_model.children] for g in gold])
    exact = ((probs >= 0.5) == truth).all(axis=1)
    print("top level on the items outside the sample, by uncertain band (root decisions only):")
    print(f"  {'band':12s} {'fall back':>9s} {'exact set == subject':>21s} {'of the confident':>17s}")
    for lo, hi in ((0.5, 0.5), (0.3, 0.7), (0.2, 0.8), (0.1, 0.9)):
        unsure = ((probs > lo) & (probs < hi)).any(axis=1)
        agree = (exact & ~unsure).mean() + unsure.mean()
        conf = exact[~unsure].mean() if (~unsure).any() else float("nan")
        print(f"  ({lo:.1f}, {hi:.1f})   {unsure.mean():9.1%} {agree:21.3f} {conf:17.3f}")
    print(f"  classifier alone, best child == subject: {(np.array(root_model.children)[probs.argmax(1)] == np.array(gold)).mean():.3f}\n")
    print(f"wall: item features {wall_features:.0f} s ({'seeded from --features-from, ' if args.features_from else ''}"
          f"{n / max(wall_features, 1e-9):.0f} items/s), then annotate {wall_distilled - wall_features:.0f} s "
          f"(sample walk, training, distilled walk; {n / max(wall_distilled - wall_features, 1e-9):.0f} items/s)")
    print(f"peak RSS: {rss_gb:.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

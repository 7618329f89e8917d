"""Choose the sentence rerank's weight (Settings.sentence_weight) and measure its cost.

    .venv/bin/python bench/sentence_rerank.py [--sets a,b] [--json FILE]

For every answerable question of the eval sets (evals/sets.toml, each over its own corpus,
indexed into runs/.index-cache as `rag eval` does), the search runs without the rerank and
the first `sentence_depth` hits are kept with their fused scores and the cosine of each
one's sentence nearest the question (the real embedding model, as `Searcher._sentence_rerank`
computes it). Each weight in the grid re-orders those hits offline, with no margin: hit@1
per set, and how many questions gain or lose the passage holding their evidence at rank 1.
Then, at the configured weight, each margin in its grid: the same, and how many questions
are re-read and passages embedded. Then the cost: each question searched with the rerank
off and on (the configured settings), in turns, sentence vectors not kept between
questions, p50/p95 milliseconds per search.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GRID = (0.0, 1.0, 2.0, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 7.0, 8.0, 10.0)
MARGINS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, float("inf"))


def rerank(rows: dict[str, list[list[tuple[float, float, bool]]]], weight: float, margin: float) -> dict:
    """hit@1 per set and overall, passages moved to / off rank 1, questions re-read and
    passages embedded, with the rerank applied offline to the collected rows."""
    per_set, gains, losses, hit_all, n_all, reread, embedded = {}, 0, 0, 0, 0, 0, 0
    for name, qs in rows.items():
        hit = 0
        for row in qs:
            if not row:
                continue
            head = [r for r in row if row[0][0] - r[0] < margin]
            best = max(head, key=lambda r: r[0] + weight * r[1]) if len(head) >= 2 else row[0]
            if len(head) >= 2:
                reread += 1
                embedded += len(head)
            hit += best[2]
            gains += best[2] and not row[0][2]
            losses += row[0][2] and not best[2]
        per_set[name] = round(hit / len(qs), 4) if qs else None
        hit_all += hit
        n_all += len(qs)
    return {"hit@1": round(hit_all / n_all, 4), "gains": gains, "losses": losses, "reread": reread,
            "passages_embedded_per_question": round(embedded / n_all, 2), "by_set": per_set}


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from rag.embedmodel import load_embedder
    from rag.evaluate import load_manifest, load_questions, open_set_assistant, select_sets, supports
    from rag.retrieval import sentence_texts
    from rag.settings import Settings

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sets", default=None)
    p.add_argument("--json", default="")
    args = p.parse_args(argv)
    settings = Settings(llm="extractive")
    embedder = load_embedder(settings)
    depth, cap = settings.sentence_depth, settings.sentence_cap
    rows: dict[str, list[list[tuple[float, float, bool]]]] = {}
    timings = {"off": [], "on": []}
    for spec in select_sets(load_manifest(ROOT / "evals" / "sets.toml"), args.sets):
        searcher = open_set_assistant(spec, settings, ROOT / "runs" / ".index-cache", embedder=embedder).searcher
        rows[spec.name] = []
        for it in load_questions(spec.questions):
            if not it.answerable:
                continue
            searcher.settings.sentence_weight = 0.0
            hits = searcher.search(it.question, 5)[:depth]
            q = np.asarray(embedder.embed_queries([it.question])[0], dtype=np.float32)
            row = []
            for h in hits:
                sents = sentence_texts(h.chunk.text, cap)
                best = float(np.max(np.asarray(embedder.embed_passages(sents), dtype=np.float32) @ q))
                row.append((h.score, best, bool(supports(h.chunk.text, it.evidence))))
            rows[spec.name].append(row)
            for mode, weight in (("off", 0.0), ("on", settings.sentence_weight)):
                searcher.settings.sentence_weight = weight
                searcher._sentence_memo.clear()
                t = time.perf_counter()
                searcher.search(it.question, 5)
                timings[mode].append((time.perf_counter() - t) * 1000)
        searcher.settings.sentence_weight = settings.sentence_weight
        print(f"{spec.name}: {len(rows[spec.name])} questions", flush=True)

    grid, margins = [], []
    for w in GRID:
        r = rerank(rows, w, float("inf"))
        grid.append({"weight": w, **r})
        print(f"weight {w:4.1f}: hit@1 {r['hit@1']:.4f}  +{r['gains']} -{r['losses']}  "
              + " ".join(f"{k} {v:.3f}" for k, v in r["by_set"].items()))
    for m in MARGINS:
        r = rerank(rows, settings.sentence_weight, m)
        margins.append({"margin": None if m == float("inf") else m, **r})
        print(f"weight {settings.sentence_weight}, margin {m}: hit@1 {r['hit@1']:.4f}  +{r['gains']} -{r['losses']}  "
              f"re-read {r['reread']}, passages embedded per question {r['passages_embedded_per_question']}")

    def pct(xs, q):
        return round(float(np.percentile(xs, q)), 1)

    cost = {m: {"p50_ms": pct(v, 50), "p95_ms": pct(v, 95), "n": len(v)} for m, v in timings.items()}
    print(f"search without the rerank p50/p95 {cost['off']['p50_ms']}/{cost['off']['p95_ms']} ms, "
          f"with it {cost['on']['p50_ms']}/{cost['on']['p95_ms']} ms "
          f"(weight {settings.sentence_weight}, margin {settings.sentence_margin}, depth {depth}, "
          f"embedder {embedder.name})")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "date": time.strftime("%Y-%m-%d"), "embedder": embedder.name, "depth": depth, "cap": cap,
            "weight": settings.sentence_weight, "margin": settings.sentence_margin,
            "questions": sum(len(v) for v in rows.values()), "grid": grid, "margins": margins, "cost": cost,
            "median_extra_ms": round(statistics.median(b - a for a, b in zip(timings["off"], timings["on"])), 1),
        }, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

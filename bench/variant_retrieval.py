"""Retrieval only (no answers): evidence rank of English questions with and without their LLM
translation as a second query variant, per eval set, with translations cached between runs.

    nice -n 15 .venv/bin/python -m bench.variant_retrieval --sets crosslingual,seed,seed-heldout,seed-unseen \
        --index-cache /tmp/cache --translations runs/translations.json --out runs/variant_retrieval.json

For each English question: the translation (`translate_query` on the translator context, timed),
then the evidence rank in the top 10 of (a) the English question alone (dense + CC-CEDICT bridge),
(b) the translation alone, (c) both fused with equal weights (the fusion before the translation
was weighted), (d) both fused as `Searcher.search(..., variants=[t])` does (the translation weighted
by `Searcher.variant_weight`: the share of the bridge's name readings it holds), (e) the
translation with the bridge's names it misses appended, fused with equal weights.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from rag.crossling import bridge_names
from rag.evaluate import load_manifest, load_questions, open_set_assistant, select_sets, supports
from rag.lang import to_simplified
from rag.retrieval import VARIANT_DEPTH, fuse_hit_lists

K = 10


def rank_of(hits, evidence) -> int | None:
    return next((h.rank for h in hits if supports(h.chunk.text, evidence)), None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default="crosslingual,seed,seed-heldout,seed-unseen")
    p.add_argument("--index-cache", default="runs/.index-cache")
    p.add_argument("--translations", default="runs/translations.json", help="cache of translations (json)")
    p.add_argument("--out", default="runs/variant_retrieval.json")
    args = p.parse_args(argv)

    from rag.answering.translate import translate_query
    from rag.embedmodel import load_embedder
    from rag.settings import Settings

    settings = Settings()
    embedder = load_embedder(settings)
    cache_path = Path(args.translations)
    cache = json.loads(cache_path.read_text(encoding="utf-8")) if cache_path.exists() else {}
    translator = None
    times: list[float] = []
    rows = []
    for spec in select_sets(load_manifest(), args.sets):
        assistant = open_set_assistant(spec, settings, args.index_cache, embedder=embedder)
        searcher = assistant.searcher
        for it in load_questions(spec.questions):
            if it.lang != "en":
                continue
            if it.question not in cache:
                if translator is None:
                    from rag.llm import build_translator

                    translator = build_translator(settings.model_copy(update={"llm": "llama-cpp"}))
                    translate_query("What is this?", translator)  # warm-up
                t0 = time.perf_counter()
                cache[it.question] = translate_query(it.question, translator)
                times.append(time.perf_counter() - t0)
                cache_path.parent.mkdir(parents=True, exist_ok=True)
                cache_path.write_text(json.dumps(cache, ensure_ascii=False, indent=1), encoding="utf-8")
            tr = cache[it.question]
            row = {"set": spec.name, "id": it.id, "question": it.question, "translation": tr,
                   "answerable": it.answerable}
            if it.answerable:
                row["english"] = rank_of(searcher.search(it.question, K), it.evidence)
                row["translation_only"] = rank_of(searcher.search(tr, K), it.evidence) if tr else None
                row["fused_plain"] = rank_of(fuse_hit_lists([searcher.search(it.question, VARIANT_DEPTH),
                                                             searcher.search(tr, VARIANT_DEPTH)], K)
                                              if tr else searcher.search(it.question, K), it.evidence)
                row["fused"] = rank_of(searcher.search(it.question, K, variants=[tr] if tr else None), it.evidence)
                names = bridge_names(it.question, searcher.vocab)
                missing = [g[0] for g in names if tr and not any(t in to_simplified(tr).lower() for t in g)]
                row["names"], row["weight"] = names, searcher.variant_weight(it.question, tr) if tr else None
                rep = f"{tr} {' '.join(missing)}" if tr and missing else tr
                row["fused_repair"] = rank_of(fuse_hit_lists([searcher.search(it.question, VARIANT_DEPTH),
                                                              searcher.search(rep, VARIANT_DEPTH)], K)
                                               if rep else searcher.search(it.question, K), it.evidence)
            rows.append(row)
            print(json.dumps(row, ensure_ascii=False), flush=True)
    summary = {}
    for name in dict.fromkeys(r["set"] for r in rows):
        ans = [r for r in rows if r["set"] == name and r["answerable"]]
        summary[name] = {"n_answerable": len(ans)}
        for v in ("english", "translation_only", "fused_plain", "fused", "fused_repair"):
            summary[name][v] = {
                "hit@1": round(statistics.mean(r[v] == 1 for r in ans), 3),
                "hit@3": round(statistics.mean(r[v] is not None and r[v] <= 3 for r in ans), 3),
                "miss@10": sum(r[v] is None for r in ans),
            }
    if times:
        summary["translate_p50_s"] = round(statistics.median(times), 3)
        summary["translate_n"] = len(times)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "rows": rows}, ensure_ascii=False, indent=1), encoding="utf-8")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

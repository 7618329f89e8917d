"""Compare ways of fusing the dense and keyword lists, on the eval sets.

    .venv/bin/python bench/fusion.py [evals/questions.jsonl evals/heldout.jsonl]

Prints hit@1/hit@3 per set and language group for reciprocal-rank fusion and
for weighted sums of min-max normalised scores (what rag/retrieval.py does),
so the weights in rag/settings.py can be rechecked when the corpus, the
chunker or the model changes. Scores are computed over the whole corpus.
"""
from __future__ import annotations

import sys

import numpy as np

from rag.assistant import Assistant
from rag.evaluate import load_questions, supports
from rag.retrieval import bridge, query_tokens


def main(files: list[str]) -> None:
    a = Assistant.from_settings(llm="extractive")
    s = a.searcher
    chunks = s.store.all_chunks()
    n = len(chunks)
    index = {c.id: i for i, c in enumerate(chunks)}
    kw_pos = np.array([s.keyword.doc_index(c.id) for c in chunks])  # keyword order -> this order
    data = []
    for f in files:
        for it in load_questions(f):
            if not it.answerable:
                continue
            d = np.zeros(n)
            for c, sim in s.store.query(a.embedder.embed_queries([it.question])[0], n):
                d[index[c.id]] = sim
            kw = s.keyword.scores(query_tokens(it.question))[kw_pos]
            terms = bridge(it.question)
            p = np.zeros(n)
            if terms:
                for c, sim in s.store.query(a.embedder.embed_queries([" ".join(terms)])[0], n):
                    p[index[c.id]] = sim
            gold = np.array([supports(c.text, it.evidence) for c in chunks])
            data.append((f.split("/")[-1], "en" if it.lang == "en" else "zh", d, kw, p, gold, bool(terms)))

    def mm(x):
        lo, hi = x.min(), x.max()
        return (x - lo) / (hi - lo) if hi > lo else x * 0

    def rrf(x, k=60):
        r = np.empty(n)
        r[np.argsort(-x)] = np.arange(n)
        return 1 / (k + r + 1)

    def run(fn, name):
        out: dict = {}
        for src, lang, d, kw, p, gold, en in data:
            order = np.argsort(-fn(d, kw, p, en))
            rank = next((i + 1 for i, j in enumerate(order) if gold[j]), 99)
            out.setdefault((src, lang), []).append(rank)
        cells = " ".join(
            f"{k[0]}:{k[1]} {np.mean([r == 1 for r in v]):.2f}/{np.mean([r <= 3 for r in v]):.2f}"
            for k, v in sorted(out.items())
        )
        print(f"{name:34s} {cells}")

    print("hit@1/hit@3 per eval file and language group")
    run(lambda d, kw, p, en: rrf(d) + rrf(kw) * (kw > 0), "rrf dense+keyword")
    run(lambda d, kw, p, en: rrf(d) * (0.2 if en else 1) + rrf(kw) * (kw > 0) + (0.2 * rrf(p) if en else 0),
        "rrf, en dense 0.2 + bridge 0.2")
    run(lambda d, kw, p, en: mm(kw), "keyword only")
    run(lambda d, kw, p, en: mm(d), "dense only")
    for a_zh in (0.3, 0.5, 0.7):
        for a_en in (0.1, 0.3):
            run(lambda d, kw, p, en, a_zh=a_zh, a_en=a_en: (a_en if en else a_zh) * mm(d)
                + (1 - (a_en if en else a_zh)) * mm(kw) + (a_en * mm(p) if en else 0),
                f"score sum dense={a_zh} en-dense={a_en}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["evals/questions.jsonl", "evals/heldout.jsonl"])

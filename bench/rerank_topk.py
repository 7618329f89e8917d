"""Measure a learned re-ranker of the fused search's top passages, cross-validated by corpus.

    python bench/rerank_topk.py [--cache DIR] [--rows FILE] [--reuse] [--depth 3] [--C 0.1]

For every set of evals/sets.toml each answerable question is searched (fused
order) and its top 10 passages are described by signals that hold for any
collection: the fused, dense and BM25 scores relative to the best candidate,
idf-weighted coverage of the question's terms (passage and best sentence),
the kind of answer asked for in a sentence and that sentence's coverage,
names, years, and the asking clause's characters / the question's character
pairs in one sentence. A pairwise logistic model (answering passage against
non-answering one) reorders the top `depth`; each corpus is re-ranked by a
model fitted without it. Prints hit@1 of the fused order and of the re-ranked
one per set. Not wired into search: measured 2026-11-30 (depth 3, C 0.1) it
moved drcd 0.933 -> 0.967 and seed-heldout 0.882 -> 0.912 but crosslingual
0.800 -> 0.783 and seed-unseen 0.958 -> 0.917 (cmrc-train, seed unchanged).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.answering.extractive import focus_chars, question_bigrams  # noqa: E402
from rag.types import Hit  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
from fit_gate import checkpoint_rows, load_rows  # noqa: E402  (the same row files as the gate's)

COLLECT_DEPTH = 10
_NO_GATE = {"threshold": {"en": 0.5, "zh": 0.5}, "features": []}  # the gate's readings, not its model

FEATURES = [
    "fused", "inv_rank", "dense_gap", "keyword", "coverage", "sentence_coverage",
    "kind_in_sentence", "kind_in_passage", "kind_sentence_coverage", "name_coverage",
    "year_conflict", "year_match", "bigram_sentence", "focus_chars", "focus_chars_kind",
]


def features(gate, q, hits: list[Hit], i: int, qgrams: set[str],
             fchars: set[str] | None = None) -> dict[str, float]:
    """Signals of hit `i` among `hits` (the candidates being re-ranked) for the question `q`
    (`gate.question(...)`): scores relative to the best candidate, and where in the passage
    the question's terms and the kind of answer it asks for meet."""
    from rag.answering.gate import _YEAR_RE, has_kind, sentence_tokens
    from rag.lang import to_simplified

    g = gate.features(q, hits, i)
    h = hits[i]
    text = h.chunk.text
    top = max((x.score for x in hits), default=0.0) or 1.0
    dense = [x.dense_score for x in hits if x.dense_score is not None]
    kws = [x.keyword_score or 0.0 for x in hits]
    total = sum(q.weights) or 1.0
    fchars = focus_chars(q) if fchars is None else fchars
    kind_cov, best_grams, best_chars, best_chars_kind = 0.0, 0.0, 0.0, 0.0
    for (a, b), toks in sentence_tokens(text):
        kind_here = q.kind is not None and has_kind(q.kind, text, a, b)
        if kind_here:
            c = sum(w for grp, w in zip(q.groups, q.weights) if any(t in toks for t in grp)) / total
            kind_cov = max(kind_cov, c)
        sent = to_simplified(text[a:b]).lower()
        if qgrams:
            best_grams = max(best_grams, sum(gr in sent for gr in qgrams) / len(qgrams))
        if fchars:
            share = sum(c in sent for c in fchars) / len(fchars)
            best_chars = max(best_chars, share)
            if kind_here:
                best_chars_kind = max(best_chars_kind, share)
    years = set(_YEAR_RE.findall(to_simplified(f"{h.chunk.heading} {text}")))
    return {
        "fused": h.score / top,
        "inv_rank": 1.0 / (i + 1),
        "dense_gap": (h.dense_score - max(dense)) if dense and h.dense_score is not None else -0.1,
        "keyword": (h.keyword_score or 0.0) / max(kws) if max(kws, default=0.0) > 0 else 0.0,
        "coverage": g["coverage"],
        "sentence_coverage": g["sentence_coverage"],
        "kind_in_sentence": g["kind_in_sentence"],
        "kind_in_passage": g["kind_in_passage"],
        "kind_sentence_coverage": kind_cov,
        "name_coverage": g["name_coverage"],
        "year_conflict": g["year_conflict"],
        "year_match": float(bool(q.years & years)),
        "bigram_sentence": best_grams,
        "focus_chars": best_chars,
        "focus_chars_kind": best_chars_kind,
    }


def collect(manifest: Path, cache: Path, rows_file: Path | None = None) -> list[dict]:
    """One row per answerable question: features of its top candidates and their labels."""
    from rag.answering.gate import AnswerabilityGate
    from rag.embedmodel import load_embedder
    from rag.evaluate import load_manifest, load_questions, open_set_assistant, supports
    from rag.settings import Settings

    settings = Settings(llm="extractive")
    embedder = load_embedder(settings)
    rows: list[dict] = []
    for spec in load_manifest(manifest):
        s = open_set_assistant(spec, settings, cache, embedder=embedder).searcher
        group = spec.corpus_name
        gate = AnswerabilityGate(model=_NO_GATE, corpus=s)
        t0 = time.perf_counter()
        for it in load_questions(spec.questions):
            if not it.answerable:
                continue
            hits = s.search(it.question, COLLECT_DEPTH)
            q = gate.question(it.question)
            grams = question_bigrams(q)
            rows.append({
                "set": spec.name, "group": group, "id": it.id, "lang": it.lang, "question": it.question,
                "features": [features(gate, q, hits, i, grams) for i in range(len(hits))],
                "labels": [supports(h.chunk.text, it.evidence) for h in hits],
            })
        checkpoint_rows(spec.name, rows, t0, rows_file)
    return rows


def _X(row: dict, depth: int, names: list[str]) -> np.ndarray:
    """The candidates' features, the relative ones recomputed over the first `depth`."""
    feats = [dict(f) for f in row["features"][:depth]]
    if feats:  # fused / keyword were relative to the collected 10: rescale to the head
        for k in ("fused", "keyword"):
            top = max(f[k] for f in feats) or 1.0
            for f in feats:
                f[k] = f[k] / top
    return np.array([[f[k] for k in FEATURES if k in names] for f in feats], dtype=float)


def _pairs(rows: list[dict], depth: int, names: list[str]):
    X, y = [], []
    for r in rows:
        x = _X(r, depth, names)
        labels = r["labels"][:depth]
        pos = [i for i, lab in enumerate(labels) if lab]
        neg = [i for i, lab in enumerate(labels) if not lab]
        for i in pos:
            for j in neg:
                X.append(x[i] - x[j])
                y.append(1)
                X.append(x[j] - x[i])
                y.append(0)
    return np.array(X), np.array(y)


def _fit(rows: list[dict], depth: int, c: float, names: list[str]):
    from sklearn.linear_model import LogisticRegression

    allx = np.vstack([_X(r, depth, names) for r in rows if r["features"]])
    mean, scale = allx.mean(0), allx.std(0)
    scale[scale == 0] = 1.0
    X, y = _pairs(rows, depth, names)
    clf = LogisticRegression(C=c, fit_intercept=False, max_iter=5000).fit(X / scale, y)
    return mean, scale, clf.coef_[0]


def _top_is_right(row: dict, depth: int, names: list[str], coef=None, scale=None) -> bool:
    labels = row["labels"][:depth]
    if not labels:
        return False
    if coef is None:
        return bool(labels[0])
    s = (_X(row, depth, names) / scale) @ coef
    best = min(range(len(s)), key=lambda i: (-s[i], i))
    return bool(labels[best])


def fit(rows: list[dict], depth: int, c: float, names: list[str] | None = None) -> dict:
    names = names or FEATURES
    groups = sorted({r["group"] for r in rows})
    cv: dict[str, dict] = {}
    for g in groups:
        train = [r for r in rows if r["group"] != g]
        _, scale, coef = _fit(train, depth, c, names)
        for name in sorted({r["set"] for r in rows if r["group"] == g}):
            sub = [r for r in rows if r["set"] == name]
            cv[name] = {"hit@1_fused": round(float(np.mean([_top_is_right(r, depth, names) for r in sub])), 3),
                        "hit@1_reranked": round(float(np.mean(
                            [_top_is_right(r, depth, names, coef, scale) for r in sub])), 3),
                        "questions": len(sub)}
    return cv


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--manifest", default=str(ROOT / "evals" / "sets.toml"))
    p.add_argument("--cache", default=str(ROOT / "runs" / ".index-cache"), help="where the sets are indexed (shared with rag eval)")
    p.add_argument("--rows", default=str(ROOT / "runs" / "rerank-rows.json"))
    p.add_argument("--reuse", action="store_true", help="use the rows of an earlier run")
    p.add_argument("--depth", type=int, default=3, help="hits re-ranked (at most 10)")
    p.add_argument("--C", type=float, default=0.1)
    args = p.parse_args(argv)
    from rag.settings import offline_environment

    offline_environment()
    rows_file = Path(args.rows)
    rows = load_rows(rows_file) if args.reuse and rows_file.is_file() else collect(
        Path(args.manifest), Path(args.cache), rows_file)
    for name, m in fit(rows, min(args.depth, COLLECT_DEPTH), args.C).items():
        print(f"{name:14s} hit@1 fused {m['hit@1_fused']:.3f}  re-ranked {m['hit@1_reranked']:.3f}  ({m['questions']} questions)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

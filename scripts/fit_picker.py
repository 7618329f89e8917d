"""Fit the extractive answer's sentence picker (rag/data/picker.json) on the development sets.

    python scripts/fit_picker.py [--reuse] [--check]

For every set of evals/sets.toml (its questions over its own corpus, indexed as
`rag eval` does) each answerable question is searched and judged by the gate as
in `rag eval`; every sentence of the passages the gate passes becomes an
example, labelled by whether it holds the question's expected answer facts
(`answer_must`). A pairwise logistic regression (scikit-learn; each pair is an
answering sentence against a non-answering one of the same question, as a
feature difference, no intercept) gives a linear score whose differences are
log-odds. It is cross-validated with the sets grouped by corpus: each corpus is
judged by a model fitted without it, and the file stores those out-of-fold
figures (the share of questions whose first picked sentence holds the answer,
the old hand-weighted picker's next to it). The scores as a softmax over a
question's sentences give each the chance that it answers; their temperature
is fitted on the out-of-fold scores, and the answer quotes sentences until
they hold the answer with chance COVERAGE (the file reports how often the
quote did, out of fold). `--check` refits and fails when the stored file
differs, so the data file is reproducible.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from fit_gate import checkpoint_rows, fit_parser, fit_rows, write_or_check  # noqa: E402  (the gate's row files, same format per line)

# Sentences are quoted, best first, until the model gives them this chance of holding the
# answer (its scores as a softmax over the candidates, the temperature fitted out of fold),
# and never more than MAX_SENTENCES: the answer is a quote, not the passage.
COVERAGE = 0.8
MAX_SENTENCES = 3


def collect(manifest: Path, cache: Path, rows_file: Path | None = None) -> list[dict]:
    """One row per answerable question the gate lets through: its candidate sentences."""
    from rag.answering.extractive import passage_sentences
    from rag.answering.gate import AnswerabilityGate
    from rag.embedmodel import load_embedder
    from rag.evaluate import facts_ok, fit_sets, load_questions, open_set_assistant
    from rag.settings import Settings

    settings = Settings(llm="extractive")
    embedder = load_embedder(settings)
    rows: list[dict] = []
    for spec in fit_sets(manifest):
        a = open_set_assistant(spec, settings, cache, embedder=embedder)
        s = a.searcher
        group = spec.corpus_name
        gate = AnswerabilityGate(corpus=s)
        k = max(5, settings.top_k)  # as rag eval asks
        t0 = time.perf_counter()
        for it in load_questions(spec.questions):
            if not it.answerable or not it.answer_must:
                continue
            hits = s.search(it.question, k)
            sup = gate.check(it.question, hits)
            sents = []
            for hi in sup.passing:
                text = hits[hi].chunk.text
                for a0, b0, feats in passage_sentences(sup.question, hits, hi, sup.scores[hi]):
                    sents.append({"hit": hi, "start": a0, "end": b0, "features": feats,
                                  "label": facts_ok(text[a0:b0], it.answer_must)})
            if sents:
                rows.append({"set": spec.name, "group": group, "id": it.id, "lang": it.lang,
                             "question": it.question, "sentences": sents})
        checkpoint_rows(spec.name, rows, t0, rows_file, dump_rows)
    return rows


def dump_rows(rows: list[dict]) -> str:
    """One row per line, features rounded: a reviewable data file."""
    def rounded(r):
        return {**r, "sentences": [{**s, "features": {k: round(v, 5) for k, v in s["features"].items()}}
                                   for s in r["sentences"]]}

    return "\n".join(json.dumps(rounded(r), ensure_ascii=False) for r in rows) + "\n"


def _x(sentence: dict) -> list[float]:
    from rag.answering.extractive import SENTENCE_FEATURES

    return [sentence["features"][k] for k in SENTENCE_FEATURES]


def _fit(rows: list[dict], c: float):
    from sklearn.linear_model import LogisticRegression

    allx = np.array([_x(s) for r in rows for s in r["sentences"]], dtype=float)
    scale = allx.std(0)
    scale[scale == 0] = 1.0
    X, y = [], []
    for r in rows:
        pos = [np.array(_x(s)) for s in r["sentences"] if s["label"]]
        neg = [np.array(_x(s)) for s in r["sentences"] if not s["label"]]
        for p in pos:
            for n in neg:
                X += [(p - n) / scale, (n - p) / scale]
                y += [1, 0]
    clf = LogisticRegression(C=c, fit_intercept=False, max_iter=5000).fit(np.array(X), np.array(y))
    return scale, clf.coef_[0]


def _first_ok(row: dict, scale, coef) -> bool:
    z = [float((np.array(_x(s)) / scale) @ coef) for s in row["sentences"]]
    best = max(range(len(z)), key=lambda i: (z[i], -i))  # ties: passages' order, then document order
    return bool(row["sentences"][best]["label"])


def _old_first_ok(row: dict) -> bool:
    """The hand-weighted picker this model replaced: covered terms (spread-discounted)
    + 0.3 for the kind asked + 0.1 a name + 0.1 / (passage order + 1)."""
    def old(s):
        f = s["features"]
        names = f["names"]  # a share here; the old picker counted names, the same order within a question
        return f["cover_spread"] + 0.3 * f["kind"] + 0.1 * names + 0.1 * f["inv_rank"]

    sents = row["sentences"]
    best = max(range(len(sents)), key=lambda i: (old(sents[i]), -i))
    return bool(sents[best]["label"])


def _scores(row: dict, scale, coef) -> np.ndarray:
    return np.array([float((np.array(_x(s)) / scale) @ coef) for s in row["sentences"]])


def _temperature(scored: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """The temperature that makes the softmax of the scores the likeliest account of which
    sentences answer (maximum likelihood over the questions with an answering sentence)."""
    from scipy.optimize import minimize_scalar
    from scipy.special import logsumexp

    data = [(z, y) for z, y in scored if y.any()]

    def nll(log_t: float) -> float:
        t = math.exp(log_t)
        return -sum(logsumexp(z[y] / t) - logsumexp(z / t) for z, y in data)

    return round(math.exp(minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded",
                                          options={"xatol": 1e-6}).x), 4)


def _quoted(z: np.ndarray, temperature: float) -> list[int]:
    """The sentences pick_spans quotes (its names and language rules aside)."""
    from rag.answering.extractive import answer_probabilities

    order = sorted(range(len(z)), key=lambda i: (-z[i], i))
    probs = answer_probabilities([float(z[i]) for i in order], temperature)
    out, held = [], 0.0
    for i, p in zip(order, probs):
        if out and held >= COVERAGE:
            break
        out.append(i)
        held += p
        if len(out) >= MAX_SENTENCES:
            break
    return out


def fit(rows: list[dict], c: float) -> dict:
    from rag.answering.extractive import SENTENCE_FEATURES

    groups = sorted({r["group"] for r in rows})
    cv = {}
    oof: dict[int, np.ndarray] = {}  # each row's scores by the model fitted without its corpus
    for g in groups:
        scale, coef = _fit([r for r in rows if r["group"] != g], c)
        for i, r in enumerate(rows):
            if r["group"] == g:
                oof[i] = _scores(r, scale, coef)
        for name in sorted({r["set"] for r in rows if r["group"] == g}):
            sub = [r for r in rows if r["set"] == name]
            cv[name] = {"first_sentence_answers": round(float(np.mean([_first_ok(r, scale, coef) for r in sub])), 3),
                        "hand_weighted_picker": round(float(np.mean([_old_first_ok(r) for r in sub])), 3),
                        "questions": len(sub)}
    labels = [np.array([bool(s["label"]) for s in r["sentences"]]) for r in rows]
    temperature = _temperature([(oof[i], labels[i]) for i in range(len(rows))])
    for name in cv:
        idx = [i for i, r in enumerate(rows) if r["set"] == name]
        quoted = [_quoted(oof[i], temperature) for i in idx]
        cv[name]["quote_holds_answer"] = round(float(np.mean([labels[i][q].any() for i, q in zip(idx, quoted)])), 3)
        cv[name]["sentences_quoted"] = round(float(np.mean([len(q) for q in quoted])), 2)
    scale, coef = _fit(rows, c)
    return {
        "about": "Sentence picker of extractive answers (rag/answering/extractive.py), "
                 "fitted by scripts/fit_picker.py; do not edit by hand.",
        "features": SENTENCE_FEATURES,
        "scale": [round(float(v), 6) for v in scale],
        "coef": [round(float(v), 6) for v in coef],
        "temperature": temperature,
        "coverage": COVERAGE,
        "max_sentences": MAX_SENTENCES,
        "fit": {"C": c, "sets": sorted({r["set"] for r in rows}), "questions": len(rows),
                "sentences": sum(len(r["sentences"]) for r in rows)},
        "cross_validation": {"folds": "one per corpus group: " + ", ".join(groups),
                             "temperature": "fitted on the out-of-fold scores",
                             "quote": f"out of fold, sentences quoted until they hold the answer with "
                                      f"chance {COVERAGE} (at most {MAX_SENTENCES})",
                             "by_set": cv},
    }


def main(argv: list[str] | None = None) -> int:
    p = fit_parser(__doc__.split("\n")[0], "picker.json", "picker-rows.json")
    p.add_argument("--C", type=float, default=0.1)
    args = p.parse_args(argv)
    rows = fit_rows(args, collect)
    model = fit(rows, args.C)
    for name, m in model["cross_validation"]["by_set"].items():
        print(f"{name:14s} {m}")
    return write_or_check(Path(args.out), model, args.check, lambda old, new: all(
        np.allclose(old[k], new[k], atol=1e-3) for k in ("scale", "coef"))
        and all(old.get(k) == new[k] for k in ("temperature", "coverage", "max_sentences")))


if __name__ == "__main__":
    raise SystemExit(main())

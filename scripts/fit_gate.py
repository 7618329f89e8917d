"""Fit the answerability gate (rag/data/gate.json) on the development sets.

    python scripts/fit_gate.py [--out rag/data/gate.json] [--check]

For every set of evals/sets.toml (its questions over its own corpus, indexed
with the real embedder into runs/.index-cache/ as `rag eval` does) each question is searched and each of the top
passages becomes an example: label 1 when it holds the question's evidence.
Hard unanswerable examples are drawn from the answerable questions by leaving
their source article out of the results (the passages that remain are on the
same topic but do not hold the answer); the sets' own unanswerable questions
are kept too. A logistic regression (scikit-learn) is cross-validated with the
sets grouped by corpus, so no corpus is both fitted on and judged; the
threshold is the one the out-of-fold scores give for a false-refusal rate of
at most `--max-false-refusals`. `--check` refits and fails when the stored
file differs, so the data file is reproducible.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SEARCH_DEPTH = 30


def collect(manifest: Path, cache: Path, rows_file: Path | None = None) -> list[dict]:
    """One row per question variant: features of its top passages and their labels."""
    from rag.embedmodel import load_embedder
    from rag.evaluate import load_manifest, load_questions, open_set_assistant, supports
    from rag.gate import TOP_PASSAGES, AnswerabilityGate
    from rag.settings import Settings

    settings = Settings(llm="extractive")
    embedder = load_embedder(settings)
    rows: list[dict] = []
    for spec in load_manifest(manifest):
        s = open_set_assistant(spec, settings, cache, embedder=embedder).searcher
        group = spec.corpus.name if spec.corpus.name != "corpus" else spec.corpus.parent.name
        gate = AnswerabilityGate(model=_blank_model(), idf=s.keyword.idf, vocab=s.vocab)
        t0 = time.perf_counter()
        for it in load_questions(spec.questions):
            hits = s.search(it.question, SEARCH_DEPTH)
            q = gate.question(it.question)
            variants = [("asked", hits, it.answerable)]
            if it.answerable:
                source = next((h.chunk.source for h in hits if supports(h.chunk.text, it.evidence)), None)
                if source is not None:
                    rest = [h for h in hits if h.chunk.source != source]
                    if rest:
                        variants.append(("source-left-out", rest, False))
            for variant, hs, answerable in variants:
                top = hs[:TOP_PASSAGES]
                rows.append({
                    "set": spec.name, "group": group, "id": it.id, "variant": variant,
                    "answerable": answerable, "lang": it.lang,
                    "features": [gate.features(q, top, i) for i in range(len(top))],
                    "labels": [bool(answerable and supports(h.chunk.text, it.evidence)) for h in top],
                })
        n = sum(r["set"] == spec.name for r in rows)
        print(f"{spec.name}: {n} rows in {time.perf_counter() - t0:.1f} s", flush=True)
        if rows_file is not None:  # a long run keeps what it has collected so far
            rows_file.parent.mkdir(parents=True, exist_ok=True)
            rows_file.write_text(dump_rows(rows), encoding="utf-8")
    return rows


def dump_rows(rows: list[dict]) -> str:
    """One row per line, features rounded: a reviewable data file."""
    def rounded(r):
        return {**r, "features": [{k: round(v, 5) for k, v in f.items()} for f in r["features"]]}

    return "\n".join(json.dumps(rounded(r), ensure_ascii=False) for r in rows) + "\n"


def load_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _blank_model() -> dict:
    from rag.gate import FEATURES

    n = len(FEATURES)
    return {"features": FEATURES, "coef": [0.0] * n, "mean": [0.0] * n, "scale": [1.0] * n,
            "intercept": 0.0, "threshold": 0.5}


def _matrix(rows: list[dict]):
    from rag.gate import FEATURES

    X, y = [], []
    for r in rows:
        for f, lab in zip(r["features"], r["labels"]):
            X.append([f[k] for k in FEATURES])
            y.append(int(lab))
    return np.array(X, dtype=float), np.array(y)


def _fit(rows: list[dict], c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    X, y = _matrix(rows)
    scaler = StandardScaler().fit(X)
    scaler.scale_[scaler.scale_ == 0] = 1.0
    clf = LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(X), y)
    return scaler, clf


def _question_scores(rows: list[dict], scaler, clf) -> list[float]:
    from rag.gate import FEATURES

    out = []
    for r in rows:
        if not r["features"]:
            out.append(0.0)
            continue
        X = np.array([[f[k] for k in FEATURES] for f in r["features"]], dtype=float)
        out.append(float(clf.predict_proba(scaler.transform(X))[:, 1].max()))
    return out


def _threshold(rows: list[dict], scores: list[float], max_fr: float) -> float:
    """The highest threshold that refuses at most `max_fr` of the answerable questions
    whose evidence was retrieved (a refusal there is a false refusal)."""
    pos = sorted(s for r, s in zip(rows, scores) if r["answerable"] and any(r["labels"]))
    if not pos:
        return 0.5
    k = int(np.floor(max_fr * len(pos)))
    return float(pos[k]) - 1e-9 if k < len(pos) else 0.0


def metrics(rows: list[dict], scores: list[float], thr: float) -> dict:
    ans = [s for r, s in zip(rows, scores) if r["answerable"]]
    found = [s for r, s in zip(rows, scores) if r["answerable"] and any(r["labels"])]
    natural = [s for r, s in zip(rows, scores) if not r["answerable"] and r["variant"] == "asked"]
    made = [s for r, s in zip(rows, scores) if r["variant"] == "source-left-out"]

    def share(xs, refuse):
        return round(sum((x < thr) == refuse for x in xs) / len(xs), 3) if xs else None

    return {"false_refusals": share(ans, True), "false_refusals_when_retrieved": share(found, True),
            "refusal_accuracy": share(natural, True), "refusal_accuracy_left_out": share(made, True),
            "n_answerable": len(ans), "n_unanswerable": len(natural), "n_left_out": len(made)}


def fit(rows: list[dict], c: float, max_fr: float) -> dict:
    from rag.gate import FEATURES

    groups = sorted({r["group"] for r in rows})
    oof = [0.0] * len(rows)
    cv = {}
    for g in groups:
        train = [r for r in rows if r["group"] != g]
        test_idx = [i for i, r in enumerate(rows) if r["group"] == g]
        scaler, clf = _fit(train, c)
        thr = _threshold(train, _question_scores(train, scaler, clf), max_fr)
        test = [rows[i] for i in test_idx]
        scores = _question_scores(test, scaler, clf)
        for i, s in zip(test_idx, scores):
            oof[i] = s
        for name in sorted({r["set"] for r in test}):
            sub = [(r, s) for r, s in zip(test, scores) if r["set"] == name]
            cv[name] = {"threshold": round(thr, 4), **metrics([r for r, _ in sub], [s for _, s in sub], thr)}
    scaler, clf = _fit(rows, c)
    thr = _threshold(rows, oof, max_fr)
    return {
        "about": "Answerability gate (rag/gate.py), fitted by scripts/fit_gate.py; do not edit by hand.",
        "features": FEATURES,
        "mean": [round(float(v), 6) for v in scaler.mean_],
        "scale": [round(float(v), 6) for v in scaler.scale_],
        "coef": [round(float(v), 6) for v in clf.coef_[0]],
        "intercept": round(float(clf.intercept_[0]), 6),
        "threshold": round(thr, 4),
        "fit": {"C": c, "max_false_refusals": max_fr, "sets": sorted({r["set"] for r in rows}),
                "examples": int(len(_matrix(rows)[1])), "questions": len(rows)},
        "cross_validation": {"folds": "one per corpus group: " + ", ".join(groups), "by_set": cv,
                             "pooled_out_of_fold": metrics(rows, oof, thr)},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--manifest", default=str(ROOT / "evals" / "sets.toml"), help="the eval sets (rag eval's manifest)")
    p.add_argument("--out", default=str(ROOT / "rag" / "data" / "gate.json"))
    p.add_argument("--cache", default=str(ROOT / "runs" / ".index-cache"), help="where the sets are indexed (shared with rag eval)")
    p.add_argument("--rows", default=str(ROOT / "evals" / "gate-rows.json"),
                   help="the feature rows collected from the sets (written; read back with --reuse)")
    p.add_argument("--reuse", action="store_true", help="fit on the stored feature rows instead of collecting them")
    p.add_argument("--C", type=float, default=1.0)
    p.add_argument("--max-false-refusals", type=float, default=0.02)
    p.add_argument("--check", action="store_true", help="fail when the fitted model differs from --out")
    args = p.parse_args(argv)
    from rag.settings import offline_environment

    offline_environment()
    rows_file = Path(args.rows)
    if args.reuse and rows_file.is_file():
        rows = load_rows(rows_file)
    else:
        rows = collect(Path(args.manifest), Path(args.cache), rows_file)
    model = fit(rows, args.C, args.max_false_refusals)
    for name, m in model["cross_validation"]["by_set"].items():
        print(f"{name:14s} {m}")
    print("pooled", model["cross_validation"]["pooled_out_of_fold"], "threshold", model["threshold"])
    out = Path(args.out)
    text = json.dumps(model, ensure_ascii=False, indent=1) + "\n"
    if args.check:
        old = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else None
        same = old is not None and all(
            np.allclose(old[k], model[k], atol=1e-3) for k in ("mean", "scale", "coef", "intercept", "threshold"))
        print("gate.json reproduced" if same else "gate.json differs from a fresh fit")
        return 0 if same else 1
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

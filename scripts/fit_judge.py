"""Fit the answerability judge's thresholds (rag/data/judge.json) on the development sets.

    python scripts/fit_judge.py [--reuse] [--check] [--max-false-refusals 0.005]

For every set of evals/sets.toml each question goes the way an LLM-mode answer goes
(`Assistant.retrieve` with the model's query translation, the gate, the span picker:
`LLMAnswerer.select`); when the gate passes, the local model judges the picked evidence
sentences (rag/answering/judge.py) and its score is a row. The hard unanswerable variants
of scripts/fit_gate.py are judged too (the question with its source article left out, the
question about another name of its set), as are the sets' own unanswerable questions.

The threshold per question language (English / Chinese) is fitted on positives only: the
answerable questions whose evidence holds the expected facts. It is the score below which at
most `--max-false-refusals` (0.5 %) of them fall, less a margin for other machines: the same
prompt scores a little differently on another llama.cpp build, so the same rows collected on
other machines (evals/judge-rows-other-build*.json) count too: the thresholds are fitted on the
lowest score each row got on any build, and the margin is the least with which thresholds
fitted on any one build's rows keep the budget on every other build's positives. The unanswerable rows only measure the thresholds.
Cross-validation holds out one corpus group at a time (threshold from the others). Rows are
stored in evals/judge-rows.json; `--reuse` refits from them, `--check` fails when the fit
differs from the stored file. Another machine's rows (a CPU kind not collected yet) are added
with `--rows evals/judge-rows-other-build-N.json --out /tmp/judge.json` (collects there, writes
the fit aside), then `--reuse` refits rag/data/judge.json with them.
"""
from __future__ import annotations

import json
import math
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

# the variants of fit_gate.py that are judged (span-removed needs the gate's recomputed
# dense scores and gives the model a sentence with a hole in it: not a question users ask)
VARIANTS = ("asked", "source-left-out", "name-swapped")


def collect(manifest: Path, cache: Path, rows_file: Path | None = None) -> list[dict]:
    from fit_gate import checkpoint_rows, names_in, swap_name

    from rag.answering.judge import AnswerJudge
    from rag.embedmodel import load_embedder
    from rag.evaluate import facts_ok, fit_sets, load_questions, open_set_assistant, supports
    from rag.lang import to_simplified
    from rag.llm import build_judge
    from rag.settings import Settings

    settings = Settings(llm="llama-cpp")
    embedder = load_embedder(settings)
    judge = AnswerJudge(build_judge(settings), {})
    rows: list[dict] = []
    for spec in fit_sets(manifest):
        assistant = open_set_assistant(spec, settings, cache, embedder=embedder)
        answerer = assistant.answerer
        group = spec.corpus_name
        t0 = time.perf_counter()
        items = load_questions(spec.questions)
        pool = sorted({n for it in items for n in names_in(it.question)})
        for it in items:
            lang, hits = assistant.retrieve(it.question)
            variants = [("asked", it.question, hits, it.answerable)]
            if it.answerable:
                source = next((h.chunk.source for h in hits if supports(h.chunk.text, it.evidence)), None)
                rest = [h for h in hits if h.chunk.source != source]
                if source is not None and rest:
                    variants.append(("source-left-out", it.question, rest, False))
                swapped = swap_name(it.question, pool, random.Random(f"{spec.name}/{it.id}"))
                if swapped is not None:
                    q2, new = swapped
                    _, hits2 = assistant.retrieve(q2)
                    if not any(new.lower() in to_simplified(h.chunk.text).lower() for h in hits2[:3]):
                        variants.append(("name-swapped", q2, hits2, False))
            for variant, text, hs, answerable in variants:
                sel = answerer.select(text, hs, lang)
                evidence = [s for _, s in sel.evidence]
                passed = bool(sel.answerable and evidence)
                rows.append({
                    "set": spec.name, "group": group, "id": it.id, "variant": variant, "lang": lang,
                    "answerable": answerable, "gate_passed": passed,
                    # the evidence holds the expected facts: refusing it is a false refusal
                    "holds": bool(answerable and passed and facts_ok(" ".join(evidence), it.answer_must)),
                    "score": round(judge.score(text, evidence), 4) if passed else None,
                })
        checkpoint_rows(spec.name, rows, t0, rows_file, dump=dump_rows)
    return rows


def dump_rows(rows: list[dict]) -> str:
    return "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n"


def lang_key(row: dict) -> str:
    return "en" if row["lang"] == "en" else "zh"


def positives(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["variant"] == "asked" and r["holds"] and r["score"] is not None]


# The same prompt scores differently on another llama.cpp build: llama-cpp-python compiles
# for the CPU it is installed on, and the quantised kernels round differently (measured by
# `drift` on the rows collected on several machines: tenths of a logit). So the thresholds
# are fitted on the lowest score each row got on any build collected (`lowest`), and lie a
# margin under the positive that sets them, for a build not collected yet: the least margin
# (in hundredths) with which thresholds fitted on any one build's rows refuse at most
# `max_fr` of any other build's positives. Pairs, not each build left out against the
# lowest of the rest: two machines of the same CPU kind give nearly the same scores (median
# difference 0), and the rest would then always hold a twin of the left-out build. At most
# the largest 0.99 quantile of the paired differences between two builds (each positive
# stays answered on another build, 99 times in 100).
DRIFT_QUANTILE = 0.99
MIN_MARGIN = 0.01  # the scores are stored rounded to 1e-4


def _key(r: dict) -> tuple:
    return r["set"], r["id"], r["variant"]


def drift(rows: list[dict], other: list[dict]) -> dict:
    """How far the scores of the same rows, collected on two llama.cpp builds, lie apart."""
    theirs = {_key(r): r["score"] for r in other if r["score"] is not None}
    diffs = sorted(abs(r["score"] - theirs[_key(r)]) for r in rows if r["score"] is not None and _key(r) in theirs)
    if not diffs:
        return {"pairs": 0}

    def q(p):
        return round(diffs[min(len(diffs) - 1, math.ceil(p * len(diffs)) - 1)], 4)

    return {"pairs": len(diffs), "median": q(0.5), "p95": q(0.95), "p99": q(DRIFT_QUANTILE),
            "max": round(diffs[-1], 4)}


def lowest(builds: list[list[dict]]) -> list[dict]:
    """The first build's rows, each with the lowest score the same row got on any of the builds
    (a row another build did not score keeps its own)."""
    low: dict[tuple, float] = {}
    for rows in builds:
        for r in rows:
            if r["score"] is not None:
                low[_key(r)] = min(r["score"], low.get(_key(r), r["score"]))
    return [dict(r, score=low[_key(r)]) if r["score"] is not None else r for r in builds[0]]


def transfer_false_refusals(fit_on: list[dict], judged: list[dict], max_fr: float, margin: float) -> float:
    """The share of `judged`'s positives refused by thresholds fitted on `fit_on`."""
    thr = thresholds(fit_on, max_fr, margin)
    pos = positives(judged)
    return sum(r["score"] < thr[lang_key(r)] for r in pos) / len(pos) if pos else 0.0


def margin_for(builds: list[list[dict]], max_fr: float) -> dict:
    """The thresholds' margin under the positives, from the same rows collected on several
    llama.cpp builds (see above); the drift between each pair of builds is reported with it."""
    pairs = {f"{i}-{j}": drift(builds[i], builds[j])
             for i in range(len(builds)) for j in range(i + 1, len(builds))}
    pairs = {k: v for k, v in pairs.items() if v["pairs"]}
    if not pairs:
        return {"builds": len(builds), "margin": MIN_MARGIN}
    cap = max(MIN_MARGIN, max(v["p99"] for v in pairs.values()))
    folds = [(a, b) for i, a in enumerate(builds) for j, b in enumerate(builds) if i != j]
    margin = MIN_MARGIN
    while margin < cap and not all(transfer_false_refusals(a, b, max_fr, margin) <= max_fr for a, b in folds):
        margin = round(margin + 0.01, 2)
    return {"builds": len(builds), "pairs": pairs, "margin": min(margin, cap)}


def thresholds(rows: list[dict], max_fr: float, margin: float = MIN_MARGIN) -> dict[str, float]:
    """Per language: `margin` below the k-th lowest positive score, k = floor(max_fr * n), so
    that at most that share of the positives scores below it, on this build or another."""
    out = {}
    for key in ("en", "zh"):
        scores = sorted(r["score"] for r in positives(rows) if lang_key(r) == key)
        if not scores:
            raise SystemExit(f"no answerable {key} questions passed the gate: nothing to fit on")
        out[key] = scores[math.floor(max_fr * len(scores))] - margin
    return out


def metrics(rows: list[dict], thr: dict[str, float]) -> dict:
    """What the judge adds on these rows with these thresholds."""
    def refused(r):
        return r["score"] is not None and r["score"] < thr[lang_key(r)]

    pos = positives(rows)
    out = {"n_positive": len(pos),
           "false_refusals_added": round(sum(map(refused, pos)) / len(pos), 3) if pos else None}
    for v in VARIANTS:
        neg = [r for r in rows if r["variant"] == v and not r["answerable"]]
        if not neg:
            continue
        passed = [r for r in neg if r["gate_passed"]]
        out[v] = {"n": len(neg), "gate_refused": round(1 - len(passed) / len(neg), 3),
                  "judge_refused_of_passed": round(sum(map(refused, passed)) / len(passed), 3) if passed else None,
                  "refused_with_judge": round((len(neg) - len(passed) + sum(map(refused, passed))) / len(neg), 3)}
    return out


def fit(rows: list[dict], max_fr: float, model_label: str, others: list[list[dict]] = ()) -> dict:
    """Thresholds on the lowest score each row got on any build (`rows` and `others`, the same
    rows collected on other machines), less the margin for a build not seen; the figures are
    measured on `rows`, the scores of one build as the eval sees them."""
    from rag.answering.judge import prompt_hash

    builds = [rows, *[o for o in others if o]]
    spread = margin_for(builds, max_fr)
    margin = spread["margin"]
    low = lowest(builds)

    groups = sorted({r["group"] for r in rows})
    cv = {}
    for g in groups:
        thr = thresholds([r for r in low if r["group"] != g], max_fr, margin)
        test = [r for r in rows if r["group"] == g]
        for name in sorted({r["set"] for r in test}):
            cv[name] = {"threshold": thr, **metrics([r for r in test if r["set"] == name], thr)}
    thr = thresholds(low, max_fr, margin)
    return {
        "about": "Answerability judge thresholds (rag/answering/judge.py), fitted by scripts/fit_judge.py; "
                 "do not edit by hand.",
        "prompt": prompt_hash(),
        "model": model_label,
        "threshold": {k: round(v, 4) for k, v in thr.items()},
        "fit": {"max_false_refusals": max_fr, "sets": sorted({r["set"] for r in rows}),
                "positives": {k: sum(lang_key(r) == k for r in positives(rows)) for k in ("en", "zh")},
                "drift_between_builds": spread},
        "cross_validation": {"folds": "one per corpus group: " + ", ".join(groups), "by_set": cv},
        "in_sample": metrics(rows, thr),
    }


def main(argv: list[str] | None = None) -> int:
    from fit_gate import fit_parser, fit_rows, load_rows, write_or_check

    from rag.llm import MODEL_LABEL

    p = fit_parser(__doc__.split("\n")[0], "judge.json", "judge-rows.json")
    # the gate already spends 2 % of false refusals: the judge may add half a percent
    p.add_argument("--max-false-refusals", type=float, default=0.005)
    p.add_argument("--other-build-rows", nargs="*",
                   default=[str(f) for f in sorted((ROOT / "evals").glob("judge-rows-other-build*.json"))],
                   help="the same rows collected on other machines' llama.cpp builds (default: "
                        "evals/judge-rows-other-build*.json): the thresholds hold on the lowest score "
                        "a row got on any build, and how far the builds drift sets their margin")
    args = p.parse_args(argv)
    rows = fit_rows(args, collect)
    others = [load_rows(Path(f)) for f in args.other_build_rows if Path(f).is_file()
              and Path(f).resolve() != Path(args.rows).resolve()]
    model = fit(rows, args.max_false_refusals, MODEL_LABEL, others)
    print("drift between builds", model["fit"]["drift_between_builds"])
    for name, m in model["cross_validation"]["by_set"].items():
        print(f"{name:14s} {m}")
    print("in sample", model["in_sample"], "threshold", model["threshold"])
    return write_or_check(Path(args.out), model, args.check, lambda old, new: (
        old.get("prompt") == new["prompt"] and old.get("threshold") == new["threshold"]))


if __name__ == "__main__":
    raise SystemExit(main())

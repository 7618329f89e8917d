"""Answer latency benchmark: time to first token and total answer time, p50/p95.

    python bench/answer_latency.py [evals/questions.jsonl] [--limit N] [--translate]
                                   [--interleave] [--no-prefix-states]
                                   [--out runs/bench/answer_latency.json]

Runs every question through `Assistant.stream` (retrieval + answer, as `rag ask`
does) with the configured backend (RAG_LLM; the LLM must be prepared), after one
warm-up question that is not counted (model load, prompt cache). Also reports,
from the same answers, fact accuracy, the share of English questions answered in
English, refusals, retries, extractive fallbacks, and the answerability judge's
time per judged question and its refusals. `--translate` also times
`rag.answering.translate_query` on the English questions (its cost for retrieval).
`--interleave` asks the questions round-robin by language (a user who switches language
every question) and `--no-prefix-states` drops the answering context's saved prompt states
(rag.llm.PrefixStates); time to first token is also reported apart for the questions asked
in another language than the one before (`ttft_switch_*`) and for the rest (`ttft_same_*`).

This is a measurement, not a test: it asserts nothing. The machine's load average
is printed before and after, because other work on the 2 cores skews every number.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", nargs="?", default="evals/questions.jsonl")
    p.add_argument("--limit", type=int, default=0, help="only the first N questions")
    p.add_argument("--translate", action="store_true", help="also time translate_query on English questions")
    p.add_argument("--interleave", action="store_true",
                   help="ask round-robin by language (each question in another language than the last)")
    p.add_argument("--no-prefix-states", action="store_true",
                   help="without the answering context's saved per-language prompt states")
    p.add_argument("--out", default="runs/bench/answer_latency.json")
    args = p.parse_args(argv)

    from rag.settings import offline_environment

    offline_environment()
    from rag.assistant import Assistant
    from rag.evaluate import answered_in_english, facts_ok, load_questions
    from rag.types import Answer, UserError

    items = load_questions(args.file)
    if args.interleave:
        by_lang: dict[str, list] = {}
        for it in items:
            by_lang.setdefault(it.lang, []).append(it)
        queues = list(by_lang.values())
        items = [q[i] for i in range(max(map(len, queues))) for q in queues if i < len(q)]
    if args.limit:
        items = items[: args.limit]
    try:
        assistant = Assistant.from_settings()
        answerer = assistant.answerer
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if answerer.mode != "llm":
        print(f"error: no LLM to benchmark ({assistant.notice or 'extractive mode'})", file=sys.stderr)
        return 2
    if args.no_prefix_states and hasattr(answerer.llm, "keep_prefix_states"):
        answerer.llm.keep_prefix_states(None)
    load_before = os.getloadavg()
    list(assistant.stream(items[0].question))  # warm-up, not counted

    rows = []
    previous = items[0].lang  # the warm-up's
    for it in items:
        t0 = time.perf_counter()
        first = None
        final = None
        for item in assistant.stream(it.question):
            if isinstance(item, Answer):
                final = item
            elif first is None and item:
                first = time.perf_counter() - t0
        total = time.perf_counter() - t0
        timing = getattr(answerer, "last_timing", None)
        row = {
            "id": it.id,
            "lang": it.lang,
            "answerable": it.answerable,
            "ttft_s": round(first if first is not None else total, 3),
            "switched": it.lang != previous,
            "total_s": round(total, 3),
            "mode": final.mode,
            "refused": final.refused,
            "attempts": getattr(timing, "attempts", None),
            "fallback": getattr(timing, "fallback", None),
            "judge_s": None if getattr(timing, "judge_seconds", None) is None else round(timing.judge_seconds, 3),
            "judge_refused": bool(final.refused and getattr(timing, "judge", None) is not None),
            "facts_ok": it.answerable and not final.refused and facts_ok(final.text, it.answer_must),
            "english": answered_in_english(final.text) if it.lang == "en" and not final.refused else None,
            "answer": final.text,
        }
        rows.append(row)
        previous = it.lang
        print(f"{row['id']:10s} ttft {row['ttft_s']:6.2f}s total {row['total_s']:6.2f}s "
              f"{'REFUSED ' if final.refused else ''}{final.text[:90]!r}", flush=True)

    translate = None
    if args.translate:
        from rag.answering.translate import translate_query

        times, outs = [], {}
        for it in items:
            if it.lang != "en":
                continue
            t0 = time.perf_counter()
            outs[it.id] = translate_query(it.question, answerer.llm)
            times.append(time.perf_counter() - t0)
        translate = {"n": len(times), "p50_s": round(pct(times, 0.5), 3), "p95_s": round(pct(times, 0.95), 3),
                     "outputs": outs}

    ans = [r for r in rows if r["answerable"]]
    un = [r for r in rows if not r["answerable"]]
    en = [r for r in rows if r["english"] is not None]
    ttft = [r["ttft_s"] for r in rows]
    total = [r["total_s"] for r in rows]
    judged = [r["judge_s"] for r in rows if r["judge_s"] is not None]
    # answered (not refused) only: a refusal by the gate has no model prompt to evaluate
    switch = [r["ttft_s"] for r in rows if r["switched"] and not r["refused"]]
    same = [r["ttft_s"] for r in rows if not r["switched"] and not r["refused"]]
    summary = {
        "n": len(rows),
        "ttft_p50_s": round(pct(ttft, 0.5), 3),
        "ttft_p95_s": round(pct(ttft, 0.95), 3),
        "ttft_switch_p50_s": round(pct(switch, 0.5), 3) if switch else None,
        "ttft_same_p50_s": round(pct(same, 0.5), 3) if same else None,
        "answered_after_switch": len(switch),
        "prefix_states": not args.no_prefix_states,
        "total_p50_s": round(pct(total, 0.5), 3),
        "total_p95_s": round(pct(total, 0.95), 3),
        "fact_accuracy": round(statistics.mean(r["facts_ok"] for r in ans), 3) if ans else None,
        "english_answer_share": round(statistics.mean(bool(r["english"]) for r in en), 3) if en else None,
        "refusal_accuracy": round(statistics.mean(r["refused"] for r in un), 3) if un else None,
        "false_refusal_rate": round(statistics.mean(r["refused"] for r in ans), 3) if ans else None,
        "retried": sum(1 for r in rows if (r["attempts"] or 1) > 1),
        "fallbacks": sum(1 for r in rows if r["fallback"]),
        # the answerability judge (LLM mode): its time per judged question, and its refusals
        "judge_p50_s": round(pct(judged, 0.5), 3) if judged else None,
        "judge_p95_s": round(pct(judged, 0.95), 3) if judged else None,
        "judge_refusals": sum(1 for r in rows if r["judge_refused"]),
        "llm": assistant.llm_status(),
        "cpu_count": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "translate_query": translate,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "questions": rows}, ensure_ascii=False, indent=1), encoding="utf-8")
    print()
    for key in ("n", "ttft_p50_s", "ttft_p95_s", "ttft_switch_p50_s", "ttft_same_p50_s",
                "answered_after_switch", "prefix_states", "total_p50_s", "total_p95_s", "fact_accuracy",
                "english_answer_share", "refusal_accuracy", "false_refusal_rate", "retried", "fallbacks",
                "judge_p50_s", "judge_p95_s", "judge_refusals", "llm", "loadavg_before", "loadavg_after"):
        print(f"{key:22s} {summary[key]}")
    if translate:
        print(f"{'translate_query p50':22s} {translate['p50_s']} s (p95 {translate['p95_s']} s, n={translate['n']})")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

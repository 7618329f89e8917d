"""LLM query translation for English questions over Chinese documents: what it costs, what it adds.

    RAG_SEEDS_DIR=evals/cmrc-train/corpus RAG_INDEX_DIR=/tmp/xl-index .venv/bin/python -m rag.cli index
    RAG_SEEDS_DIR=evals/cmrc-train/corpus RAG_INDEX_DIR=/tmp/xl-index .venv/bin/python -m bench.query_translation \
        --en ../shared/evals/crosslingual/questions.jsonl --zh ../shared/evals/cmrc-train/questions.jsonl

Times `rag.answering.translate_query` on the translator context (`rag.llm.build_translator`) per English
question (p50/p95 after a warm-up), and measures retrieval hit@1/hit@3 (a top chunk holds an evidence
string, `rag.evaluate.supports`) for: (a) the English question as today (dense + CC-CEDICT bridge),
(b) the translation alone, (c) English + translation fused (`Searcher.search(..., variants=[t])`, and
reciprocal-rank fusion for comparison), (d) the same question asked in Chinese (upper bound).
`--profile N` also measures, on the answering context, what a translation did before: the old prompt
(no stop, no examples) and the cache eviction between an answer prompt and a translation.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from rag.evaluate import load_questions, percentile as pct, supports
from rag.retrieval import fuse_hit_lists


def memory() -> dict[str, int]:
    """RssAnon / RssFile (kB) and PSS (kB): a second context on mmapped weights shares the file pages."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("RssAnon:", "RssFile:", "VmRSS:")):
            out[line.split(":")[0]] = int(line.split()[1])
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            out["Pss"] = int(line.split()[1])
    return out


def rrf(lists, k: int, c: int = 60):
    score: dict[str, float] = {}
    first = {}
    for hits in lists:
        for h in hits:
            score[h.chunk.id] = score.get(h.chunk.id, 0.0) + 1.0 / (c + h.rank)
            first.setdefault(h.chunk.id, h)
    return [first[cid] for cid, _ in sorted(score.items(), key=lambda kv: -kv[1])[:k]]


def hit_at(hits, evidence, n: int) -> bool:
    return any(supports(h.chunk.text, evidence) for h in hits[:n])


def profile(settings, questions: list[str], n: int) -> dict:
    """Old vs new translation on the answering context, and the answer prefix's re-evaluation."""
    from llama_index.core.llms import ChatMessage

    from rag.answering.passages import build_messages
    from rag.answering.translate import TRANSLATE_STOP, translate_messages
    from rag.llm import build_llm
    from tests.fakes_llm import article_hits

    llm = build_llm(settings)
    old_system = ("Translate the user's question into Simplified Chinese. Do not answer it. Output only the "
                  "Chinese translation of the question, nothing else.")
    answer_prompt = build_messages("What did Shanghai announce in August?", article_hits(), "zh-Hans")

    def timed(messages, **kw):
        t0 = time.perf_counter()
        r = llm.chat(messages, **kw)
        usage = (r.raw or {}).get("usage", {}) if isinstance(r.raw, dict) else {}
        return time.perf_counter() - t0, usage.get("prompt_tokens"), usage.get("completion_tokens"), r.message.content

    rows = []
    llm.chat(answer_prompt, max_tokens=1)  # warm
    for q in questions[:n]:
        ans_warm = timed(answer_prompt, max_tokens=1)  # answer prefix already cached
        old = timed([ChatMessage(role="system", content=old_system), ChatMessage(role="user", content=q)],
                    max_tokens=48)
        ans_after_old = timed(answer_prompt, max_tokens=1)  # the answer prefix again, after eviction
        new = timed(translate_messages(q), max_tokens=48, stop=list(TRANSLATE_STOP))
        rows.append({
            "question": q,
            "answer_prefix_cached_s": round(ans_warm[0], 3),
            "old_translate_s": round(old[0], 3), "old_completion_tokens": old[2], "old_output": old[3],
            "answer_prefix_after_translate_s": round(ans_after_old[0], 3),
            "answer_prompt_tokens": ans_after_old[1],
            "new_prompt_on_shared_context_s": round(new[0], 3), "new_completion_tokens": new[2],
        })
        print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
    keys = [k for k in rows[0] if k.endswith("_s") or k.endswith("tokens")]
    return {"rows": rows, "median": {k: statistics.median([r[k] for r in rows if r[k] is not None]) for k in keys}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--en", required=True, help="English questions (jsonl)")
    p.add_argument("--zh", required=True, help="the same questions in Chinese, same order (jsonl)")
    p.add_argument("--out", default="runs/query_translation.json")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--profile", type=int, default=0, help="also profile N questions on the answering context")
    args = p.parse_args(argv)

    from rag.assistant import Assistant
    from rag.answering.translate import translate_query
    from rag.llm import build_translator
    from rag.settings import Settings

    settings = Settings(llm="llama-cpp")
    assistant = Assistant.from_settings(settings)
    searcher = assistant.searcher
    en = load_questions(args.en)
    zh = load_questions(args.zh)
    assert len(en) == len(zh) and all(a.evidence == b.evidence for a, b in zip(en, zh)), "sets must align"

    mem0 = memory()
    t0 = time.perf_counter()
    translator = build_translator(settings)
    load_s = time.perf_counter() - t0
    mem1 = memory()
    for it in en[: args.warmup]:
        translate_query(it.question, translator)

    load_before = os.getloadavg()
    times, rows = [], []
    variants = ("a_english", "b_translation", "c_fused", "c_fused_w2", "c_rrf", "d_chinese")
    for a, b in zip(en, zh):
        t = time.perf_counter()
        tr = translate_query(a.question, translator)
        times.append(time.perf_counter() - t)
        row = {"id": a.id, "question": a.question, "translation": tr, "chinese": b.question,
               "answerable": a.answerable, "translate_s": round(times[-1], 3)}
        if a.answerable:
            l_en = searcher.search(a.question, 20)
            l_tr = searcher.search(tr, 20) if tr else l_en
            l_zh = searcher.search(b.question, 20)
            lists = {
                "a_english": l_en,
                "b_translation": l_tr,
                "c_fused": searcher.search(a.question, 3, variants=[tr] if tr else None),
                "c_fused_w2": fuse_hit_lists([l_en, l_tr], 3, [1.0, 2.0]) if tr else l_en,
                "c_rrf": rrf([l_en, l_tr], 3) if tr else l_en,
                "d_chinese": l_zh,
            }
            for name, hits in lists.items():
                row[name] = [hit_at(hits, a.evidence, 1), hit_at(hits, a.evidence, 3)]
        rows.append(row)
        print(f"{a.id:8s} {row['translate_s']:5.2f}s {a.question[:60]!r} -> {tr!r}", flush=True)

    ans = [r for r in rows if r["answerable"]]
    table = {v: {"hit@1": round(statistics.mean(r[v][0] for r in ans), 3),
                 "hit@3": round(statistics.mean(r[v][1] for r in ans), 3)} for v in variants}
    summary = {
        "n_questions": len(rows), "n_answerable": len(ans),
        "translate_p50_s": round(pct(times, 0.5), 3), "translate_p95_s": round(pct(times, 0.95), 3),
        "translate_mean_s": round(statistics.mean(times), 3),
        "translations_failed": sum(1 for r in rows if r["translation"] is None),
        "translator_load_s": round(load_s, 2),
        "translator_memory_kB": {k: mem1[k] - mem0[k] for k in mem0},
        "retrieval": table, "cpu_count": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    if args.profile:
        summary["profile_answering_context"] = profile(settings, [r["question"] for r in rows], args.profile)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "questions": rows}, ensure_ascii=False, indent=1),
                   encoding="utf-8")
    print(f"\ntranslate_query: p50 {summary['translate_p50_s']} s, p95 {summary['translate_p95_s']} s "
          f"(n={len(times)}, failed {summary['translations_failed']}); translator context: load "
          f"{summary['translator_load_s']} s, memory {summary['translator_memory_kB']} kB; "
          f"loadavg {summary['loadavg_before']} -> {summary['loadavg_after']}")
    print(f"\n{'variant':16s} hit@1  hit@3   (n={len(ans)} answerable)")
    for v in variants:
        print(f"{v:16s} {table[v]['hit@1']:.3f}  {table[v]['hit@3']:.3f}")
    if args.profile:
        print("\nanswering-context profile (medians):", summary["profile_answering_context"]["median"])
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

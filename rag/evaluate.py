"""Eval runner: questions JSONL in, results.json and a score table out.

Scores: hit@1/3/5 and MRR of the evidence among retrieved chunks, answer fact
accuracy, refusal accuracy, false-refusal rate, latency; overall and per lang.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from rag.lang import detect_lang, to_simplified
from rag.types import UserError

_PUNCT_RE = re.compile(r"[\s\W_]+", re.UNICODE)
_CITE_RE = re.compile(r"\[\d+\]")


@dataclass
class EvalItem:
    id: str
    question: str
    lang: str = ""
    evidence: list[str] = field(default_factory=list)
    answer_must: list[list[str]] = field(default_factory=list)
    answerable: bool = True


def load_questions(path: str | Path) -> list[EvalItem]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"eval file not found: {p}")
    items = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{p}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("question"), str) or not obj["question"].strip():
            raise UserError(f"{p}:{n}: each line needs an object with a non-empty \"question\"")
        must = obj.get("answer_must") or []
        if must and not all(isinstance(g, list) for g in must):
            raise UserError(f"{p}:{n}: \"answer_must\" must be a list of lists of strings")
        items.append(
            EvalItem(
                id=str(obj.get("id", f"q{n}")),
                question=obj["question"],
                lang=str(obj.get("lang") or detect_lang(obj["question"])),
                evidence=[str(e) for e in obj.get("evidence") or []],
                answer_must=[[str(a) for a in g] for g in must],
                answerable=bool(obj.get("answerable", True)),
            )
        )
    if not items:
        raise UserError(f"{p}: no questions")
    return items


def _norm(text: str) -> str:
    return _PUNCT_RE.sub("", to_simplified(text).lower())


def supports(chunk_text: str, evidence: list[str]) -> bool:
    """A chunk supports a question when, in simplified Chinese (punctuation
    and spacing ignored), it contains any evidence string."""
    t = _norm(chunk_text)
    return any(_norm(e) and _norm(e) in t for e in evidence)


def facts_ok(answer: str, groups: list[list[str]]) -> bool:
    a = to_simplified(answer).lower()
    return all(any(alt.lower() in a for alt in group) for group in groups)


def answered_in_english(text: str) -> bool:
    return detect_lang(_CITE_RE.sub("", text)) == "en"


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    i = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return s[i]


def summarize(rows: list[dict]) -> dict:
    ans = [r for r in rows if r["answerable"]]
    un = [r for r in rows if not r["answerable"]]

    def mean(xs):
        return round(sum(xs) / len(xs), 4) if xs else None

    lat = [r["latency_ms"] for r in rows]
    en = [r for r in rows if r.get("lang") == "en" and r["answerable"] and not r["refused"]]
    return {
        "n": len(rows),
        "answerable": len(ans),
        "unanswerable": len(un),
        "hit@1": mean([r["evidence_rank"] is not None and r["evidence_rank"] <= 1 for r in ans]),
        "hit@3": mean([r["evidence_rank"] is not None and r["evidence_rank"] <= 3 for r in ans]),
        "hit@5": mean([r["evidence_rank"] is not None and r["evidence_rank"] <= 5 for r in ans]),
        "mrr": mean([1.0 / r["evidence_rank"] if r["evidence_rank"] else 0.0 for r in ans]),
        "fact_accuracy": mean([r["facts_ok"] for r in ans]),
        "refusal_accuracy": mean([r["refused"] for r in un]),
        "false_refusal_rate": mean([r["refused"] for r in ans]),
        "english_answer_share": mean([answered_in_english(r["answer"]) for r in en]),
        "latency_p50_ms": round(_pct(lat, 0.5), 1),
        "latency_p95_ms": round(_pct(lat, 0.95), 1),
    }


def run_eval(assistant, file, out_dir, mode: str | None = None, console=None) -> dict:
    items = load_questions(file)
    k = max(5, assistant.settings.top_k)
    rows = []
    progress = None
    if console is not None:
        from rich.progress import Progress

        progress = Progress(console=console, transient=True)
        progress.start()
        task = progress.add_task("questions", total=len(items))
    try:
        for it in items:
            t0 = time.perf_counter()
            ans = assistant.ask(it.question, k=k, mode=mode)
            latency = (time.perf_counter() - t0) * 1000
            rank = next((h.rank for h in ans.hits if supports(h.chunk.text, it.evidence)), None)
            rows.append(
                {
                    "id": it.id,
                    "question": it.question,
                    "lang": it.lang,
                    "answerable": it.answerable,
                    "retrieved": [
                        {"rank": h.rank, "text": h.chunk.text, "source": h.chunk.source, "score": round(h.score, 6),
                         "start": h.chunk.start, "end": h.chunk.end}
                        for h in ans.hits
                    ],
                    "answer": ans.text,
                    "refused": ans.refused,
                    "citations": [
                        {"n": c.n, "source": c.source, "text": c.text, "start": c.start, "end": c.end}
                        for c in ans.citations
                    ],
                    "standalone_question": ans.standalone_question,
                    "mode": ans.mode,
                    "latency_ms": round(latency, 1),
                    "evidence_rank": rank,
                    "facts_ok": it.answerable and not ans.refused and facts_ok(ans.text, it.answer_must),
                }
            )
            if progress:
                progress.advance(task)
    finally:
        if progress:
            progress.stop()
    summary = {"mode": rows[0]["mode"] if rows else mode, "overall": summarize(rows), "by_lang": {}}
    for lang in sorted({r["lang"] for r in rows}):
        summary["by_lang"][lang] = summarize([r for r in rows if r["lang"] == lang])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = {"summary": summary, "questions": rows}
    (out / "results.json").write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    if console is not None:
        print_table(summary, console)
        console.print(f"wrote {out / 'results.json'}")
    return result


METRICS = [
    ("hit@1", "hit@1"), ("hit@3", "hit@3"), ("hit@5", "hit@5"), ("mrr", "MRR"),
    ("fact_accuracy", "fact acc"), ("refusal_accuracy", "refusal acc"), ("false_refusal_rate", "false refusals"),
    ("english_answer_share", "answered in en"), ("latency_p50_ms", "p50 ms"), ("latency_p95_ms", "p95 ms"),
]


def print_table(summary: dict, console) -> None:
    from rich.table import Table

    table = Table(title=f"eval ({summary.get('mode')})")
    table.add_column("metric")
    cols = [("all", summary["overall"])] + list(summary["by_lang"].items())
    for name, s in cols:
        table.add_column(f"{name} (n={s['n']})", justify="right")
    for key, label in METRICS:
        vals = []
        for _, s in cols:
            v = s.get(key)
            vals.append("-" if v is None else (f"{v:.0f}" if key.startswith("latency") else f"{v:.3f}"))
        table.add_row(label, *vals)
    console.print(table)

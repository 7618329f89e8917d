"""How much of an LLM-mode Chinese answer's fact accuracy is the model's own sentence?

    python bench/llm_answer_parts.py runs/eval-llm-s14 [SET ...]

Reads `rag eval --mode llm` results (OUT/SET/results.json; sets from evals/sets.toml,
default all found under OUT). A Chinese answer the evidence check accepted is the model's
sentence followed by the picked sentences quoted (`QUOTE_LEADS_ZH`); otherwise (the check
rejected it, or the model said NO_ANSWER or failed) the extractive answer stands instead.
For each set's answered, answerable Chinese questions this prints how many model answers
were kept and how often the model's sentence alone (the text before the quote) holds the
gold facts, and how many were replaced and how often the replacement holds them.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from rag.answering.prompts import QUOTE_LEADS_ZH
from rag.evaluate import DEFAULT_MANIFEST, facts_ok, load_manifest, load_questions
from rag.types import UserError


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    out, wanted = Path(argv[0]), set(argv[1:])
    try:
        sets = [s for s in load_manifest(DEFAULT_MANIFEST) if not wanted or s.name in wanted]
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    leads = {lead.strip() for lead in QUOTE_LEADS_ZH.values()}
    for s in sets:
        path = out / s.name / "results.json"
        if not path.is_file():
            continue
        rows = json.loads(path.read_text(encoding="utf-8"))["questions"]
        gold = {it.id: it.answer_must for it in load_questions(s.questions)}
        kept = kept_ok = replaced = replaced_ok = 0
        for r in rows:
            if r["lang"] == "en" or not r["answerable"] or r["refused"]:
                continue
            cut = min((r["answer"].find(lead) for lead in leads if lead in r["answer"]), default=-1)
            if cut >= 0:
                kept += 1
                kept_ok += facts_ok(r["answer"][:cut], gold[r["id"]])
            else:
                replaced += 1
                replaced_ok += bool(r["facts_ok"])
        n = kept + replaced
        if n:
            print(f"{s.name}: {n} Chinese answers; model's answer kept {kept}, its sentence alone "
                  f"holds the facts {kept_ok}/{kept}; replaced by the extractive answer {replaced}, "
                  f"right {replaced_ok}/{replaced}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

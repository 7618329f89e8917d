"""How much of an LLM-mode answer's fact accuracy is the model's own sentence, and how much
the evidence quoted (Chinese) or translated (English) after it?

    python bench/llm_answer_parts.py runs/eval-llm-s14 [SET ...]

Reads `rag eval --mode llm` results (OUT/SET/results.json; sets from evals/sets.toml,
default all found under OUT). A Chinese answer the evidence check accepted is the model's
sentence followed by the picked sentences quoted (`QUOTE_LEAD_ZH`); otherwise (the check
rejected it, or the model said NO_ANSWER or failed) the extractive answer stands instead.
An English answer the check accepted is the model's sentence followed by the evidence
sentences translated (`QUOTE_LEAD`); when it was rejected, the translation stands alone;
when that failed too, the extractive answer (the Chinese sentences quoted).
For each set's answered, answerable questions this prints, per language, how many answers
took each form and how often each part alone holds the gold facts.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from rag.answering.prompts import LEAD_EN_QUOTED, LEADS, QUOTE_LEAD, QUOTE_LEAD_ZH
from rag.evaluate import DEFAULT_MANIFEST, facts_ok, load_manifest, load_questions
from rag.types import UserError


def english_parts(rows: list[dict], gold: dict[str, list[list[str]]]) -> dict[str, int]:
    """Counts over answered, answerable English rows: kept (model sentence + translation),
    with how often the sentence alone, the translation alone and the whole hold the facts;
    translated (the model's answer rejected, the translation alone); extractive."""
    c = dict.fromkeys(("kept", "kept_sentence_ok", "kept_translation_ok", "kept_ok", "translated",
                       "translated_ok", "extractive", "extractive_ok"), 0)
    lead = QUOTE_LEAD.strip()
    for r in rows:
        if r["lang"] != "en" or not r["answerable"] or r["refused"]:
            continue
        text, must = r["answer"], gold[r["id"]]
        if lead in text:
            head, tail = text.split(lead, 1)
            c["kept"] += 1
            c["kept_sentence_ok"] += facts_ok(head, must)
            c["kept_translation_ok"] += facts_ok(tail, must)
            c["kept_ok"] += facts_ok(text, must)
        elif text.startswith((LEADS["en"], LEAD_EN_QUOTED)):
            c["extractive"] += 1
            c["extractive_ok"] += facts_ok(text, must)
        else:
            c["translated"] += 1
            c["translated_ok"] += facts_ok(text, must)
    return c


def chinese_parts(rows: list[dict], gold: dict[str, list[list[str]]]) -> dict[str, int]:
    c = dict.fromkeys(("kept", "kept_ok", "replaced", "replaced_ok"), 0)
    lead = QUOTE_LEAD_ZH.strip()
    for r in rows:
        if r["lang"] == "en" or not r["answerable"] or r["refused"]:
            continue
        if lead in r["answer"]:
            c["kept"] += 1
            c["kept_ok"] += facts_ok(r["answer"][: r["answer"].find(lead)], gold[r["id"]])
        else:
            c["replaced"] += 1
            c["replaced_ok"] += bool(r["facts_ok"])
    return c


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[3].strip(), file=sys.stderr)
        return 2
    out, wanted = Path(argv[0]), set(argv[1:])
    try:
        sets = [s for s in load_manifest(DEFAULT_MANIFEST) if not wanted or s.name in wanted]
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for s in sets:
        path = out / s.name / "results.json"
        if not path.is_file():
            continue
        rows = json.loads(path.read_text(encoding="utf-8"))["questions"]
        gold = {it.id: it.answer_must for it in load_questions(s.questions)}
        zh = chinese_parts(rows, gold)
        if zh["kept"] + zh["replaced"]:
            print(f"{s.name}: {zh['kept'] + zh['replaced']} Chinese answers; model's answer kept {zh['kept']}, "
                  f"its sentence alone holds the facts {zh['kept_ok']}/{zh['kept']}; replaced by the "
                  f"extractive answer {zh['replaced']}, right {zh['replaced_ok']}/{zh['replaced']}")
        en = english_parts(rows, gold)
        n = en["kept"] + en["translated"] + en["extractive"]
        if n:
            print(f"{s.name}: {n} English answers; model's answer kept {en['kept']} (facts in its sentence "
                  f"alone {en['kept_sentence_ok']}, in the translation alone {en['kept_translation_ok']}, in "
                  f"either {en['kept_ok']}); rejected, translation alone {en['translated']} (right "
                  f"{en['translated_ok']}); extractive answer {en['extractive']} (right {en['extractive_ok']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

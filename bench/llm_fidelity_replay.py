"""Replay the name-fidelity step (rag/answering/fidelity.py) on stored English LLM answers:
an estimate of what it adds, without running the model again.

    python bench/llm_fidelity_replay.py runs/eval-llm-s16 runs/eval-s15 [SET]

Reads the LLM run's answers (OUT/SET/results.json, default SET crosslingual) and the
extractive run's answers of the same questions, whose quoted Chinese sentences stand in for
the evidence the LLM answer translated. Each answer's translated part (after `QUOTE_LEAD`)
gets `romanise_left_names` and `keep_written_terms` as the answer flow now applies them; the
model's own sentence is kept. Prints fact accuracy (over the answerable questions) and the
share answered in English, before and after, and each question that changes. An estimate:
the flow applies the step per passage to the evidence it picked, and a rerun of the model
can answer differently; `rag eval --mode llm` is the measurement.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CITED_RE = re.compile(r"([^\[\]]+?)\[\d+\]")
HAN_RE = re.compile(r"[\u4e00-\u9fff]")


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    from rag.answering.fidelity import keep_written_terms, romanise_left_names
    from rag.answering.prompts import QUOTE_LEAD
    from rag.evaluate import answered_in_english, facts_ok, load_manifest, load_questions

    llm_dir, ext_dir = Path(argv[0]), Path(argv[1])
    name = argv[2] if len(argv) > 2 else "crosslingual"
    spec = next((s for s in load_manifest(ROOT / "evals" / "sets.toml") if s.name == name), None)
    if spec is None:
        print(f"no set {name!r} in evals/sets.toml", file=sys.stderr)
        return 2
    try:
        llm = json.loads((llm_dir / name / "results.json").read_text(encoding="utf-8"))["questions"]
        ext = {q["id"]: q for q in json.loads((ext_dir / name / "results.json").read_text(encoding="utf-8"))["questions"]}
    except (OSError, ValueError, KeyError) as e:
        print(f"cannot read the runs: {e}", file=sys.stderr)
        return 2
    items = {it.id: it for it in load_questions(spec.questions)}
    n = answered = 0
    fact = [0, 0]
    english = [0, 0]
    for r in llm:
        it = items.get(r["id"])
        if it is None or not it.answerable:
            continue
        n += 1
        if r["refused"]:
            continue
        answered += 1
        quoted = ext.get(r["id"], {}).get("answer", "")
        evidence = [e.strip() for e in CITED_RE.findall(quoted.split(":", 1)[1] if ":" in quoted else "")
                    if HAN_RE.search(e)]
        old = r["answer"]
        new = old
        if QUOTE_LEAD in old:
            model, translated = old.split(QUOTE_LEAD, 1)
            new = model + QUOTE_LEAD + keep_written_terms(romanise_left_names(translated), evidence,
                                                          it.question, [model])
        ok = (facts_ok(old, it.answer_must), facts_ok(new, it.answer_must))
        en = (answered_in_english(old), answered_in_english(new))
        for i in (0, 1):
            fact[i] += ok[i]
            english[i] += en[i]
        if ok[0] != ok[1] or en[0] != en[1]:
            print(f"{r['id']}: fact {ok[0]} -> {ok[1]}, English {en[0]} -> {en[1]}")
    if not n:
        print("no answerable questions in the run", file=sys.stderr)
        return 2
    print(f"{name}: fact accuracy {fact[0] / n:.3f} -> {fact[1] / n:.3f} (of {n} answerable); "
          f"answered in English {english[0] / max(answered, 1):.3f} -> {english[1] / max(answered, 1):.3f} "
          f"(of {answered} answered)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

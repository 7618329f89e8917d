"""Do answers cite only passages the model was given?

    python bench/citation_check.py runs/final-llm-questions [runs/... ...]

Reads `rag eval` results folders. The LLM answerer gives the model at most
`rag.answering.passages.MAX_PASSAGES` passages, all from the top 3 retrieved (the gate's
window), so a citation whose span is not among a row's top-3 retrieved passages
cites something the model was not given. Prints every such citation and a
count per folder; exit 1 when there is any.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    outside_all = 0
    for folder in argv:
        path = Path(folder) / "results.json"
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))["questions"]
        except (OSError, ValueError, KeyError) as exc:
            print(f"error: cannot read {path}: {exc}", file=sys.stderr)
            return 2
        total = outside = 0
        for row in rows:
            given = {(h["start"], h["end"]) for h in row["retrieved"][:3]}
            for c in row["citations"]:
                total += 1
                if (c["start"], c["end"]) not in given:
                    outside += 1
                    print(f"{folder}: {row['id']} cites [{c['n']}] outside the passages given")
        print(f"{folder}: {total} citations, {outside} outside the passages given")
        outside_all += outside
    return 1 if outside_all else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

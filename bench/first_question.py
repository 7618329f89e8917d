"""The first questions of a fresh process, with and without `Assistant.warm()` before them.

    .venv/bin/python bench/first_question.py [--rounds 3] [--out runs/bench/first_question.json]

Each round starts two fresh processes over the live index (extractive mode): one asks a
Chinese and an English question right after building the assistant, the other calls
`warm()` first (as `rag serve` does in a background thread at start, while the page is
being opened) and then asks the same. A second question of each language follows, the
steady-state cost. Times are each process's own (seconds); compare the columns of one run.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# probes of the code paths, not of any document: a second English question names someone
# (the bridge reads names by their pinyin, built on first use)
QUESTIONS = ("这份文件讲了什么？", "What does the document say?", "文件提到了哪些城市？", "What did Zhang Wei say?")


def one(warm: bool) -> dict:
    import time

    from rag.assistant import Assistant
    from rag.settings import offline_environment

    offline_environment()
    a = Assistant.from_settings(llm="extractive")
    t = time.perf_counter()
    if warm:
        a.warm()
    out = {"warm_s": round(time.perf_counter() - t, 3)}
    for name, q in zip(("first_zh", "first_en", "second_zh", "second_en"), QUESTIONS):
        t = time.perf_counter()
        a.ask(q, mode="extractive")
        out[name] = round(time.perf_counter() - t, 3)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default="")
    p.add_argument("--one", choices=("cold", "warm"), help=argparse.SUPPRESS)  # a child process
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one == "warm")))
        return 0
    runs: dict[str, list[dict]] = {"cold": [], "warm": []}
    for _ in range(args.rounds):
        for kind in ("cold", "warm"):
            done = subprocess.run([sys.executable, __file__, "--one", kind], capture_output=True, text=True,
                                  cwd=ROOT, check=True)
            runs[kind].append(json.loads(done.stdout.strip().splitlines()[-1]))
    summary = {kind: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for kind, rs in runs.items()}
    for kind, med in summary.items():
        print(f"{kind:5s} median s: " + "  ".join(f"{k} {v:.3f}" for k, v in med.items()))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"runs": runs, "median": summary}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

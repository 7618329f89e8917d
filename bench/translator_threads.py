"""Threads of the query translator's llama.cpp context: fixed 1, fixed 2, or chosen per call.

    .venv/bin/python -m bench.translator_threads                 # idle machine
    .venv/bin/python -m bench.translator_threads --load 2        # two busy-looping processes
    .venv/bin/python -m bench.translator_threads --load 1 --kind answer   # another answer streaming
    .venv/bin/python -m bench.translator_threads --judge [--load 1 --kind answer]   # the judge instead

Translates the first N English questions of evals/crosslingual with `rag.answering.translate_query`
on the translator context (`rag.llm.build_translator`, translator_threads=0), once per thread
policy for each question, the policies' order rotating from question to question so that drift
in the machine's speed falls on all three alike. "auto" is `rag.llm.free_cores(llm_threads)`, what
the app uses. Prints p50/p95 seconds per policy and how often "auto" chose each count. The load
runs in separate processes: `busy` spins a core each, `answer` streams long answers from the
answering model on its own context (llm_threads threads), as a second user's question would.
`--judge` times the answerability judge's one-token call instead (`rag.answering.judge`, its
own context), each policy on another 250-character passage of evals/cmrc-train's corpus so
that no call reuses another's cached prompt.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _busy() -> None:
    while True:
        pass


def _answering() -> None:
    from rag.llm import build_llm
    from rag.settings import Settings

    llm = build_llm(Settings(llm="llama-cpp"))
    while True:
        llm.complete("Write a long essay about the history of Chinese cities.", max_tokens=400)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--load", type=int, default=0, help="processes of background load")
    p.add_argument("--kind", choices=["busy", "answer"], default="busy")
    p.add_argument("-n", type=int, default=30, help="questions")
    p.add_argument("--judge", action="store_true", help="time the judge, not the translation")
    p.add_argument("--questions", default=str(ROOT / "evals" / "crosslingual" / "questions.jsonl"))
    args = p.parse_args(argv)

    from rag.answering.translate import translate_query
    from rag.evaluate import percentile
    from rag.llm import MODEL_LABEL, build_judge, build_translator, free_cores
    from rag.settings import Settings

    settings = Settings(llm="llama-cpp", translator_threads=0)
    translator = build_judge(settings) if args.judge else build_translator(settings)
    if translator is None:
        raise SystemExit("error: the local LLM is not prepared (run `rag models prepare`)")
    lines = Path(args.questions).read_text(encoding="utf-8").splitlines()
    questions = [json.loads(line)["question"] for line in lines if line.strip()][: args.n]
    call = lambda q, _k: translate_query(q, translator)  # noqa: E731
    if args.judge:
        from rag.answering.judge import AnswerJudge

        judge = AnswerJudge.load(translator, model_label=MODEL_LABEL)
        texts = [f.read_text(encoding="utf-8") for f in sorted((ROOT / "evals" / "cmrc-train" / "corpus").iterdir())]
        call = lambda q, k: judge.score(q, [texts[k % len(texts)][:250]])  # noqa: E731
    for k, q in enumerate(questions[:3]):  # warm-up
        call(q, 100_000 + k)

    picks: list[int] = []
    most = max(1, settings.llm_threads)
    policies = {"one": lambda: 1, f"fixed_{most}": lambda: most,
                "auto": lambda: picks.append(free_cores(most)) or picks[-1]}
    names = list(policies)
    times: dict[str, list[float]] = {name: [] for name in names}
    ctx = mp.get_context("spawn")  # a fresh interpreter: no copy of this process's llama.cpp state
    procs = [ctx.Process(target=_busy if args.kind == "busy" else _answering, daemon=True)
             for _ in range(args.load)]
    for proc in procs:
        proc.start()
    try:
        time.sleep(20 if args.kind == "answer" and procs else 2)  # the answering model loads
        for i, q in enumerate(questions):
            for name in names[i % len(names):] + names[: i % len(names)]:
                translator.set_threads_per_call(policies[name])
                t0 = time.perf_counter()
                call(q, len(names) * i + names.index(name))
                times[name].append(time.perf_counter() - t0)
    finally:
        for proc in procs:
            proc.terminate()
    print(json.dumps({
        "call": "judge" if args.judge else "translation", "load": args.load, "kind": args.kind, "questions": len(questions),
        "p50_s": {k: round(statistics.median(v), 2) for k, v in times.items()},
        "p95_s": {k: round(percentile(v, 0.95), 2) for k, v in times.items()},
        "auto_chose": {str(k): picks.count(k) for k in sorted(set(picks))},
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

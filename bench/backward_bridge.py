"""Cost of the backward bridge (Chinese questions over English documents) at a large
English vocabulary: every English word of CC-CEDICT's definitions (~49k) stands in for the
words of a big English collection.

    .venv/bin/python bench/backward_bridge.py [--out runs/bench/backward_bridge.json]

Times the one-time builds (`CorpusVocab.glosses`, the English words' transliteration
index: what `Assistant.warm` pays at server start) and the per-question cost of
`english_alternatives` (p50 / p95 over a few questions, after one warm-up call: the first
loads jieba's dictionary and the pinyin tables, which the server's warm-up loads too).
"""
from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUESTIONS = [
    "哈尔沃森海事集团现在的CEO是谁？", "迈特纳是哪一年在维也纳大学拿到物理学博士学位的？",
    "这家俱乐部成立于哪一年？", "上海8月发布了什么？", "溫州市人工智能局是什麼時候揭牌的？",
    "克斯蒂·李·库克在《美国偶像》第七季中是第几名？", "多瑙河三角洲是哪一年被列為世界遺產的？",
]


def _seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=None)
    args = p.parse_args()
    from rag.crossling import CorpusVocab, _index, cedict_path, english_alternatives
    from rag.tokens import tokenize

    words: set[str] = set()
    with gzip.open(cedict_path(), "rt", encoding="utf-8") as fh:
        for line in fh:
            if not line.startswith("#"):
                words.update(w.lower() for w in re.findall(r"[A-Za-z]{2,}", line.split("/", 1)[-1]))
    _index()
    vocab = CorpusVocab(words)
    glosses_s, xlit_s = (_seconds(build) for build in (vocab.glosses, vocab._latin_xlit_index))
    toks = [list(dict.fromkeys(tokenize(q))) for q in QUESTIONS]
    english_alternatives(toks[0], vocab)  # first call: jieba's dictionary, pinyin tables
    times = []
    for _ in range(5):
        for tk in toks:
            t = time.perf_counter()
            english_alternatives(tk, vocab)
            times.append((time.perf_counter() - t) * 1000)
    times.sort()
    out = {"english_words": len(vocab.english_words()), "glosses_build_s": round(glosses_s, 2),
           "xlit_index_build_s": round(xlit_s, 2), "per_question_ms_p50": round(statistics.median(times), 2),
           "per_question_ms_p95": round(times[int(0.95 * (len(times) - 1))], 2), "questions": len(times)}
    print(json.dumps(out, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

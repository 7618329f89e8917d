"""What matching Western names by their Chinese transliteration costs on a large collection.

Builds a collection of --chunks chunks (300 characters): the dev corpora's texts (cmrc-train,
drcd, seeds), and to make up the rest, chunks of words drawn from jieba's dictionary by
frequency (a seeded draw), so that the vocabulary grows as a real collection's does. Then
times, over the same `rag.crossling.CorpusVocab`: the reading index the bridge already
builds (`pinyin()`), the transliteration index (`_xlit_index()`, new), and the bridge of the
crosslingual questions as the pipeline asks it (the question, then each name alone as the
gate does) with the transliteration step off and on. Prints the names it bridged.

    .venv/bin/python -m bench.transliteration [--chunks 10000] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CORPORA = [ROOT / "evals" / "cmrc-train" / "corpus", ROOT / "evals" / "drcd" / "corpus", ROOT / "seeds"]
QUESTIONS = ROOT / "evals" / "crosslingual" / "questions.jsonl"
CHUNK = 300


def collection(n: int, seed: int = 0) -> list[str]:
    from rag.lang import to_simplified
    from rag.text import jieba

    texts: list[str] = []
    for folder in CORPORA:
        for f in sorted(folder.glob("*.txt")):
            t = to_simplified(f.read_text(encoding="utf-8"))
            texts += [t[i:i + CHUNK] for i in range(0, len(t), CHUNK)]
    freq = jieba().dt.FREQ
    words = [w for w, c in freq.items() if c > 0]
    weights = [freq[w] ** 0.5 for w in words]  # flattened: rarer words (and names) show up
    rng = random.Random(seed)
    while len(texts) < n:
        out, size = [], 0
        for w in rng.choices(words, weights, k=160):
            out.append(w)
            size += len(w)
            if size >= CHUNK:
                break
        texts.append("".join(out) + "。")
    return texts[:n]


def bridge_all(questions, vocab) -> float:
    from rag.answering.gate import _LATIN_NAME_RE
    from rag.crossling import bridge_groups_sourced, fold_latin

    t0 = time.perf_counter()
    for q in questions:
        bridge_groups_sourced(q, vocab)
        for m in _LATIN_NAME_RE.finditer(fold_latin(q.strip())):
            bridge_groups_sourced(m.group(0), vocab)
    return (time.perf_counter() - t0) / len(questions)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=10000)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()

    from rag import crossling
    from rag.crossling import CorpusVocab, bridge_groups_sourced

    texts = collection(args.chunks)
    t0 = time.perf_counter()
    vocab = CorpusVocab.from_texts(texts)
    t_tok = time.perf_counter() - t0
    questions = [json.loads(line)["question"] for line in QUESTIONS.open(encoding="utf-8")]
    crossling.warm()
    crossling._char_readings()

    t0 = time.perf_counter()
    vocab.pinyin()
    t_readings = time.perf_counter() - t0
    t0 = time.perf_counter()
    vocab._xlit_index()
    t_xlit = time.perf_counter() - t0
    from rag.text import posseg

    posseg().lcut("卢西亚诺·斯帕莱蒂")  # the tagger the gate loads for every passage anyway
    bridge_groups_sourced("Where did Warmupname go?", vocab)

    real = CorpusVocab._transliterations
    found: dict[str, list[str]] = {}

    def recording(self, word):
        out = real(self, word)
        if out:
            found[word] = out
        return out

    CorpusVocab._transliterations = lambda self, word: []
    vocab._xlit_memo.clear()
    off = bridge_all(questions, vocab)
    CorpusVocab._transliterations = recording
    vocab._xlit_memo.clear()
    on = bridge_all(questions, vocab)
    CorpusVocab._transliterations = real
    res = {
        "chunks": len(texts), "terms": len(vocab.terms), "tokenise_s": round(t_tok, 2),
        "readings_index_s": round(t_readings, 3), "xlit_index_s": round(t_xlit, 3),
        "xlit_keys": len(vocab._xlit), "questions": len(questions),
        "bridge_ms_per_question_off": round(off * 1000, 2), "bridge_ms_per_question_on": round(on * 1000, 2),
        "bridged": found,
    }
    print(json.dumps(res, ensure_ascii=False, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

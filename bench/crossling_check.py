"""How much does rag.crossling.bridge_terms help BM25 find Chinese sentences
for English questions?

Splits the seed article into sentences (pinyin annotations removed, converted
to simplified Chinese), indexes them with BM25 over jieba tokens, and for each
English question ranks the sentences with the bridged terms as the query.
Prints hit@1 / hit@3 of the gold sentence (identified by a substring), for the
bridged query and, as a baseline, for the raw English question.

Two question sets: QUESTIONS below (written together with the bridge, so
optimistic), and the answerable English questions of evals/questions.jsonl
(written independently; gold = any sentence holding one of its evidence
strings) as a held-out check.

    .venv/bin/python bench/crossling_check.py [-v]
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ARTICLE = ROOT / "seeds" / "000_e271bcc5b97e4740.txt"
PINYIN_RX = re.compile(r"\([a-zāáǎàēéěèīíǐìōóǒòūúǔùüǘǚǜ]+\)")
SPLIT_RX = re.compile(r"[。；！？;\n]+")

# (question, substring of the gold sentence in simplified Chinese)
QUESTIONS: list[tuple[str, str]] = [
    ("What did Shanghai announce in August?", "上海推出《上海市加快推动"),
    ("How large was the global industrial AI market in 2024?", "436亿美元"),
    ("Where is the first city-level AI administration bureau?", "温州市人工智能局正式揭牌"),
    ("What did the State Council issue in August?", "国务院印发"),
    ("What did the Ministry of Industry and Information Technology propose in June?", "工信部在审议"),
    ("What action plan did Beijing issue in May?", "北京印发《北京市人工智能赋能"),
    ("What measures did Zhejiang publish in May to support AI innovation?", "浙江印发《关于支持人工智能"),
    ("What action plan for AI plus manufacturing did Guangxi issue?", "广西还印发了"),
    ("How many registered large models does Beijing have?", "105个备案模型"),
    ("When does Beijing plan mass production of ten thousand humanoid robots?", "人形机器人万台量产"),
    ("According to KPMG, what share of companies think embracing AI builds a competitive advantage?", "93%的企业认为"),
    ("What percentage of manufacturers will invest in AI within five years?", "95%的制造企业"),
    ("How does China's manufacturing labor productivity compare with the United States and Germany?", "劳动生产率仅为美国的1/5"),
    ("What was China's total industrial value added in 2024?", "40.5万亿元"),
    ("What is the risk when dozens of cities all rush into humanoid robots?", "数十座城市一拥而上"),
    ("What do experts recommend local governments set up to share the risk of failure?", "专项风险补偿基金"),
    ("Which cities have released AI-related funds?", "合肥等城市都已发布AI相关基金"),
    ("What is Sichuan building in Chengdu?", "诸葛空间"),
    ("What is Anhui doing with new energy vehicles?", "安徽立足新能源汽车"),
    ("How do Shenzhen and Guizhou compete on computing power?", "深圳依托硬件优势建设算力高地"),
]


def sentences() -> list[str]:
    import opencc

    text = PINYIN_RX.sub("", ARTICLE.read_text(encoding="utf-8"))
    text = opencc.OpenCC("t2s").convert(text)
    return [s.strip() for s in SPLIT_RX.split(text) if len(s.strip()) >= 4]


def main(argv: list[str]) -> int:
    verbose = "-v" in argv
    import bm25s

    from rag.crossling import bridge_terms
    from rag.text import jieba as _jieba

    jieba = _jieba()  # the project's one jieba setup

    sents = sentences()
    toks = [[t for t in jieba.lcut(s) if t.strip()] for s in sents]
    bm = bm25s.BM25()
    bm.index(toks, show_progress=False)

    def tokens_of(terms: list[str]) -> list[str]:
        out: list[str] = []
        for term in terms:
            out += [t for t in jieba.lcut(term) if t.strip()]
        return out

    def rank(query_tokens: list[str]) -> list[int]:
        if not query_tokens:
            return []
        scores = bm.get_scores(query_tokens)
        order = sorted(range(len(sents)), key=lambda i: -scores[i])
        return [i for i in order if scores[i] > 0]

    t0 = time.perf_counter()
    bridge_terms("warm up")
    first = time.perf_counter() - t0

    held_out = []
    evals = ROOT / "evals" / "questions.jsonl"
    if evals.exists():
        for line in evals.read_text(encoding="utf-8").splitlines():
            d = json.loads(line) if line.strip() else None
            if d and d.get("lang") == "en" and d.get("answerable"):
                held_out.append((d["question"], d["evidence"]))

    times = []
    print(f"{len(sents)} sentences")
    for title, qset in (("own questions", [(q, [g]) for q, g in QUESTIONS]),
                        ("held out (evals/questions.jsonl, en)", held_out)):
        if not qset:
            continue
        res = {"bridged": [0, 0], "raw english": [0, 0]}
        for q, evidence in qset:
            gold = {i for i, s in enumerate(sents) if any(e in s for e in evidence)}
            assert gold, (q, evidence)
            t = time.perf_counter()
            terms = bridge_terms(q)
            times.append(time.perf_counter() - t)
            for name, qt in (("bridged", tokens_of(terms)), ("raw english", q.lower().split())):
                r = rank(qt)
                res[name][0] += bool(gold & set(r[:1]))
                res[name][1] += bool(gold & set(r[:3]))
                if verbose and name == "bridged":
                    pos = min((r.index(g) + 1 for g in gold if g in r), default=None)
                    print(f"[{'ok' if pos == 1 else pos}] {q}\n     {terms}")
                    if pos != 1 and r:
                        print(f"     top: {sents[r[0]][:60]}")
        n = len(qset)
        print(f"{title}: {n} questions")
        for name, (h1, h3) in res.items():
            print(f"  {name:12s} hit@1 {h1 / n:.2f}  hit@3 {h3 / n:.2f}")
    n = len(times)
    times.sort()
    print(f"bridge_terms: first call {first * 1000:.0f} ms, later median "
          f"{times[n // 2] * 1000:.2f} ms, max {times[-1] * 1000:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
